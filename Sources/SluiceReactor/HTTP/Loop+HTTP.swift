import SluiceRouting
import SluiceSystem
import SluiceWire

/// The `http` listener's data path: read a request head, route it by Host and path, pick an
/// endpoint, reuse or open an upstream connection, forward the rewritten head and the body,
/// read the response head, forward it and its body, then take the next request. See
/// `HTTPExchange` for the state table. Runs on the loop thread; allocates nothing per
/// request (buffers and upstream connections come from per-loop pools).
extension Loop {
    enum HTTPStep {
        case again
        case wait
        case closed
    }

    static let httpBufferSize: Int32 = 32 * 1024

    @inline(__always)
    func exchange(_ slot: Int32) -> UnsafeMutablePointer<HTTPExchange> { table.exchanges + Int(slot) }

    /// A new client connection on an http listener (already registered with epoll).
    func openHTTP(_ slot: Int32, peer: SystemAddress?, listener: LoopListener, expectProxy: Bool) {
        let c = table.pointer(slot)
        c.pointee.isHTTP = true
        let e = exchange(slot)
        e.initialize(to: HTTPExchange())
        e.pointee.routes = listener.routes
        e.pointee.listenPort = listener.key.address.port
        e.pointee.proxyPending = expectProxy
        storePeer(e, peer)
        c.pointee.life.activity(now: now)
        armHTTPTimer(slot, .clientIdle, at: now + snapshot.timeouts.clientMillis)
        httpPump(slot)
    }

    @inline(__always)
    func armHTTPTimer(_ slot: Int32, _ kind: HTTPExchange.TimerKind, at deadline: Int64) {
        exchange(slot).pointee.timer = kind
        timers.schedule(slot, at: deadline)
    }

    // MARK: - Events

    @inline(__always)
    func onHTTPDownstream(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        c.pointee.toUp.sourceReady(mask)
        c.pointee.toDown.destinationReady(mask)
        // A TLS client's ciphertext that the socket did not take before goes first.
        if mask.mayWrite, let session = c.pointee.tls, case .failed(let error) = pushTLSOutput(c, session) {
            closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
            return
        }
        httpPump(slot)
    }

    @inline(__always)
    func onHTTPUpstream(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if c.pointee.upFD < 0 {
            // No upstream attached: the event is for the connection this client parked.
            onParkedEvent(slot, mask)
            return
        }
        c.pointee.toDown.sourceReady(mask)
        c.pointee.toUp.destinationReady(mask)
        if e.pointee.phase == .readingHead {
            // An upstream attached between requests (not parked): any input means the server
            // closed it or sent bytes nobody asked for. Drop it; the next request takes another.
            if mask.mayRead {
                driver.close(c.pointee.upFD)
                c.pointee.upFD = -1
                c.pointee.toDown.srcReadable = false
                c.pointee.toDown.srcHangup = false
            }
            return
        }
        if e.pointee.phase == .connecting {
            guard mask.mayWrite else { return }
            let step: HTTPStep
            if connectError(c) == nil {
                connectSucceeded(c)
                step = queueRequest(slot)
            } else {
                step = httpConnectFailed(slot, timedOut: false)
            }
            if step != .again { return }
        }
        httpPump(slot)
    }

    /// The slot's timer fired.
    func onHTTPTimer(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        switch e.pointee.timer {
        case .clientIdle:
            countFrontend(c, .timeoutClient)
            detachUpstream(slot)
            closeHTTP(slot, abort: false, reason: .clientTimeout)
        case .requestHead:
            counters.httpTimeouts += 1
            countFrontend(c, .timeoutRequestHead)
            if respondError(slot, status: 408, reason: .requestHeadTimeout) == .again { httpPump(slot) }
        case .connect:
            if httpConnectFailed(slot, timedOut: true) == .again { httpPump(slot) }
        case .server:
            let idleUntil = c.pointee.life.lastActivity + snapshot.timeouts.serverMillis
            let bodyDue = requestBodyDeadline(e)
            if bodyDue <= now {
                // The client trickles its body: 408 while nothing of the response went out.
                counters.bodyTimeouts += 1
                counters.httpTimeouts += 1
                countFrontend(c, .timeoutRequestBody)
                if e.pointee.responseStarted {
                    closeHTTP(slot, abort: true, reason: .requestBodyTimeout)
                } else if respondError(slot, status: 408, reason: .requestBodyTimeout) == .again {
                    httpPump(slot)
                }
            } else if idleUntil > now {
                timers.schedule(slot, at: min(idleUntil, bodyDue))
            } else if !e.pointee.responseStarted {
                counters.httpTimeouts += 1
                countBackend(c, .timeoutServer)
                if respondError(slot, status: 504, reason: .serverTimeout) == .again { httpPump(slot) }
            } else {
                counters.httpTimeouts += 1
                countBackend(c, .timeoutServer)
                closeHTTP(slot, abort: true, reason: .serverTimeout)
            }
        case .closing:
            closeHTTP(slot, abort: false, reason: .clientTimeout)
        case .tlsIdle:
            releaseIdleBuffers(c)
            armHTTPTimer(slot, .clientIdle, at: c.pointee.life.lastActivity + snapshot.timeouts.clientMillis)
        case .tunnel:
            let idleUntil = c.pointee.life.lastActivity + snapshot.timeouts.tunnelMillis
            if idleUntil > now {
                timers.schedule(slot, at: idleUntil)
            } else {
                counters.idleTimeouts += 1
                countBackend(c, .timeoutTunnel)
                closeHTTP(slot, abort: false, reason: .tunnelTimeout)
            }
        }
    }

    // MARK: - Pump

    /// Runs the exchange until it waits for an event or the connection closed.
    /// At most `Loop.stepBudget` steps per wake; a connection with more to do is resumed
    /// after the batch (`resumeLater`).
    func httpPump(_ slot: Int32) {
        let e = exchange(slot)
        for _ in 0..<Self.stepBudget {
            let step: HTTPStep
            switch e.pointee.phase {
            case .readingHead: step = readRequestHead(slot)
            case .connecting: return
            case .exchanging: step = exchangeStep(slot)
            case .upgrading: step = upgradeStep(slot)
            case .closing: step = closingStep(slot)
            case .relaying: step = relayStep(slot)
            }
            if step != .again { return }
        }
        resumeLater(slot)
    }
}
