import Logging
import SluiceRouting
import SluiceSystem
import SluiceWire

/// One event loop: a pinned thread with its own epoll instance, listening sockets,
/// connection table, timer wheel, pipe pool, buffer pool, picker and counters. A connection
/// lives and dies on the loop that accepted it. Everything here is touched by the loop
/// thread only, except `mailbox`.
///
/// A batch: `epoll_wait` → dispatch each event by kind (a switch, no dictionary) → expire
/// timers → take mailbox messages when its eventfd fired. The routing snapshot is swapped
/// only between batches.
final class Loop: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): after `run` starts, only the loop thread touches any
    // field but `mailbox`, which is itself thread-safe.
    let index: Int
    let mailbox: Mailbox
    var logger: Logger

    /// Readiness and every system call the loop makes (`Driver`).
    // SAFETY (@exclusivity(unchecked)): every call reads it (its methods do not mutate); it is
    // written only in `init` and, in debug builds, by tests installing a fake kernel first.
    @exclusivity(unchecked) var driver: Driver
    let table: ConnectionTable
    // SAFETY (@exclusivity(unchecked), here, on the queues and tables below and on `epoch`):
    // loop-thread state that every event reads; each mutating method called on it is the
    // value's own and calls no loop code (the pool's close closures touch only `driver`), so
    // no access is held across a call that could reach the same property again.
    @exclusivity(unchecked) var timers: TimerWheel
    @exclusivity(unchecked) var pipes: PipePool
    let buffers: BufferPool
    /// HTTP heads and bodies in flight (32 KiB blocks).
    let httpBuffers: BufferPool
    /// HTTP/2 streams' inbound buffers: a request head and a receive window each.
    let streamBuffers: BufferPool
    /// A peek's first bytes (1 KiB blocks): a connection that has sent part of a ClientHello
    /// or PROXY header holds this, not a 32 KiB block, until more is needed.
    let peekBuffers: BufferPool
    static let peekBufferSize: Int32 = 1024
    /// Idle keep-alive upstream connections.
    @exclusivity(unchecked) var pool: UpstreamPool
    var nextPoolSweep: Int64 = 0
    /// When the buffer pools next give back the idle blocks a second did not need.
    var nextBufferTrim: Int64 = 0
    /// Parsed header fields of the head being handled (shared: parsing is synchronous).
    let fieldStore: UnsafeMutableBufferPointer<HTTPField>
    let httpLimits = HTTPLimits()
    /// Scratch bytes for formatting (client address, cookies, stripped paths).
    let scratch: UnsafeMutableRawPointer
    /// Where a ClientHello split over several records is put back together.
    let helloScratch: UnsafeMutableRawBufferPointer
    /// The request path as forwarded (stripped or normalised): as large as a head.
    let pathScratch: UnsafeMutableRawPointer
    static let scratchSize = 8192
    var snapshot: RoutingSnapshot {
        didSet { exchangeTimeouts = Self.exchangeTimeouts(snapshot) }
    }
    /// The current snapshot's waits, as the HTTP exchange machine takes them.
    var exchangeTimeouts: HTTPExchangeMachine.Timeouts
    /// Older snapshots that connections of this loop are still bound to (`Loop+Generations`).
    var retained: [RetainedSnapshot] = []
    /// Counts the snapshots this loop has run: the current one's number, which connections
    /// bind to (never 0).
    // SAFETY (@exclusivity(unchecked), here and below): loop-thread state read by every
    // event and written only between batches or by one plain store; no access to it is held
    // across a call that could reach it again.
    @exclusivity(unchecked) var epoch: UInt64 = 1
    /// A swap is rebuilding `retained`'s counts.
    var rebinding = false
    @exclusivity(unchecked) var picker: EndpointPicker
    @exclusivity(unchecked) var listeners: [LoopListener] = []
    @exclusivity(unchecked) var counters = LoopCounters()
    /// Per listener, service and endpoint counters and histograms (`Observe/`). Touched by
    /// every event, so not checked for exclusivity at run time:
    // SAFETY (@exclusivity(unchecked)): only the loop thread touches `metrics`, and no access
    // to it is held across a call that could reach it again (each is one add or one copy).
    @exclusivity(unchecked) var metrics: LoopMetrics
    /// This loop's access-log ring; nil when the process writes no access log.
    let accessLog: AccessLogRing?
    /// With `accessLog`: per slot, what a logged connection keeps for its records, and its
    /// SNI name's bytes (`LogState.sniCapacity` per slot). Touched only by logged connections.
    let logStates: UnsafeMutablePointer<LogState>?
    let sniStore: UnsafeMutableRawPointer
    /// The records' sampler (xorshift64, never 0) and the request-id generator's state.
    var sampler: UInt64
    let requestIDPrefix: UInt64
    let requestIDKey: UInt64
    var requestCounter: UInt64 = 0
    /// Where a made request id is formatted for the forwarded head.
    let requestIDScratch: UnsafeMutableRawPointer
    /// Connections this loop accepts at most (its share of `limits.maxConnections`).
    var connectionLimit: Int
    let workerCount: Int
    var acceptPaused = false
    var acceptResumeAt: Int64 = 0
    var draining = false
    var drainDeadline: Int64 = 0
    /// Every HTTP/1 request from now on is its connection's last (`Connection: close` on the
    /// response): set by `closeKeepAlive` and by a drain.
    var lastRequests = false
    /// The batch's time: one clock read per batch, in microseconds (records, histograms) and
    /// in milliseconds derived from it (timers, timeouts).
    @exclusivity(unchecked) var now: Int64
    @exclusivity(unchecked) var nowMicros: Int64
    @exclusivity(unchecked) var expired: [Int32] = []
    /// Connections that used up their step budget in this batch, resumed after it.
    @exclusivity(unchecked) var resume: [(slot: Int32, generation: UInt32)] = []
    @exclusivity(unchecked) var resuming: [(slot: Int32, generation: UInt32)] = []
    /// HTTP/2: sessions to flush at the end of the batch, and streams to pump once nghttp2
    /// returns (each with its generation; swapped with the second array while it is run).
    @exclusivity(unchecked) var h2Dirty: [(slot: Int32, generation: UInt32)] = []
    @exclusivity(unchecked) var h2Flushing: [(slot: Int32, generation: UInt32)] = []
    @exclusivity(unchecked) var h2Wake: [(slot: Int32, generation: UInt32)] = []
    @exclusivity(unchecked) var h2Waking: [(slot: Int32, generation: UInt32)] = []
    /// HTTP/2 to endpoints: the first session slot of each endpoint address (the others
    /// follow through `HTTP2Link.next`), and exchanges to pump once nghttp2 returns.
    @exclusivity(unchecked) var h2Upstreams: [UpstreamSessionKey: Int32] = [:]
    /// When a failed TLS handshake with an endpoint was last logged (at most one per 10 s).
    var upstreamTLSLoggedAt: Int64 = .min
    @exclusivity(unchecked) var h2UpWake: [(slot: Int32, generation: UInt32)] = []
    @exclusivity(unchecked) var h2UpWaking: [(slot: Int32, generation: UInt32)] = []
    /// nghttp2's blocks, reused by every session of this loop; freed with the loop (a
    /// session is deleted only by the loop's own code, never after it).
    let h2Pool: OpaquePointer?
    /// A response head's fields for nghttp2.
    let h2Fields: UnsafeMutableBufferPointer<HTTP2Session.Field>
    /// Reads and writes one connection (one direction of a tunnel) makes per wake. Debug
    /// builds take `SLUICE_STEP_BUDGET` (1 and up) so tests can drive every resumption path.
    static let stepBudget: Int = {
        #if DEBUG
            if let text = Environment.value("SLUICE_STEP_BUDGET"), let value = Int(text), value > 0 { return value }
        #endif
        return 64
    }()
    /// The first EMFILE/ENFILE on a connect has been logged.
    var loggedDescriptorExhaustion = false

    struct LoopListener {
        var key: ListenerKey
        /// The listener's index in the current snapshot: its row in the frontend table.
        var row: Int32
        var fd: Int32
        var service: Int32
        var routes: Int32
        /// tls listeners that terminate: the context (index into `snapshot.tlsContexts`) and
        /// the route table for decrypted requests; -1 otherwise.
        var tlsContext: Int32
        var terminated: Int32
        var acceptProxy: [CIDR]
        var enabled: Bool
        /// Which requests and connections get an access-log record (with `Loop.accessLog`).
        var accessLog: AccessLogPolicy
        /// HTTP/2 offered (ALPN `h2` on terminated sessions) or accepted with prior knowledge.
        var http2: Bool
        /// The listener's name, for records (made once per swap, copied without allocating).
        var name: [UInt8]
    }

    /// Capacity of the slot table: untouched slots cost no resident memory.
    static let tableCapacity = 1 << 16

    init(
        index: Int, workers: Int, snapshot: RoutingSnapshot, logger: Logger, accessLog: AccessLogRing? = nil,
        backend: IOBackend = .epoll
    ) throws(Errno) {
        self.index = index
        workerCount = workers
        self.logger = logger
        self.logger[metadataKey: "loop"] = "\(index)"
        mailbox = try Mailbox()
        driver = try Driver(capacity: 512, backend: backend)
        table = ConnectionTable(capacity: Self.tableCapacity)
        nowMicros = MonotonicClock.nowMicros()
        now = nowMicros / 1000
        timers = TimerWheel(capacity: Self.tableCapacity, now: now)
        pipes = PipePool(pipeSize: snapshot.tuning.pipeSize, maxIdle: snapshot.tuning.pipePoolSize)
        buffers = BufferPool(bufferSize: snapshot.tuning.copyBufferSize)
        httpBuffers = BufferPool(bufferSize: Int(Self.httpBufferSize))
        // A stream to an h2c service holds two (its client's inbound, its endpoint's): 128
        // kept cover 64 such streams in flight per loop without allocating again.
        streamBuffers = BufferPool(bufferSize: Int(Self.streamBufferSize), maxIdle: 128)
        peekBuffers = BufferPool(bufferSize: Int(Self.peekBufferSize), maxIdle: 1024)
        pool = UpstreamPool(capacity: 4096)
        pool.resize(endpoints: snapshot.endpoints.count, perEndpoint: snapshot.limits.upstreamIdlePerEndpoint)
        fieldStore = .allocate(capacity: 256)
        h2Fields = .allocate(capacity: HTTP2Session.maxFields)
        h2Pool = HTTP2Session.makePool()
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        helloScratch = .allocate(byteCount: 32 * 1024, alignment: 16)
        pathScratch = .allocate(byteCount: Int(Self.httpBufferSize), alignment: 16)
        self.snapshot = snapshot
        exchangeTimeouts = Self.exchangeTimeouts(snapshot)
        metrics = LoopMetrics(snapshot: snapshot)
        self.accessLog = accessLog
        if accessLog != nil {
            // Untouched slots cost no resident memory; a slot's state is set up on first use.
            logStates = .allocate(capacity: Self.tableCapacity)
            sniStore = .allocate(byteCount: Self.tableCapacity * LogState.sniCapacity, alignment: 16)
        } else {
            logStates = nil
            sniStore = .allocate(byteCount: 1, alignment: 16)
        }
        var random = SystemRandomNumberGenerator()
        sampler = random.next() | 1
        requestIDPrefix = random.next()
        requestIDKey = random.next()
        requestIDScratch = .allocate(byteCount: Self.requestIDLength, alignment: 16)
        picker = EndpointPicker(snapshot: snapshot, seed: Self.seed(index))
        connectionLimit = Self.share(of: snapshot.limits.maxConnections, workers: workers)
        expired.reserveCapacity(Self.tableCapacity)
        resume.reserveCapacity(1024)
        resuming.reserveCapacity(1024)
        h2Dirty.reserveCapacity(1024)
        h2Flushing.reserveCapacity(1024)
        h2Wake.reserveCapacity(1024)
        h2Waking.reserveCapacity(1024)
        h2UpWake.reserveCapacity(1024)
        h2UpWaking.reserveCapacity(1024)
        try driver.watchInput(mailbox.wake.fd, EventToken(kind: .mailbox, index: 0, generation: 0), edge: true)
    }

    deinit {
        HTTP2Session.freePool(h2Pool)
    }

    static func share(of total: Int, workers: Int) -> Int {
        min(max((total + workers - 1) / workers, 1), tableCapacity)
    }

    /// A different cursor start per loop and per process, so loops and restarts do not all
    /// begin on endpoint 0.
    static func seed(_ index: Int) -> UInt64 {
        SocketAddress.mix(UInt64(bitPattern: MonotonicClock.nowNanos()) ^ UInt64(index) &* 0x1000_0000_01B3)
    }

    /// The loop thread's body; returns after a drain completes.
    func run(cpu: Int?) {
        if let cpu { Threads.pinCurrent(to: cpu) }
        do { try driver.start() } catch { fatalError("loop \(index): cannot start its io_uring: \(error)") }
        while true {
            var timeout = draining || acceptPaused ? Int32(timers.tickMillis) : timers.sleepMillis(now: now)
            if pool.count > 0 && (timeout < 0 || timeout > 1000) { timeout = 1000 }
            // Work cut short by the step budget runs in the next round, without sleeping.
            if !resume.isEmpty || !h2Dirty.isEmpty || !h2UpWake.isEmpty { timeout = 0 }
            let n = driver.wait(timeoutMillis: timeout)
            nowMicros = MonotonicClock.nowMicros()
            now = nowMicros / 1000
            var mail = false
            for i in 0..<n {
                let token = driver.token(at: i)
                if token.kind == .mailbox {
                    mail = true
                } else {
                    dispatch(token, driver.readiness(at: i))
                }
            }
            runResumed()
            flushSessions()
            if pipes.setSizeFailures > 0, let warning = pipes.takeSetSizeWarning() { logger.warning("\(warning)") }
            expireTimers()
            if pool.count > 0 && now >= nextPoolSweep { sweepPool() }
            if now >= nextBufferTrim { trimBuffers() }
            if acceptPaused && now >= acceptResumeAt { resumeAccepting() }
            if mail { handleMail() }
            flushSessions()
            if draining && (table.live == 0 || now >= drainDeadline) {
                closeAllForExit()
                driver.finish()
                return
            }
        }
    }

    /// Hands one event to the code that owns its token.
    @inline(__always)
    func dispatch(_ token: EventToken, _ readiness: Readiness) {
        switch token.kind {
        case .downstream: onDownstream(token, readiness)
        case .upstream: onUpstream(token, readiness)
        case .pooled: onPooled(token)
        case .listener: acceptAll(Int(token.index))
        case .mailbox: break
        }
    }

    // MARK: - Events

    @inline(__always)
    func onDownstream(_ token: EventToken, _ mask: Readiness) {
        let slot = token.index
        let c = table.pointer(slot)
        guard c.pointee.generation == token.generation, c.pointee.downFD >= 0 else { return }
        if c.pointee.isHTTP {
            onHTTPDownstream(slot, mask)
            return
        }
        if c.pointee.h2 == .session {
            onSessionEvent(slot, mask)
            return
        }
        if c.pointee.peeking {
            c.pointee.toUp.sourceReady(mask)
            c.pointee.toDown.destinationReady(mask)
            peekStep(slot)
            return
        }
        onTunnelDownstream(slot, mask)
    }

    @inline(__always)
    func onUpstream(_ token: EventToken, _ mask: Readiness) {
        let slot = token.index
        let c = table.pointer(slot)
        guard c.pointee.generation == token.generation, c.pointee.isLive else { return }
        if c.pointee.isHTTP {
            onHTTPUpstream(slot, mask)
            return
        }
        if c.pointee.h2 == .upstream {
            onUpstreamSessionEvent(slot, mask)
            return
        }
        onTunnelUpstream(slot, mask)
    }

    // MARK: - Budget

    /// The connection has more to do than one wake allows: pump it again after this batch
    /// (edge-triggered events will not repeat for bytes already there).
    func resumeLater(_ slot: Int32) {
        counters.resumes += 1
        resume.append((slot, table.pointer(slot).pointee.generation))
    }

    /// Pumps the connections that were cut short in the previous round, once each.
    func runResumed() {
        guard !resume.isEmpty else { return }
        Swift.swap(&resume, &resuming)
        for (slot, generation) in resuming {
            let c = table.pointer(slot)
            guard c.pointee.generation == generation, c.pointee.isLive else { continue }
            if c.pointee.isHTTP {
                httpPump(slot)
            } else if c.pointee.h2 == .session {
                sessionPump(slot)
            } else if c.pointee.h2 == .upstream {
                upstreamSessionPump(slot)
            } else if !c.pointee.peeking && c.pointee.life.state == .tunnel {
                pump(slot)
            }
        }
        resuming.removeAll(keepingCapacity: true)
    }

    // MARK: - Timers

    func expireTimers() {
        guard timers.count > 0 else { return }
        expired.removeAll(keepingCapacity: true)
        timers.expire(now: now, into: &expired)
        for slot in expired {
            let c = table.pointer(slot)
            if c.pointee.isHTTP {
                onHTTPTimer(slot)
                continue
            }
            if c.pointee.h2 == .session {
                onSessionTimer(slot)
                continue
            }
            if c.pointee.h2 == .upstream {
                onUpstreamSessionTimer(slot)
                continue
            }
            if c.pointee.peeking {
                counters.peekTimeouts += 1
                countFrontend(c, .timeoutClient)
                if c.pointee.tls != nil { countFrontend(c, .tlsFailures) }
                close(slot, abort: false, reason: .clientTimeout)
                continue
            }
            onTunnelTimer(slot)
        }
    }

    // MARK: - Close

    /// Closes both sides and frees the slot. `abort` sends RST instead of FIN (errors).
    /// `reason`: why, when this close site knows (the first cause noted wins); counted in
    /// `metrics.closeReasons`.
    func close(_ slot: Int32, abort: Bool, reason: CloseReason = .none) {
        let c = table.pointer(slot)
        c.pointee.stats.note(reason)
        closeObserved(slot)
        timers.cancel(slot)
        switch c.pointee.h2 {
        case .none: break
        case .session: endSession(slot)
        case .stream: leaveSession(slot, abort: abort)
        case .upstream:
            closeUpstreamSession(slot, abort: abort)
            return
        }
        if c.pointee.h2Upstream { detachStream(slot, abort: abort) }
        if c.pointee.isHTTP || c.pointee.usesExchange { releaseHTTPBuffers(exchange(slot)) }
        disownParked(c)
        releaseResources(c, toUp: true)
        releaseResources(c, toUp: false)
        countClosed(c)
        unbind(c.pointee.snapshotEpoch)
        endTLS(c, abort: abort)
        if c.pointee.downFD >= 0 {
            if abort { driver.abort(c.pointee.downFD) } else { driver.close(c.pointee.downFD) }
        }
        if c.pointee.upFD >= 0 {
            if abort { driver.abort(c.pointee.upFD) } else { driver.close(c.pointee.upFD) }
        }
        counters.closed += 1
        table.free(slot)
    }
}
