import SluiceRouting
import SluiceSystem

/// Accepting connections and sending each down its listener's path.
extension Loop {
    // MARK: - Accept

    func acceptAll(_ position: Int) {
        guard position < listeners.count, listeners[position].enabled else { return }
        let listener = listeners[position]
        // Bounded per event so one busy listener does not starve established connections;
        // the listener is level-triggered, so what is left raises the next event.
        for _ in 0..<64 {
            let accepted: AcceptedSocket
            switch driver.accept(listener.fd) {
            case .accepted(let socket):
                accepted = socket
            case .empty:
                return
            case .failed(let error):
                counters.acceptErrors += 1
                if error == .tooManyFiles || error == .tooManyFilesInSystem {
                    // Out of descriptors: pause accepting briefly instead of spinning.
                    countRefused(listener: position)
                    pauseAccepting()
                    return
                }
                continue
            }
            if table.live >= connectionLimit {
                // At its share the loop still takes clients off its queue (SO_REUSEPORT keeps
                // filling it) and refuses them at once with a reset, rather than leaving them
                // to hang in the backlog.
                counters.refusedOverLimit += 1
                countRefused(listener: position)
                driver.abort(accepted.fd)
                continue
            }
            counters.accepted += 1
            openConnection(accepted, listener: listener, position: Int32(position))
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

    func openConnection(_ accepted: AcceptedSocket, listener: LoopListener, position: Int32) {
        let service = listener.service
        guard let (slot, firstUse) = table.allocate() else {
            counters.rejectedFull += 1
            countRefused(listener: Int(position))
            driver.close(accepted.fd)
            return
        }
        if firstUse {
            timers.reset(slot)
            if let logStates { (logStates + Int(slot)).initialize(to: LogState()) }
        }
        let c = table.pointer(slot)
        c.pointee.downFD = accepted.fd
        c.pointee.service = service
        c.pointee.snapshotEpoch = epoch
        c.pointee.listener = position
        c.pointee.stats.frontendRow = listener.row
        c.pointee.stats.acceptedMicros = nowMicros
        metrics.frontends.add(Int(listener.row), .connections)
        metrics.frontends.add(Int(listener.row), .currentConnections)
        startLogging(slot, listener: listener, peer: accepted.peerAddress)
        driver.setNoDelay(accepted.fd)
        guard driver.watch(accepted.fd, EventToken(kind: .downstream, index: slot, generation: c.pointee.generation))
        else {
            close(slot, abort: true, reason: .overLimit)
            return
        }
        let peer = accepted.peerAddress
        let expectProxy = expectsProxy(listener, peer)
        if listener.key.protocol == .http {
            openHTTP(slot, peer: peer, listener: listener, expectProxy: expectProxy)
            return
        }
        if listener.key.protocol == .tls || expectProxy {
            openPeek(slot, peer: peer, listener: listener, expectProxy: expectProxy)
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
        c.pointee.stats.routedAfter = ConnectionStats.after(c.pointee.stats.acceptedMicros, nowMicros)
        guard service >= 0, let endpoint = picker.pick(service: Int(service), clientHash: hash, now: now) else {
            counters.noEndpoint += 1
            countBackend(c, .noEndpoint)
            close(slot, abort: false, reason: .noEndpoint)
            return
        }
        c.pointee.endpoint = Int32(endpoint)
        let start = c.pointee.life.start(now: now, connectMillis: snapshot.timeouts.connectMillis)
        guard case .connect(let deadline) = start else { preconditionFailure("start always connects") }
        startConnect(slot, deadline: deadline)
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
}
