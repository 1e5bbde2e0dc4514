import SluiceSystem

/// A TCP connection's life outside the byte pumps: its connect through the shared connector,
/// the start of its two flows, and its events and timer, as `ConnectionLifecycle` decides.
extension Loop {
    /// Connects the slot's endpoint for a tunnel, to be done by `deadline` (`Upstream/`).
    func startConnect(_ slot: Int32, deadline: Int64) {
        switch openConnect(slot) {
        case .connected:
            // Connected at once: no event has told whether the endpoint spoke yet.
            table.pointer(slot).pointee.toDown.srcReadable = true
            established(slot)
        case .inProgress:
            timers.schedule(slot, at: deadline)
        case .refused:
            connectFailed(slot, timedOut: false)
        case .noDescriptors, .unwatched:
            close(slot, abort: true, reason: .overLimit)
        }
    }

    /// The connect was refused, reset or timed out: the next endpoint, or close the client.
    func connectFailed(_ slot: Int32, timedOut: Bool) {
        if let deadline = retryConnect(slot, timedOut: timedOut) {
            startConnect(slot, deadline: deadline)
        } else {
            close(slot, abort: false, reason: timedOut ? .connectTimeout : .connectFailed)
        }
    }

    func established(_ slot: Int32) {
        let c = table.pointer(slot)
        let arm = c.pointee.life.connected(now: now, tunnelMillis: snapshot.timeouts.tunnelMillis)
        connectSucceeded(c)
        countOpened(c)
        countSent(c, http: false)
        if case .arm(let deadline) = arm { timers.schedule(slot, at: deadline) }
        startTunnel(slot, readinessKnown: true)
    }

    /// Sets both flows up for an established pair (a TCP connection, or an HTTP connection
    /// after `101 Switching Protocols`) and starts moving bytes. `readinessKnown`: both
    /// sockets' readable flags are exact (a fresh connect: every client edge since accept set
    /// `toUp.srcReadable` and every short read cleared it, and the connect's event told about
    /// the endpoint), so no read is made just to hear "would block".
    func startTunnel(_ slot: Int32, readinessKnown: Bool = false) {
        let c = table.pointer(slot)
        c.pointee.toUp.dstWritable = true
        if !readinessKnown {
            // Data sent while we upgraded is waiting: its edge has passed.
            c.pointee.toUp.srcReadable = true
            c.pointee.toDown.srcReadable = true
        }
        c.pointee.toDown.dstWritable = true
        // Every flow starts by copying; with splice allowed, one that fills its buffer in one
        // read moves to a pipe (`FlowState.spliceWhenFull`).
        let useSplice = snapshot.tuning.splice
        c.pointee.toUp.copyMode = true
        c.pointee.toDown.copyMode = true
        c.pointee.toUp.spliceWhenFull = useSplice
        c.pointee.toDown.spliceWhenFull = useSplice
        let capacity = Int32(buffers.bufferSize)
        c.pointee.toUp.capacity = capacity
        c.pointee.toDown.capacity = capacity
        if c.pointee.replay && !injectReplay(slot) {
            close(slot, abort: true, reason: .badPreface)
            return
        }
        pump(slot)
    }

    // MARK: - Events and timer

    @inline(__always)
    func onTunnelDownstream(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        c.pointee.toUp.sourceReady(mask)
        c.pointee.toDown.destinationReady(mask)
        switch c.pointee.life.state {
        case .tunnel:
            pump(slot)
        case .connecting:
            // The client vanished while we were connecting: give up now.
            if mask.closed { close(slot, abort: true, reason: .clientClosed) }
        case .idle, .closed:
            break
        }
    }

    @inline(__always)
    func onTunnelUpstream(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        switch c.pointee.life.state {
        case .connecting:
            guard mask.mayWrite else { return }
            if connectError(c) == nil {
                if mask.peerClosed { c.pointee.toDown.srcHangup = true }
                // Bytes the endpoint sent first come with this event or raise a later one.
                if mask.mayRead {
                    c.pointee.toDown.srcReadable = true
                }
                established(slot)
            } else {
                connectFailed(slot, timedOut: false)
            }
        case .tunnel:
            c.pointee.toDown.sourceReady(mask)
            c.pointee.toUp.destinationReady(mask)
            pump(slot)
        case .idle, .closed:
            break
        }
    }

    func onTunnelTimer(_ slot: Int32) {
        let c = table.pointer(slot)
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
                countBackend(c, .timeoutTunnel)
                close(slot, abort: false, reason: .tunnelTimeout)
            }
        case .idle, .closed:
            break
        }
    }
}
