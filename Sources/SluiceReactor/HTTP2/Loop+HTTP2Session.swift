import SluiceRouting
import SluiceSystem

/// HTTP/2 client connections: the session slot's socket, its nghttp2 session, and the
/// frames between them. A connection becomes a session when its TLS handshake selected ALPN
/// `h2`, or when an http listener with `http2: true` reads the client connection preface
/// (prior knowledge). Each stream then runs as an HTTP exchange in a slot of its own
/// (`HTTP2Link`, `Loop+HTTP2Stream`).
///
/// | session      | leaves on                                                         |
/// | ------------ | ----------------------------------------------------------------- |
/// | serving      | GOAWAY (drain, listener gone, protocol error, flood) → going away |
/// | going away   | no stream left and the output sent → closed                       |
/// | any          | the client's EOF or reset, nghttp2 wanting neither read nor write, the idle timer → closed (open streams are reset) |
///
/// nghttp2 runs only here: `receive` after the socket gave bytes, `flush` when the session
/// is dirty (a stream submitted something) or the socket became writable. Streams woken by
/// the callbacks are pumped after nghttp2 returns (`runWoken`).
extension Loop {
    /// What the session asks of clients (RFC 9113 §6.5.2), and what it offers itself.
    static let sessionSettings: HTTP2Session.Settings = {
        var settings = HTTP2Session.Settings()
        settings.maxConcurrentStreams = 100
        // A stream's inbound buffer holds its head and its window (`HTTP2Link.inbound`).
        settings.initialWindowSize = 65_535
        settings.maxHeaderListSize = UInt32(h2HeadLimit)
        settings.connectionWindow = 1 << 20
        return settings
    }()

    /// The flood bounds, per session per `floodWindowMillis`: stream resets by the client
    /// (rapid reset, CVE-2023-44487), control frames (SETTINGS, PING, PRIORITY,
    /// WINDOW_UPDATE) and empty DATA or HEADERS-less frames that carry nothing.
    static let floodWindowMillis: Int64 = 10_000
    static let maxResetsPerWindow: Int32 = 200
    static let maxControlFramesPerWindow: Int32 = 2_000
    static let maxEmptyFramesPerWindow: Int32 = 1_000

    /// A stream's inbound buffer: its request head (`h2HeadLimit`) and its receive window.
    static let streamBufferSize: Int32 = 80 * 1024

    static let h2PrefaceStart: [UInt8] = Array("PRI * HTTP/2.0\r\n".utf8)

    // SAFETY: `link.session` is a retained HTTP2Session while the slot is a session (`endSession` releases it).
    @inline(__always)
    func h2Session(_ slot: Int32) -> HTTP2Session? {
        guard let pointer = exchange(slot).pointee.h2.session else { return nil }
        return Unmanaged<HTTP2Session>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Whether the bytes buffered on an http listener with `http2: true` begin the HTTP/2
    /// client preface: true, false, or nil while too few have come to tell.
    func startsPreface(_ bytes: UnsafeRawBufferPointer) -> Bool? {
        let n = min(bytes.count, Self.h2PrefaceStart.count)
        for i in 0..<n where bytes[i] != Self.h2PrefaceStart[i] { return false }
        return n == Self.h2PrefaceStart.count ? true : nil
    }

    /// Turns the connection in `slot` (an http client between requests, or a TLS client
    /// whose handshake selected h2) into an HTTP/2 session; `received` are bytes already
    /// read from it (the preface), fed first.
    func startSession(_ slot: Int32, received: UnsafeRawBufferPointer) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        timers.cancel(slot)
        c.pointee.isHTTP = false
        c.pointee.peeking = false
        c.pointee.h2 = .session
        c.pointee.usesExchange = true
        e.pointee.h2 = HTTP2Link()
        let session: HTTP2Session
        do {
            session = try HTTP2Session(
                handler: self, settings: Self.sessionSettings, tag: slot, tagGeneration: c.pointee.generation,
                pool: h2Pool)
        } catch {
            close(slot, abort: true, reason: .overLimit)
            return
        }
        e.pointee.h2.session = Unmanaged.passRetained(session).toOpaque()
        counters.h2Sessions += 1
        if !received.isEmpty, let failure = session.receive(received) {
            sessionFailed(slot, failure)
        }
        release(&e.pointee.req)
        guard c.pointee.h2 == .session else { return }
        c.pointee.toUp.srcReadable = true
        c.pointee.toDown.dstWritable = true
        c.pointee.life.activity(now: now)
        armSessionTimer(slot)
        sessionPump(slot)
    }

    /// An event on the session's socket.
    func onSessionEvent(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        c.pointee.toUp.sourceReady(mask)
        c.pointee.toDown.destinationReady(mask)
        if let error = clientWritable(c, mask) {
            close(slot, abort: true, reason: Self.failure(error, client: true))
            return
        }
        sessionPump(slot)
    }

    /// Reads what the socket has into nghttp2 (at most `stepBudget` reads per wake), pumps
    /// the streams that woke, then writes the session's output.
    func sessionPump(_ slot: Int32) {
        let c = table.pointer(slot)
        let generation = c.pointee.generation
        guard let session = h2Session(slot) else { return }
        var reads = 0
        while c.pointee.toUp.srcReadable && !exchange(slot).pointee.h2.failed {
            if reads == Self.stepBudget {
                resumeLater(slot)
                break
            }
            reads += 1
            switch receive(c, from: .downstream, into: scratch, count: Int32(Self.scratchSize)) {
            case .bytes(let n):
                c.pointee.life.activity(now: now)
                if let failure = session.receive(UnsafeRawBufferPointer(start: scratch, count: Int(n))) {
                    sessionFailed(slot, failure)
                }
                runWoken()
                guard c.pointee.generation == generation else { return }
            case .wouldBlock:
                break
            case .eof:
                close(slot, abort: false, reason: .clientClosed)
                return
            case .failed(let error):
                close(slot, abort: true, reason: Self.failure(error, client: true))
                return
            }
        }
        serviceSession(slot)
    }

    /// Writes the session's frames while the socket takes them, pumping the streams the
    /// data source woke, then closes the session when it is done.
    func serviceSession(_ slot: Int32) {
        let c = table.pointer(slot)
        let generation = c.pointee.generation
        for _ in 0..<Self.stepBudget {
            guard flushSession(slot) else { return }
            if h2Wake.isEmpty { break }
            runWoken()
            guard c.pointee.generation == generation else { return }
        }
        finishIfDone(slot)
    }

    /// Sends the queued frames and asks nghttp2 for more until the socket would block or
    /// nothing is left. False when the session closed.
    func flushSession(_ slot: Int32) -> Bool {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard let session = h2Session(slot) else { return false }
        var rounds = 0
        while rounds < Self.stepBudget {
            rounds += 1
            if !e.pointee.downq.isEmpty || outputPending(c) {
                guard c.pointee.toDown.dstWritable else { return true }
                switch send(c, &e.pointee.downq, to: .downstream) {
                case .bytes:
                    // A client taking its output is active (the idle timer reads this).
                    c.pointee.life.activity(now: now)
                    continue
                case .wouldBlock:
                    return true
                case .failed(let error):
                    close(slot, abort: true, reason: Self.failure(error, client: true))
                    return false
                }
            }
            guard session.wantsWrite else { break }
            if let failure = session.flush() {
                sessionFailed(slot, failure)
            }
            if e.pointee.downq.isEmpty { break }
        }
        // The budget ran out with output left on a writable socket: flushed again later.
        if rounds == Self.stepBudget && c.pointee.toDown.dstWritable
            && (!e.pointee.downq.isEmpty || outputPending(c) || session.wantsWrite)
        {
            markDirty(slot)
        }
        releaseIfEmpty(&e.pointee.downq)
        return true
    }

    /// Closes the session once nghttp2 wants neither to read nor to write, or once it is
    /// going away with no stream left and nothing to send.
    func finishIfDone(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard c.pointee.h2 == .session, let session = h2Session(slot) else { return }
        guard e.pointee.downq.isEmpty && !outputPending(c) else { return }
        // A protocol error or a flood ends the streams too, once the GOAWAY is out.
        let idleAway = e.pointee.h2.goingAway && (e.pointee.h2.streams == 0 || e.pointee.h2.failed)
        if idleAway || (!session.wantsRead && !session.wantsWrite) {
            close(slot, abort: false, reason: e.pointee.h2.failed ? .badRequest : .done)
        }
    }

    /// nghttp2 gave up on the session (a protocol error from the client): its GOAWAY goes
    /// out, then the session closes.
    func sessionFailed(_ slot: Int32, _ failure: HTTP2Session.Failure) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        counters.h2ProtocolErrors += 1
        countFrontend(c, .requestErrors)
        e.pointee.h2.failed = true
        e.pointee.h2.goingAway = true
        c.pointee.toUp.srcReadable = false
        if logger.logLevel <= .debug { logger.debug("HTTP/2 session ended: \(failure)") }
    }

    /// A GOAWAY with `errorCode` (0: graceful, streams already open finish); a flood or a
    /// protocol violation (`failed`) stops reading and serving.
    func goAway(_ slot: Int32, errorCode: UInt32, failed: Bool) {
        let e = exchange(slot)
        guard let session = h2Session(slot), !e.pointee.h2.goingAway || failed else { return }
        session.goAway(errorCode: errorCode)
        e.pointee.h2.goingAway = true
        if failed {
            e.pointee.h2.failed = true
            table.pointer(slot).pointee.toUp.srcReadable = false
        }
        markDirty(slot)
    }

    /// Queues the session for a flush at the end of the batch.
    @inline(__always)
    func markDirty(_ slot: Int32) {
        let e = exchange(slot)
        guard !e.pointee.h2.dirty else { return }
        e.pointee.h2.dirty = true
        h2Dirty.append((slot, table.pointer(slot).pointee.generation))
    }

    /// Flushes every session a stream or a timer touched in this batch.
    func flushSessions() {
        var rounds = 0
        runUpWoken()
        while !h2Dirty.isEmpty && rounds < Self.stepBudget {
            rounds += 1
            Swift.swap(&h2Dirty, &h2Flushing)
            for (slot, generation) in h2Flushing {
                let c = table.pointer(slot)
                guard c.pointee.generation == generation else { continue }
                if c.pointee.h2 == .upstream {
                    exchange(slot).pointee.h2.dirty = false
                    serviceUpstreamSession(slot)
                    continue
                }
                guard c.pointee.h2 == .session else { continue }
                exchange(slot).pointee.h2.dirty = false
                serviceSession(slot)
            }
            runUpWoken()
            h2Flushing.removeAll(keepingCapacity: true)
        }
    }

    // MARK: - Timer

    /// The session's one timer: the client timeout, from its last activity.
    func armSessionTimer(_ slot: Int32) {
        timers.schedule(slot, at: table.pointer(slot).pointee.life.lastActivity + exchangeTimeouts.client)
    }

    /// No frame for the client timeout: an idle session gets a GOAWAY and closes; one whose
    /// streams are busy waits on (their own timers bound them), but for streams stalled on a
    /// window the client does not open; one that cannot even take its output closes.
    func onSessionTimer(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let deadline = c.pointee.life.lastActivity + exchangeTimeouts.client
        if deadline > now {
            timers.schedule(slot, at: deadline)
            return
        }
        if !e.pointee.downq.isEmpty || outputPending(c) || e.pointee.h2.goingAway {
            // The client does not read what it asked for, or does not finish leaving.
            countFrontend(c, .timeoutClient)
            close(slot, abort: true, reason: .clientTimeout)
            return
        }
        if e.pointee.h2.streams == 0 {
            countFrontend(c, .timeoutClient)
            goAway(slot, errorCode: 0, failed: false)
        } else {
            resetStalledStreams(slot)
        }
        c.pointee.life.activity(now: now)
        armSessionTimer(slot)
    }

    /// Streams whose response waits on a flow-control window the silent client does not
    /// open are reset (CANCEL): the client took nothing for the client timeout.
    func resetStalledStreams(_ slot: Int32) {
        var stream = exchange(slot).pointee.h2.firstStream
        while stream >= 0 {
            let link = exchange(stream).pointee.h2
            if !link.outbound.isEmpty {
                countFrontend(table.pointer(stream), .timeoutClient)
                close(stream, abort: true, reason: .clientTimeout)
            }
            stream = link.next
        }
        markDirty(slot)
    }

    // MARK: - Floods

    /// Counts a frame from the client against the flood bounds; past one, GOAWAY
    /// ENHANCE_YOUR_CALM and the session ends.
    func countFrame(_ slot: Int32, type: UInt8, flags: UInt8, length: Int) {
        let e = exchange(slot)
        if now - e.pointee.h2.floodWindowStart >= Self.floodWindowMillis {
            e.pointee.h2.floodWindowStart = now
            e.pointee.h2.resets = 0
            e.pointee.h2.controlFrames = 0
            e.pointee.h2.emptyFrames = 0
        }
        var flooded = false
        switch type {
        case 0x3:  // RST_STREAM
            e.pointee.h2.resets += 1
            flooded = e.pointee.h2.resets > Self.maxResetsPerWindow
        case 0x2, 0x4, 0x6, 0x8:  // PRIORITY, SETTINGS, PING, WINDOW_UPDATE
            e.pointee.h2.controlFrames += 1
            flooded = e.pointee.h2.controlFrames > Self.maxControlFramesPerWindow
        case 0x0 where length == 0 && flags & 0x1 == 0:  // DATA carrying nothing, not ending
            e.pointee.h2.emptyFrames += 1
            flooded = e.pointee.h2.emptyFrames > Self.maxEmptyFramesPerWindow
        default:
            break
        }
        guard flooded, !e.pointee.h2.failed else { return }
        counters.h2Floods += 1
        countFrontend(table.pointer(slot), .requestErrors)
        goAway(slot, errorCode: 0xb, failed: true)
    }

    // MARK: - Drain and close

    /// A drain: GOAWAY (NO_ERROR); streams already open finish, then the session closes.
    func drainSession(_ slot: Int32) {
        goAway(slot, errorCode: 0, failed: false)
        serviceSession(slot)
    }

    /// Every session of the loop drains (the drain delay began: clients are sent elsewhere
    /// while the listeners still accept).
    func drainSessions() {
        var slot: Int32 = 0
        while slot < table.highWater {
            if table.pointer(slot).pointee.h2 == .session { drainSession(slot) }
            slot += 1
        }
    }

    /// On an http listener with `http2: true`, a connection's first bytes may be the HTTP/2
    /// client preface: the connection then becomes a session (`.closed` for the exchange
    /// pump). Nil when the exchange goes on as HTTP/1.1 (or needs more bytes to tell).
    func detectPreface(_ slot: Int32) -> Loop.HTTPStep? {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard !e.pointee.h2.prefaceChecked, !e.pointee.proxyPending, !e.pointee.req.isEmpty else { return nil }
        let position = Int(c.pointee.listener)
        guard c.pointee.h2 == .none, !e.pointee.secure, position >= 0, listeners[position].http2 else {
            e.pointee.h2.prefaceChecked = true
            return nil
        }
        let bytes = UnsafeRawBufferPointer(
            start: base(of: e.pointee.req) + Int(e.pointee.req.start), count: Int(e.pointee.req.count))
        switch startsPreface(bytes) {
        case false?:
            e.pointee.h2.prefaceChecked = true
            return nil
        case nil:
            return nil
        case true?:
            startSession(slot, received: bytes)
            return .closed
        }
    }

    /// The session slot closes: its streams are closed (their upstreams reset when busy) and
    /// the nghttp2 session freed. Called by `close` before the socket goes.
    func endSession(_ slot: Int32) {
        let e = exchange(slot)
        var stream = e.pointee.h2.firstStream
        while stream >= 0 {
            let next = exchange(stream).pointee.h2.next
            exchange(stream).pointee.h2.parent = -1
            close(stream, abort: true, reason: .clientClosed)
            stream = next
        }
        e.pointee.h2.firstStream = -1
        e.pointee.h2.streams = 0
        if let pointer = e.pointee.h2.session {
            Unmanaged<HTTP2Session>.fromOpaque(pointer).release()
        }
        e.pointee.h2 = HTTP2Link()
    }
}
