import SluiceRouting
import SluiceSystem

/// HTTP/2 connections to endpoints, for services with `protocol: h2c` or `h2`: a session slot
/// (`HTTP2Role.upstream`) holds the socket, for `h2` a client TLS session
/// (`Connection.tls`, over memory as for termination), and an nghttp2 client session; the
/// exchanges whose requests it carries are streams on it (`HTTP2UpstreamLink`,
/// `Loop+HTTP2UpstreamStream`). Sessions are filed by the endpoint's address and the
/// services' TLS settings (`UpstreamSessionKey`, `Loop.h2Upstreams`), so they hold no index
/// into any snapshot and outlive swaps; an exchange takes the first session of its key with
/// a stream to spare, or opens one.
///
/// | session     | leaves on                                                               |
/// | ----------- | ----------------------------------------------------------------------- |
/// | connecting  | writable, no error → serving (h2c), handshaking (h2); refused, the connect timeout → closed (the waiting exchanges fail as a connect does) |
/// | handshaking | the handshake done with ALPN h2 → serving (the waiting exchanges submit); a failed handshake or certificate, no ALPN h2, the connect timeout → closed (they fail as a connect does) |
/// | serving     | a GOAWAY from the endpoint, a drain → going away (no new stream); idle for `limits.upstreamIdle` → closed (GOAWAY first) |
/// | going away  | no stream left and the output sent → closed (GOAWAY first)             |
/// | any         | EOF, an error or a protocol error → closed: its streams fail             |
///
/// nghttp2 runs only here (receive, flush); exchanges the callbacks wake are pumped after it
/// returns (`runUpWoken`), as for client sessions.
/// What a session to an endpoint is filed under: the address, and which TLS settings it was
/// made with (`UpstreamTLS.key`; 0 for h2c). Services share a connection only when both
/// match.
struct UpstreamSessionKey: Hashable {
    var address: SocketAddress
    var tls: UInt64
}

extension Loop {
    /// What a session asks of its endpoint: no push, a stream window its inbound buffer holds
    /// next to the head, and a 1 MiB connection window.
    static let upstreamSessionSettings: HTTP2Session.Settings = {
        var settings = HTTP2Session.Settings()
        settings.maxConcurrentStreams = 100
        settings.initialWindowSize = 65_535
        settings.maxHeaderListSize = UInt32(h2HeadLimit)
        settings.connectionWindow = 1 << 20
        return settings
    }()

    /// Most streams one session carries at once (fewer when the endpoint says so).
    static let maxStreamsPerUpstreamSession = 100

    enum UpstreamSessionOpen {
        case opened(Int32)
        /// The endpoint refused at once.
        case refused
        /// Out of descriptors (counted, never held against the endpoint).
        case noDescriptors
        /// No slot, or nghttp2 or the poller refused.
        case failed
    }

    /// What a session slot is filed under.
    func upstreamKey(_ slot: Int32) -> UpstreamSessionKey {
        let link = exchange(slot).pointee.h2
        let ip: SocketAddress.IP =
            link.addressV6 ? .v6(link.addressHi, link.addressLo) : .v4(UInt32(truncatingIfNeeded: link.addressLo))
        return UpstreamSessionKey(address: SocketAddress(ip: ip, port: link.addressPort), tls: link.tlsKey)
    }

    /// The key an exchange's stream is filed under: its endpoint, and its service's TLS
    /// settings, in the snapshot it was routed with.
    @inline(__always)
    func upstreamKey(routed c: UnsafeMutablePointer<Connection>) -> UpstreamSessionKey {
        let routedWith = routed(c)
        return UpstreamSessionKey(
            address: routedWith.endpoints[Int(c.pointee.endpoint)].address,
            tls: routedWith.services[Int(c.pointee.service)].upstreamTLS?.key ?? 0)
    }

    /// A session of `key` that may take one more stream: not going away, below the
    /// endpoint's concurrency limit. Nil when there is none.
    func findUpstreamSession(_ key: UpstreamSessionKey) -> Int32? {
        var slot = h2Upstreams[key] ?? -1
        while slot >= 0 {
            let e = exchange(slot)
            if !e.pointee.h2.goingAway, let session = h2Session(slot),
                Int(e.pointee.h2.streams) < min(session.peerMaxConcurrentStreams, Self.maxStreamsPerUpstreamSession)
            {
                return slot
            }
            slot = e.pointee.h2.next
        }
        return nil
    }

    /// Opens a session slot connecting to `key`'s address (over TLS made from `tls`'s
    /// context when given), filed first among that key's.
    func openUpstreamSession(_ key: UpstreamSessionKey, tls: UpstreamTLS?) -> UpstreamSessionOpen {
        let address = key.address
        guard let (slot, firstUse) = table.allocate() else {
            counters.rejectedFull += 1
            return .failed
        }
        if firstUse {
            timers.reset(slot)
            if let logStates { (logStates + Int(slot)).initialize(to: LogState()) }
        }
        let c = table.pointer(slot)
        c.pointee.h2 = .upstream
        c.pointee.usesExchange = true
        c.pointee.snapshotEpoch = epoch
        let e = exchange(slot)
        e.initialize(to: HTTPExchange())
        e.pointee.h2 = HTTP2Link()
        switch address.ip {
        case .v4(let a):
            e.pointee.h2.addressLo = UInt64(a)
        case .v6(let hi, let lo):
            e.pointee.h2.addressV6 = true
            e.pointee.h2.addressHi = hi
            e.pointee.h2.addressLo = lo
        }
        e.pointee.h2.addressPort = address.port
        e.pointee.h2.tlsKey = key.tls
        if let tls {
            guard
                let session = TLSSession.makeClient(
                    context: tls.context.pointer, serverName: tls.serverName, checkName: tls.verify)
            else {
                closeUpstreamSession(slot, abort: true)
                return .failed
            }
            c.pointee.tls = session
        }
        do {
            let session = try HTTP2Session(
                handler: self, settings: Self.upstreamSessionSettings, tag: slot, tagGeneration: c.pointee.generation,
                client: true, pool: h2Pool)
            e.pointee.h2.session = Unmanaged.passRetained(session).toOpaque()
        } catch {
            closeUpstreamSession(slot, abort: true)
            return .failed
        }
        let fd: Int32
        switch driver.connect(to: Self.systemAddress(address)) {
        case .connected(let socket):
            fd = socket
            e.pointee.h2.tcpConnected = true
            e.pointee.h2.connected = tls == nil
        case .inProgress(let socket):
            fd = socket
        case .failed(let error):
            closeUpstreamSession(slot, abort: true)
            counters.h2UpstreamFailures += 1
            guard error == .tooManyFiles || error == .tooManyFilesInSystem else { return .refused }
            noteDescriptorExhaustion()
            return .noDescriptors
        }
        c.pointee.upFD = fd
        driver.setNoDelay(fd)
        guard driver.watch(fd, EventToken(kind: .upstream, index: slot, generation: c.pointee.generation)) else {
            closeUpstreamSession(slot, abort: true)
            return .failed
        }
        // Filed first: new streams go to the newest session until it is full.
        let head = h2Upstreams[key] ?? -1
        e.pointee.h2.next = head
        if head >= 0 { exchange(head).pointee.h2.prev = slot }
        h2Upstreams[key] = slot
        counters.h2UpstreamSessions += 1
        c.pointee.life.activity(now: now)
        c.pointee.toUp.dstWritable = e.pointee.h2.tcpConnected
        c.pointee.toDown.srcReadable = e.pointee.h2.tcpConnected
        timers.schedule(slot, at: now + snapshot.timeouts.connectMillis)
        if e.pointee.h2.connected { timers.schedule(slot, at: now + snapshot.limits.upstreamIdleMillis) }
        // The ClientHello, or the connection preface, goes out with the first flush.
        markDirty(slot)
        return .opened(slot)
    }

    /// An event on a session's socket.
    func onUpstreamSessionEvent(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let generation = c.pointee.generation
        c.pointee.toDown.sourceReady(mask)
        c.pointee.toUp.destinationReady(mask)
        if !e.pointee.h2.connected {
            if !e.pointee.h2.tcpConnected {
                guard mask.mayWrite else { return }
                if driver.connectError(c.pointee.upFD) != nil {
                    failUpstreamSession(slot, timedOut: false)
                    return
                }
                e.pointee.h2.tcpConnected = true
            }
            if c.pointee.tls != nil {
                guard upstreamHandshakeStep(slot) else { return }
            } else {
                upstreamSessionReady(slot)
            }
            runUpWoken()
            guard c.pointee.generation == generation else { return }
        }
        upstreamSessionPump(slot)
    }

    /// The session may carry requests: the idle limit starts, and the exchanges waiting for
    /// the connect submit theirs (woken; `runUpWoken` pumps them).
    func upstreamSessionReady(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        e.pointee.h2.connected = true
        c.pointee.life.activity(now: now)
        timers.schedule(slot, at: now + snapshot.limits.upstreamIdleMillis)
        var stream = e.pointee.h2.firstStream
        while stream >= 0 {
            wakeUp(stream)
            stream = exchange(stream).pointee.up2.next
        }
    }

    /// Advances the TLS handshake with the endpoint, feeding the session the socket's
    /// ciphertext and sending its flights. True when it completed now with ALPN h2 (the
    /// session is ready); false while it waits for the socket, or after a failure closed the
    /// session (counted by reason, logged at most once per 10 s with the endpoint and why).
    func upstreamHandshakeStep(_ slot: Int32) -> Bool {
        let c = table.pointer(slot)
        guard let tls = c.pointee.tls else { return false }
        var failure: Errno? = nil
        handshake: while true {
            switch TLSSession.handshake(tls) {
            case .done:
                if case .failed(let error) = pushTLSOutput(c, tls, side: .upstream) {
                    failure = error
                    break handshake
                }
                guard TLSSession.selectedHTTP2(tls) else {
                    counters.h2UpstreamTLSALPNFailures += 1
                    logUpstreamTLSFailure(slot, "the endpoint did not select ALPN h2 (does it speak HTTP/2 over TLS?)")
                    failUpstreamSession(slot, timedOut: false)
                    return false
                }
                counters.h2UpstreamTLSHandshakes += 1
                upstreamSessionReady(slot)
                // The last flight may have brought the endpoint's SETTINGS too.
                c.pointee.toDown.srcReadable = true
                return true
            case .wantRead:
                if case .failed(let error) = pushTLSOutput(c, tls, side: .upstream) {
                    failure = error
                    break handshake
                }
                guard c.pointee.toDown.srcReadable else { return false }
                switch fillTLSInput(c, tls, side: .upstream) {
                case .bytes: continue
                case .wouldBlock: return false
                case .failed(let error):
                    failure = error
                    break handshake
                }
            case .wantWrite:
                switch pushTLSOutput(c, tls, side: .upstream) {
                case .bytes: continue
                case .wouldBlock: return false
                case .failed(let error):
                    failure = error
                    break handshake
                }
            case .eof, .failed:
                break handshake
            }
        }
        if let reason = TLSSession.verifyFailure(tls) {
            counters.h2UpstreamTLSVerifyFailures += 1
            _ = TLSSession.takeFailure()
            logUpstreamTLSFailure(slot, "certificate verify failed: \(reason)")
        } else {
            counters.h2UpstreamTLSOtherFailures += 1
            let reason = failure.map { "\($0)" } ?? TLSSession.lastError()
            logUpstreamTLSFailure(slot, reason.isEmpty ? "the endpoint closed the connection" : reason)
        }
        failUpstreamSession(slot, timedOut: false)
        return false
    }

    /// One warning line per 10 s at most: a misconfigured trust bundle fails every connect.
    func logUpstreamTLSFailure(_ slot: Int32, _ reason: String) {
        guard upstreamTLSLoggedAt == .min || now - upstreamTLSLoggedAt >= 10_000 else { return }
        upstreamTLSLoggedAt = now
        logger.warning("TLS handshake with endpoint \(upstreamKey(slot).address) failed: \(reason)")
    }

    /// Reads what the endpoint sent into nghttp2 (at most `stepBudget` reads per wake),
    /// pumps the exchanges that woke, then writes the session's output.
    func upstreamSessionPump(_ slot: Int32) {
        let c = table.pointer(slot)
        let generation = c.pointee.generation
        guard c.pointee.h2 == .upstream, let session = h2Session(slot) else { return }
        var reads = 0
        while c.pointee.toDown.srcReadable && exchange(slot).pointee.h2.connected {
            if reads == Self.stepBudget {
                resumeLater(slot)
                break
            }
            reads += 1
            let result: ReadResult
            if let tls = c.pointee.tls {
                result = receiveTLS(c, tls, into: scratch, count: Int32(Self.scratchSize), side: .upstream)
            } else {
                result = receivePlain(
                    c.pointee.upFD, into: scratch, count: Int32(Self.scratchSize),
                    readable: &c.pointee.toDown.srcReadable, hangup: c.pointee.toDown.srcHangup)
            }
            switch result {
            case .bytes(let n):
                c.pointee.life.activity(now: now)
                if let failure = session.receive(UnsafeRawBufferPointer(start: scratch, count: Int(n))) {
                    if logger.logLevel <= .debug { logger.debug("HTTP/2 upstream session ended: \(failure)") }
                    runUpWoken()
                    guard c.pointee.generation == generation else { return }
                    failUpstreamSession(slot, timedOut: false)
                    return
                }
                runUpWoken()
                guard c.pointee.generation == generation else { return }
            case .wouldBlock:
                break
            case .eof, .failed:
                runUpWoken()
                guard c.pointee.generation == generation else { return }
                failUpstreamSession(slot, timedOut: false)
                return
            }
        }
        serviceUpstreamSession(slot)
    }

    /// Writes the session's frames while the socket takes them, pumping the exchanges the
    /// data source woke, then closes the session when it is done.
    func serviceUpstreamSession(_ slot: Int32) {
        let c = table.pointer(slot)
        let generation = c.pointee.generation
        for _ in 0..<Self.stepBudget {
            guard flushUpstreamSession(slot) else { return }
            if h2UpWake.isEmpty { break }
            runUpWoken()
            guard c.pointee.generation == generation else { return }
        }
        finishUpstreamIfDone(slot)
    }

    /// Sends the queued frames and asks nghttp2 for more until the socket would block or
    /// nothing is left. False when the session closed.
    func flushUpstreamSession(_ slot: Int32) -> Bool {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard c.pointee.h2 == .upstream, let session = h2Session(slot) else { return false }
        guard e.pointee.h2.connected else {
            guard e.pointee.h2.tcpConnected, c.pointee.tls != nil else { return true }
            let generation = c.pointee.generation
            _ = upstreamHandshakeStep(slot)
            return c.pointee.generation == generation
        }
        var rounds = 0
        while rounds < Self.stepBudget {
            rounds += 1
            if let tls = c.pointee.tls, TLSSession.pendingOutputCount(tls) > 0 {
                guard c.pointee.toUp.dstWritable else { return true }
                switch pushTLSOutput(c, tls, side: .upstream) {
                case .bytes: break
                case .wouldBlock: return true
                case .failed:
                    failUpstreamSession(slot, timedOut: false)
                    return false
                }
            }
            if !e.pointee.downq.isEmpty {
                guard c.pointee.toUp.dstWritable else { return true }
                let sent =
                    if let tls = c.pointee.tls {
                        sendTLS(c, tls, &e.pointee.downq, side: .upstream)
                    } else {
                        sendPlain(c.pointee.upFD, &e.pointee.downq, writable: &c.pointee.toUp.dstWritable)
                    }
                switch sent {
                case .bytes:
                    c.pointee.life.activity(now: now)
                    continue
                case .wouldBlock:
                    return true
                case .failed:
                    failUpstreamSession(slot, timedOut: false)
                    return false
                }
            }
            guard session.wantsWrite else { break }
            if session.flush() != nil {
                failUpstreamSession(slot, timedOut: false)
                return false
            }
            if e.pointee.downq.isEmpty { break }
        }
        // The budget ran out with output left on a writable socket: no event will come for
        // it, so the session is flushed again at the batch's end.
        if rounds == Self.stepBudget && c.pointee.toUp.dstWritable
            && (!e.pointee.downq.isEmpty || outputPending(c) || session.wantsWrite)
        {
            markDirty(slot)
        }
        releaseIfEmpty(&e.pointee.downq)
        return true
    }

    /// Closes the session once it is going away (or the loop drains) with no stream left and
    /// nothing to send, or once nghttp2 wants neither to read nor to write.
    func finishUpstreamIfDone(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard c.pointee.h2 == .upstream, e.pointee.h2.connected, let session = h2Session(slot),
            e.pointee.downq.isEmpty, !outputPending(c)
        else { return }
        let idleAway = (e.pointee.h2.goingAway || draining) && e.pointee.h2.streams == 0
        if idleAway || (!session.wantsRead && !session.wantsWrite) {
            closeUpstreamSession(slot, abort: false)
        }
    }

    /// The session cannot go on (connect refused or timed out, EOF, an error, a protocol
    /// error): counted, and closed; its streams fail (`endUpstreamSession`).
    func failUpstreamSession(_ slot: Int32, timedOut: Bool) {
        counters.h2UpstreamFailures += 1
        closeUpstreamSession(slot, abort: true, connectTimedOut: timedOut)
    }

    /// The session's one timer: the connect timeout (and TLS handshake) until ready, then the idle limit
    /// while no stream is open (streams have their exchanges' timers).
    func onUpstreamSessionTimer(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard e.pointee.h2.connected else {
            failUpstreamSession(slot, timedOut: true)
            return
        }
        let deadline = c.pointee.life.lastActivity + snapshot.limits.upstreamIdleMillis
        if e.pointee.h2.streams > 0 || deadline > now {
            timers.schedule(slot, at: max(deadline, now + 1000))
            return
        }
        closeUpstreamSession(slot, abort: false)
    }

    /// A drain: the session takes no new stream; a connected one tells the endpoint at once
    /// (GOAWAY). The streams in flight, and the exchanges waiting for the connect, finish;
    /// then it closes (`finishUpstreamIfDone`).
    func drainUpstreamSession(_ slot: Int32) {
        let e = exchange(slot)
        let wasGoingAway = e.pointee.h2.goingAway
        e.pointee.h2.goingAway = true
        if e.pointee.h2.streams == 0 {
            closeUpstreamSession(slot, abort: false)
            return
        }
        guard e.pointee.h2.connected, !wasGoingAway, let session = h2Session(slot) else { return }
        session.goAway(errorCode: 0)
        e.pointee.h2.sentGoAway = true
        serviceUpstreamSession(slot)
    }

    /// Frees the session slot: its exchanges' streams fail (they are woken to see it), the
    /// session is filed out and released, the socket closed. Not counted as a client
    /// connection. `connectTimedOut`: the waiting exchanges fail as a connect timeout.
    func closeUpstreamSession(_ slot: Int32, abort: Bool, connectTimedOut: Bool = false) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        timers.cancel(slot)
        let connected = e.pointee.h2.connected
        var stream = e.pointee.h2.firstStream
        while stream >= 0 {
            let link = exchange(stream).pointee.up2
            let next = link.next
            exchange(stream).pointee.up2.linked = false
            exchange(stream).pointee.up2.next = -1
            exchange(stream).pointee.up2.prev = -1
            if !link.ended {
                exchange(stream).pointee.up2.failed = true
                exchange(stream).pointee.up2.timedOut = connectTimedOut && !connected
                if connected && link.stream != 0 { counters.h2UpstreamResets += 1 }
            }
            wakeUp(stream)
            stream = next
        }
        e.pointee.h2.firstStream = -1
        e.pointee.h2.streams = 0
        // Filed out of its address's list.
        let prev = e.pointee.h2.prev
        let next = e.pointee.h2.next
        if prev >= 0 {
            exchange(prev).pointee.h2.next = next
        } else {
            let key = upstreamKey(slot)
            if h2Upstreams[key] == slot {
                if next >= 0 { h2Upstreams[key] = next } else { h2Upstreams.removeValue(forKey: key) }
            }
        }
        if next >= 0 { exchange(next).pointee.h2.prev = prev }
        if !abort && connected && !e.pointee.h2.sentGoAway && c.pointee.upFD >= 0, let pointer = e.pointee.h2.session {
            // A graceful close tells the endpoint first: GOAWAY, written once if the socket
            // takes it (nothing is waited for).
            let session = Unmanaged<HTTP2Session>.fromOpaque(pointer).takeUnretainedValue()
            session.goAway(errorCode: 0)
            if session.flush() == nil && !e.pointee.downq.isEmpty {
                if let tls = c.pointee.tls {
                    _ = sendTLS(c, tls, &e.pointee.downq, side: .upstream)
                } else {
                    _ = sendPlain(c.pointee.upFD, &e.pointee.downq, writable: &c.pointee.toUp.dstWritable)
                }
            }
        }
        endTLS(c, abort: abort || !connected || c.pointee.upFD < 0, side: .upstream)
        if let pointer = e.pointee.h2.session {
            Unmanaged<HTTP2Session>.fromOpaque(pointer).release()
        }
        e.pointee.h2 = HTTP2Link()
        releaseHTTPBuffers(e)
        if c.pointee.upFD >= 0 {
            if abort { driver.abort(c.pointee.upFD) } else { driver.close(c.pointee.upFD) }
        }
        table.free(slot)
    }
}
