import SluiceRouting
import SluiceSystem
import SluiceWire

/// The `http` listener's data path: read a request head, route it by Host and path, pick an
/// endpoint, reuse or open an upstream connection, forward the rewritten head and the body,
/// read the response head, forward it and its body, then take the next request. The
/// exchange's control state is `HTTPExchangeMachine` (its state table): this code reports
/// what it observed and executes the action returned. Runs on the loop thread; allocates nothing per
/// request (buffers and upstream connections come from per-loop pools).
extension Loop {
    enum HTTPStep {
        case again
        case wait
        case closed
    }

    static let httpBufferSize: Int32 = 32 * 1024

    // SAFETY: initialised when an http connection took `slot` (`openHTTP`, `usesExchange`); loop thread only.
    @inline(__always)
    func exchange(_ slot: Int32) -> UnsafeMutablePointer<HTTPExchange> { table.exchanges + Int(slot) }

    /// A new client connection on an http listener (already watched by the driver).
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
        apply(slot, .waiting(tls: false))
        httpPump(slot)
    }

    /// Reports `event` to the slot's exchange machine at the loop's time; the action to execute.
    @inline(__always)
    func report(_ slot: Int32, _ event: HTTPExchangeMachine.Event) -> HTTPExchangeMachine.Action {
        exchange(slot).pointee.machine.on(event, now: now, exchangeTimeouts)
    }

    /// Arms the slot's one timer (its kind is the machine's).
    @inline(__always)
    func arm(_ slot: Int32, _ timer: HTTPExchangeMachine.Timer) {
        timers.schedule(slot, at: timer.deadline)
    }

    /// Reports an event whose only possible actions are to carry on or arm a timer.
    @inline(__always)
    func apply(_ slot: Int32, _ event: HTTPExchangeMachine.Event) {
        switch report(slot, event) {
        case .proceed: break
        case .armTimer(let timer): arm(slot, timer)
        default: unexpected(event)
        }
    }

    /// The machine answered `event` with an action its call site does not take: a bug.
    func unexpected(_ event: HTTPExchangeMachine.Event) -> Never {
        preconditionFailure("HTTP exchange: unexpected action for \(event)")
    }

    static func exchangeTimeouts(_ snapshot: RoutingSnapshot) -> HTTPExchangeMachine.Timeouts {
        HTTPExchangeMachine.Timeouts(
            client: snapshot.timeouts.clientMillis, requestHead: snapshot.timeouts.requestHeadMillis,
            connect: snapshot.timeouts.connectMillis, server: snapshot.timeouts.serverMillis,
            requestBody: snapshot.timeouts.requestBodyMillis, tunnel: snapshot.timeouts.tunnelMillis,
            requestBodyMinRate: Int64(snapshot.limits.requestBodyMinRate), tlsIdle: tlsIdleMillis)
    }

    // MARK: - Events

    @inline(__always)
    func onHTTPDownstream(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        c.pointee.toUp.sourceReady(mask)
        c.pointee.toDown.destinationReady(mask)
        if let error = clientWritable(c, mask) {
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
        if e.pointee.machine.state == .readingHead {
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
        if e.pointee.machine.state == .connecting {
            guard mask.mayWrite else { return }
            let step: HTTPStep
            if connectError(c) == nil {
                connectSucceeded(c)
                step = upstreamConnected(slot)
            } else {
                step = httpConnectFailed(slot, timedOut: false)
            }
            if step != .again { return }
        }
        httpPump(slot)
    }

    /// The slot's timer fired: the machine says which wait ran out (or re-arms).
    func onHTTPTimer(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let action = report(
            slot, .timerFired(lastActivity: c.pointee.life.lastActivity, requestBody: awaitedBody(e)))
        switch action {
        case .armTimer(let timer):
            arm(slot, timer)
        case .releaseTLS(let timer):
            releaseIdleBuffers(c)
            arm(slot, timer)
        case .expired(.clientIdle):
            // Draining: the short idle a drain leaves a keep-alive client ran out (no timeout).
            if !draining { countFrontend(c, .timeoutClient) }
            detachUpstream(slot)
            closeHTTP(slot, abort: false, reason: draining ? .draining : .clientTimeout)
        case .expired(.requestHead):
            counters.httpTimeouts += 1
            countFrontend(c, .timeoutRequestHead)
            if respondError(slot, status: 408, reason: .requestHeadTimeout) == .again { httpPump(slot) }
        case .expired(.connect):
            if httpConnectFailed(slot, timedOut: true) == .again { httpPump(slot) }
        case .expired(.requestBody):
            // The client trickles its body: 408 while nothing of the response went out.
            counters.bodyTimeouts += 1
            counters.httpTimeouts += 1
            countFrontend(c, .timeoutRequestBody)
            if respondError(slot, status: 408, reason: .requestBodyTimeout) == .again { httpPump(slot) }
        case .expired(.server):
            counters.httpTimeouts += 1
            countBackend(c, .timeoutServer)
            if respondError(slot, status: 504, reason: .serverTimeout) == .again { httpPump(slot) }
        case .expired(.closing):
            closeHTTP(slot, abort: false, reason: .clientTimeout)
        case .expired(.tunnel):
            counters.idleTimeouts += 1
            countBackend(c, .timeoutTunnel)
            closeHTTP(slot, abort: false, reason: .tunnelTimeout)
        default:
            unexpected(.timerFired(lastActivity: c.pointee.life.lastActivity, requestBody: nil))
        }
    }

    /// Bytes received of the request body still awaited; nil when none is.
    @inline(__always)
    func awaitedBody(_ e: UnsafeMutablePointer<HTTPExchange>) -> Int64? {
        e.pointee.reqBody.done ? nil : e.pointee.reqBody.received
    }

    // MARK: - Pump

    /// Runs the exchange until it waits for an event or the connection closed.
    /// At most `Loop.stepBudget` steps per wake; a connection with more to do is resumed
    /// after the batch (`resumeLater`).
    func httpPump(_ slot: Int32) {
        let e = exchange(slot)
        for _ in 0..<Self.stepBudget {
            let step: HTTPStep
            switch e.pointee.machine.state {
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
