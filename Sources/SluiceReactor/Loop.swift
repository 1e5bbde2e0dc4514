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

    var epoll: Epoll
    var table: ConnectionTable
    var timers: TimerWheel
    var pipes: PipePool
    var buffers: BufferPool
    /// HTTP heads and bodies in flight (32 KiB blocks).
    var httpBuffers: BufferPool
    /// Idle keep-alive upstream connections.
    var pool: UpstreamPool
    var nextPoolSweep: Int64 = 0
    /// Parsed header fields of the head being handled (shared: parsing is synchronous).
    let fieldStore: UnsafeMutableBufferPointer<HTTPField>
    let httpLimits = HTTPLimits()
    /// Scratch bytes for formatting (client address, cookies, stripped paths).
    let scratch: UnsafeMutableRawPointer
    /// Where a ClientHello split over several records is put back together.
    let helloScratch: UnsafeMutableRawBufferPointer
    static let scratchSize = 8192
    var snapshot: RoutingSnapshot
    var picker: EndpointPicker
    var listeners: [LoopListener] = []
    var counters = LoopCounters()
    /// Connections this loop accepts at most (its share of `limits.maxConnections`).
    var connectionLimit: Int
    let workerCount: Int
    var acceptPaused = false
    var acceptResumeAt: Int64 = 0
    var draining = false
    var drainDeadline: Int64 = 0
    var now: Int64
    var expired: [Int32] = []

    struct LoopListener {
        var key: ListenerKey
        var fd: Int32
        var service: Int32
        var routes: Int32
        var acceptProxy: [CIDR]
        var enabled: Bool
    }

    /// Capacity of the slot table: untouched slots cost no resident memory.
    static let tableCapacity = 1 << 16

    init(index: Int, workers: Int, snapshot: RoutingSnapshot, logger: Logger) throws(Errno) {
        self.index = index
        workerCount = workers
        self.logger = logger
        self.logger[metadataKey: "loop"] = "\(index)"
        mailbox = try Mailbox()
        epoll = try Epoll(capacity: 512)
        table = ConnectionTable(capacity: Self.tableCapacity)
        now = MonotonicClock.nowMillis()
        timers = TimerWheel(capacity: Self.tableCapacity, now: now)
        pipes = PipePool(pipeSize: snapshot.tuning.pipeSize, maxIdle: snapshot.tuning.pipePoolSize)
        buffers = BufferPool(bufferSize: snapshot.tuning.copyBufferSize)
        httpBuffers = BufferPool(bufferSize: Int(Self.httpBufferSize))
        pool = UpstreamPool(capacity: 4096)
        pool.resize(endpoints: snapshot.endpoints.count, perEndpoint: snapshot.limits.upstreamIdlePerEndpoint)
        fieldStore = .allocate(capacity: 256)
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        helloScratch = .allocate(byteCount: 32 * 1024, alignment: 16)
        self.snapshot = snapshot
        picker = EndpointPicker(snapshot: snapshot, seed: Self.seed(index))
        connectionLimit = Self.share(of: snapshot.limits.maxConnections, workers: workers)
        expired.reserveCapacity(Self.tableCapacity)
        try epoll.add(
            mailbox.wake.fd, events: Epoll.readable | Epoll.edgeTriggeredAll,
            data: EventToken(kind: .mailbox, index: 0, generation: 0).raw)
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
        while true {
            var timeout = draining || acceptPaused ? Int32(timers.tickMillis) : timers.sleepMillis(now: now)
            if pool.count > 0 && (timeout < 0 || timeout > 1000) { timeout = 1000 }
            let n = epoll.wait(timeoutMillis: timeout)
            now = MonotonicClock.nowMillis()
            var mail = false
            for i in 0..<n {
                let token = EventToken(raw: epoll.data(at: i))
                let mask = epoll.mask(at: i)
                switch token.kind {
                case .downstream: onDownstream(token, mask)
                case .upstream: onUpstream(token, mask)
                case .pooled: onPooled(token)
                case .listener: acceptAll(Int(token.index))
                case .mailbox: mail = true
                }
            }
            expireTimers()
            if pool.count > 0 && now >= nextPoolSweep { sweepPool() }
            if acceptPaused && now >= acceptResumeAt { resumeAccepting() }
            if mail { handleMail() }
            if draining && (table.live == 0 || now >= drainDeadline) {
                closeAllForExit()
                return
            }
        }
    }

    // MARK: - Mail

    func handleMail() {
        for message in mailbox.take() {
            switch message {
            case .snapshot(let next, let sockets, let applied):
                swap(to: next, sockets: sockets)
                applied.countDown()
            case .drain(let deadline): startDrain(deadline: deadline)
            case .report:
                logger.info(
                    "loop \(index): live=\(table.live) pipes_in_use=\(pipes.inUse) pipes_created=\(pipes.created) \(counters.summary)"
                )
            }
        }
    }

    /// Adopts a new routing table between batches. Established connections keep their
    /// descriptors and flows; they are no longer counted by the new picker.
    func swap(to next: RoutingSnapshot, sockets: [ListenerKey: Int32]) {
        var kept: [LoopListener] = []
        for listener in next.listeners {
            let service = Int32(listener.service)
            let routes = Int32(listener.routes)
            if let old = listeners.first(where: { $0.key == listener.key }) {
                var updated = old
                updated.service = service
                updated.routes = routes
                updated.acceptProxy = listener.acceptProxy
                kept.append(updated)
            } else if let fd = sockets[listener.key] {
                kept.append(
                    LoopListener(
                        key: listener.key, fd: fd, service: service, routes: routes, acceptProxy: listener.acceptProxy,
                        enabled: false))
            }
        }
        for old in listeners where !kept.contains(where: { $0.key == old.key }) {
            if old.enabled { epoll.remove(old.fd) }
            Syscall.close(old.fd)
        }
        // Sockets sent for keys this loop already had (should not happen) are not leaked.
        for (key, fd) in sockets where !kept.contains(where: { $0.key == key && $0.fd == fd }) {
            Syscall.close(fd)
        }
        listeners = kept
        snapshot = next
        picker = EndpointPicker(snapshot: next, seed: Self.seed(index))
        // Pooled connections are filed by endpoint index, which the new table renumbers.
        pool.drainAll { Syscall.close($0) }
        pool.resize(endpoints: next.endpoints.count, perEndpoint: next.limits.upstreamIdlePerEndpoint)
        connectionLimit = Self.share(of: next.limits.maxConnections, workers: workerCount)
        for i in listeners.indices { listeners[i].enabled = false }
        // Re-register every listener under its new position.
        for i in listeners.indices { epoll.remove(listeners[i].fd) }
        if !draining { enableListeners() }
    }

    func enableListeners() {
        guard !draining, table.live < connectionLimit else { return }
        for i in listeners.indices where !listeners[i].enabled {
            do {
                // Level-triggered: a loop that stops accepting part-way is woken again.
                try epoll.add(
                    listeners[i].fd, events: Epoll.readable,
                    data: EventToken(kind: .listener, index: Int32(i), generation: 0).raw)
                listeners[i].enabled = true
            } catch {
                logger.error("cannot watch listener \(listeners[i].key.address): \(error)")
            }
        }
    }

    func disableListeners() {
        for i in listeners.indices where listeners[i].enabled {
            epoll.remove(listeners[i].fd)
            listeners[i].enabled = false
        }
    }

    func startDrain(deadline: Int64) {
        draining = true
        drainDeadline = deadline
        disableListeners()
        for listener in listeners { Syscall.close(listener.fd) }
        listeners.removeAll()
        pool.drainAll { Syscall.close($0) }
        // Idle keep-alive clients are closed now; busy ones after their response.
        var slot: Int32 = 0
        while slot < table.highWater {
            let c = table.pointer(slot)
            if c.pointee.downFD >= 0 && c.pointee.isHTTP {
                let e = exchange(slot)
                if e.pointee.phase == .readingHead && e.pointee.req.isEmpty {
                    close(slot, abort: false)
                } else {
                    e.pointee.clientClose = true
                }
            }
            slot += 1
        }
    }

    /// An idle pooled upstream connection saw an event: the server closed it (or sent bytes
    /// nobody asked for). Drop it.
    func onPooled(_ token: EventToken) {
        if let fd = pool.remove(token.index, generation: token.generation) { Syscall.close(fd) }
    }

    func sweepPool() {
        pool.sweep(olderThan: now - snapshot.limits.upstreamIdleMillis) { Syscall.close($0) }
        nextPoolSweep = now + 1000
    }

    func closeAllForExit() {
        var slot: Int32 = 0
        while slot < table.highWater {
            if table.slots[Int(slot)].downFD >= 0 { close(slot, abort: true) }
            slot += 1
        }
        for listener in listeners { Syscall.close(listener.fd) }
        listeners.removeAll()
    }

    // MARK: - Accept

    func acceptAll(_ position: Int) {
        guard position < listeners.count, listeners[position].enabled else { return }
        let listener = listeners[position]
        // Bounded per event so one busy listener does not starve established connections;
        // the listener is level-triggered, so what is left raises the next event.
        for _ in 0..<64 {
            if table.live >= connectionLimit {
                counters.rejectedFull += 1
                disableListeners()
                return
            }
            let accepted: AcceptedSocket
            do {
                guard case .done(let socket) = try Socket.accept(listener.fd) else { return }
                accepted = socket
            } catch {
                counters.acceptErrors += 1
                if error == .tooManyFiles || error == .tooManyFilesInSystem {
                    // Out of descriptors: pause accepting briefly instead of spinning.
                    pauseAccepting()
                    return
                }
                continue
            }
            counters.accepted += 1
            openConnection(accepted, listener: listener)
        }
    }

    func pauseAccepting() {
        disableListeners()
        acceptPaused = true
        acceptResumeAt = now + 100
    }

    func resumeAccepting() {
        acceptPaused = false
        enableListeners()
    }

    func openConnection(_ accepted: AcceptedSocket, listener: LoopListener) {
        let service = listener.service
        guard let (slot, firstUse) = table.allocate() else {
            counters.rejectedFull += 1
            Syscall.close(accepted.fd)
            return
        }
        if firstUse { timers.reset(slot) }
        let c = table.pointer(slot)
        c.pointee.downFD = accepted.fd
        c.pointee.service = service
        c.pointee.snapshotGeneration = snapshot.generation
        Socket.setNoDelay(accepted.fd)
        do {
            try epoll.add(
                accepted.fd, events: Epoll.edgeTriggeredAll,
                data: EventToken(kind: .downstream, index: slot, generation: c.pointee.generation).raw)
        } catch {
            close(slot, abort: true)
            return
        }
        let peer = accepted.peerAddress
        let expectProxy = expectsProxy(listener, peer)
        if listener.key.protocol == .http {
            openHTTP(slot, peer: peer, listener: listener, expectProxy: expectProxy)
            if table.live >= connectionLimit { disableListeners() }
            return
        }
        if listener.key.protocol == .tls || expectProxy {
            openPeek(slot, peer: peer, listener: listener, expectProxy: expectProxy)
            if table.live >= connectionLimit { disableListeners() }
            return
        }
        if snapshot.services[Int(service)].proxyProtocol != nil {
            // Our PROXY header needs the client's address at connect time.
            c.pointee.usesExchange = true
            c.pointee.replay = true
            exchange(slot).initialize(to: HTTPExchange())
            storePeer(exchange(slot), peer)
        }
        let hash = accepted.peerAddress.map { SocketAddress(ip: Self.routingIP($0.ip), port: 0).addressHash } ?? 0
        guard let endpoint = picker.pick(service: Int(service), clientHash: hash, now: now) else {
            counters.noEndpoint += 1
            close(slot, abort: false)
            return
        }
        c.pointee.endpoint = Int32(endpoint)
        let start = c.pointee.life.start(now: now, connectMillis: snapshot.timeouts.connectMillis)
        guard case .connect(let deadline) = start else { preconditionFailure("start always connects") }
        startConnect(slot, deadline: deadline)
        if table.live >= connectionLimit { disableListeners() }
    }

    static func routingIP(_ ip: SystemAddress.IP) -> SocketAddress.IP {
        switch ip {
        case .v4(let a): return .v4(a)
        case .v6(let hi, let lo): return .v6(hi, lo)
        }
    }

    static func systemAddress(_ address: SocketAddress) -> SystemAddress {
        switch address.ip {
        case .v4(let a): return SystemAddress(ip: .v4(a), port: address.port)
        case .v6(let hi, let lo): return SystemAddress(ip: .v6(hi, lo), port: address.port)
        }
    }

    // MARK: - Connect

    /// Starts a non-blocking connect to the slot's endpoint, to be done by `deadline`; on
    /// immediate failure moves on as `connectFailed` decides.
    func startConnect(_ slot: Int32, deadline: Int64) {
        let c = table.pointer(slot)
        let address = Self.systemAddress(snapshot.endpoints[Int(c.pointee.endpoint)].address)
        let fd: Int32
        let connected: Bool
        do {
            (fd, connected) = try Socket.connect(to: address)
        } catch {
            connectFailed(slot, timedOut: false)
            return
        }
        Socket.setNoDelay(fd)
        c.pointee.upFD = fd
        do {
            try epoll.add(
                fd, events: Epoll.edgeTriggeredAll,
                data: EventToken(kind: .upstream, index: slot, generation: c.pointee.generation).raw)
        } catch {
            close(slot, abort: true)
            return
        }
        if connected {
            established(slot)
        } else {
            timers.schedule(slot, at: deadline)
        }
    }

    /// The connect to the slot's endpoint was refused, reset or timed out: mark the endpoint
    /// down, then try the next one or close the client, as `ConnectionLifecycle` decides.
    func connectFailed(_ slot: Int32, timedOut: Bool) {
        let c = table.pointer(slot)
        if timedOut { counters.connectTimeouts += 1 } else { counters.connectFailures += 1 }
        timers.cancel(slot)
        if c.pointee.upFD >= 0 {
            Syscall.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        let failed = Int(c.pointee.endpoint)
        // After a reload the index means nothing in the new table: there is no next endpoint.
        var next: Int? = nil
        if c.pointee.snapshotGeneration == snapshot.generation {
            picker.markDown(failed, until: now + snapshot.limits.endpointBackoffMillis)
            next = picker.next(after: failed, service: Int(c.pointee.service), now: now)
        }
        let action = c.pointee.life.connectFailed(
            now: now, maxTries: snapshot.limits.connectTries, hasNextEndpoint: next != nil,
            connectMillis: snapshot.timeouts.connectMillis)
        if case .connectNext(let deadline) = action, let next {
            counters.retries += 1
            c.pointee.endpoint = Int32(next)
            startConnect(slot, deadline: deadline)
        } else {
            close(slot, abort: false)
        }
    }

    func established(_ slot: Int32) {
        let c = table.pointer(slot)
        let arm = c.pointee.life.connected(now: now, tunnelMillis: snapshot.timeouts.tunnelMillis)
        if c.pointee.snapshotGeneration == snapshot.generation {
            picker.markUp(Int(c.pointee.endpoint))
            picker.opened(Int(c.pointee.endpoint))
            c.pointee.counted = true
        }
        if case .arm(let deadline) = arm { timers.schedule(slot, at: deadline) }
        startTunnel(slot)
    }

    /// Sets both flows up for an established pair (a TCP connection, or an HTTP connection
    /// after `101 Switching Protocols`) and starts moving bytes.
    func startTunnel(_ slot: Int32) {
        let c = table.pointer(slot)
        c.pointee.toUp.dstWritable = true
        // Data sent while we connected (or upgraded) is waiting: its edge has passed.
        c.pointee.toUp.srcReadable = true
        c.pointee.toDown.srcReadable = true
        c.pointee.toDown.dstWritable = true
        let useSplice = snapshot.tuning.splice
        c.pointee.toUp.copyMode = !useSplice
        c.pointee.toDown.copyMode = !useSplice
        let capacity = Int32(useSplice ? pipes.grantedSize : buffers.bufferSize)
        c.pointee.toUp.capacity = capacity
        c.pointee.toDown.capacity = capacity
        if c.pointee.replay && !injectReplay(slot) {
            close(slot, abort: true)
            return
        }
        pump(slot)
    }

    // MARK: - Events

    @inline(__always)
    func onDownstream(_ token: EventToken, _ mask: UInt32) {
        let slot = token.index
        let c = table.pointer(slot)
        guard c.pointee.generation == token.generation, c.pointee.downFD >= 0 else { return }
        if c.pointee.isHTTP {
            onHTTPDownstream(slot, mask)
            return
        }
        if c.pointee.peeking {
            if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 {
                c.pointee.toUp.srcReadable = true
                if mask & (Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 { c.pointee.toUp.srcHangup = true }
            }
            if mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 { c.pointee.toDown.dstWritable = true }
            peekStep(slot)
            return
        }
        if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 {
            c.pointee.toUp.srcReadable = true
            if mask & (Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 { c.pointee.toUp.srcHangup = true }
        }
        if mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 { c.pointee.toDown.dstWritable = true }
        switch c.pointee.life.state {
        case .tunnel:
            pump(slot)
        case .connecting:
            // The client vanished while we were connecting: give up now.
            if mask & (Epoll.hangup | Epoll.error) != 0 { close(slot, abort: true) }
        case .idle, .closed:
            break
        }
    }

    @inline(__always)
    func onUpstream(_ token: EventToken, _ mask: UInt32) {
        let slot = token.index
        let c = table.pointer(slot)
        guard c.pointee.generation == token.generation, c.pointee.downFD >= 0 else { return }
        if c.pointee.isHTTP {
            onHTTPUpstream(slot, mask)
            return
        }
        switch c.pointee.life.state {
        case .connecting:
            guard mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 else { return }
            if Socket.pendingError(c.pointee.upFD) == nil {
                if mask & (Epoll.readHangup | Epoll.hangup) != 0 { c.pointee.toDown.srcHangup = true }
                established(slot)
            } else {
                connectFailed(slot, timedOut: false)
            }
        case .tunnel:
            if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 {
                c.pointee.toDown.srcReadable = true
                if mask & (Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 { c.pointee.toDown.srcHangup = true }
            }
            if mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 { c.pointee.toUp.dstWritable = true }
            pump(slot)
        case .idle, .closed:
            break
        }
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
            if c.pointee.peeking {
                counters.peekTimeouts += 1
                close(slot, abort: false)
                continue
            }
            switch c.pointee.life.state {
            case .connecting:
                connectFailed(slot, timedOut: true)
            case .tunnel:
                let action = c.pointee.life.timerFired(
                    now: now, maxTries: 0, hasNextEndpoint: false,
                    timeouts: (snapshot.timeouts.connectMillis, snapshot.timeouts.tunnelMillis))
                if case .arm(let deadline) = action {
                    timers.schedule(slot, at: deadline)
                } else {
                    counters.idleTimeouts += 1
                    close(slot, abort: false)
                }
            case .idle, .closed:
                break
            }
        }
    }

    // MARK: - Close

    /// Closes both sides and frees the slot. `abort` sends RST instead of FIN (errors).
    func close(_ slot: Int32, abort: Bool) {
        let c = table.pointer(slot)
        timers.cancel(slot)
        if c.pointee.isHTTP || c.pointee.usesExchange { releaseHTTPBuffers(exchange(slot)) }
        releaseResources(c, toUp: true)
        releaseResources(c, toUp: false)
        if c.pointee.counted && c.pointee.snapshotGeneration == picker.generation {
            picker.closed(Int(c.pointee.endpoint))
        }
        if c.pointee.downFD >= 0 {
            if abort { Socket.abort(c.pointee.downFD) } else { Syscall.close(c.pointee.downFD) }
        }
        if c.pointee.upFD >= 0 {
            if abort { Socket.abort(c.pointee.upFD) } else { Syscall.close(c.pointee.upFD) }
        }
        counters.closed += 1
        table.free(slot)
        if !draining && !acceptPaused && table.live < connectionLimit { enableListeners() }
    }
}
