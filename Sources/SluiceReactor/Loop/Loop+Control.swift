import SluiceRouting
import SluiceSystem

/// Messages from the control plane: new routing tables, drain, reports; listener and pool upkeep.
extension Loop {
    // MARK: - Mail

    func handleMail() {
        for message in mailbox.take() {
            switch message {
            case .snapshot(let next, let sockets, let remap, let applied):
                swap(to: next, sockets: sockets, remap: remap)
                applied.countDown()
            case .closeKeepAlive:
                lastRequests = true
                drainSessions()
            case .drain(let deadline): startDrain(deadline: deadline)
            case .ping(let answered): answered.countDown()
            case .collect(let collection): collect(into: collection)
            case .report:
                logger.info(
                    "loop \(index): live=\(table.live) pipes_in_use=\(pipes.inUse) pipes_created=\(pipes.created) pipe_size_failures=\(pipes.setSizeFailures) \(countersWithDriver.summary)"
                )
                if let uring = driver.uring { logger.info("loop \(index): \(uring.describe())") }
                if counters.h2Sessions > 0 || counters.h2UpstreamSessions > 0 {
                    // libnghttp2's allocations go through its counting allocator (every loop).
                    logger.info(
                        "loop \(index): nghttp2_allocations=\(HTTP2Session.totalAllocations) nghttp2_frees=\(HTTP2Session.totalFrees) nghttp2_calls=\(HTTP2Session.totalRequests)"
                    )
                }
            }
        }
    }

    /// Adopts a new routing table between batches. Established connections keep their
    /// descriptors and flows; what each connection holds is rebound or kept alive as
    /// `Loop+Generations` says. `remap` maps the current snapshot's indices into `next`'s
    /// (made once by the control plane; made here when absent or for another pair).
    func swap(to next: RoutingSnapshot, sockets: [ListenerKey: Int32], remap given: SnapshotRemap? = nil) {
        let previous = snapshot
        var kept: [LoopListener] = []
        for (row, listener) in next.listeners.enumerated() {
            let service = Int32(listener.service)
            let routes = Int32(listener.routes)
            if let old = listeners.first(where: { $0.key == listener.key }) {
                var updated = old
                updated.row = Int32(row)
                updated.service = service
                updated.routes = routes
                updated.tlsContext = Int32(listener.tlsContext)
                updated.terminated = Int32(listener.terminatedRoutes)
                updated.acceptProxy = listener.acceptProxy
                updated.accessLog = listener.accessLog
                updated.http2 = listener.http2
                updated.name = Array(listener.name.utf8)
                kept.append(updated)
            } else if let fd = sockets[listener.key] {
                kept.append(
                    LoopListener(
                        key: listener.key, row: Int32(row), fd: fd, service: service, routes: routes,
                        tlsContext: Int32(listener.tlsContext), terminated: Int32(listener.terminatedRoutes),
                        acceptProxy: listener.acceptProxy, enabled: false, accessLog: listener.accessLog,
                        http2: listener.http2, name: Array(listener.name.utf8)))
            }
        }
        for old in listeners where !kept.contains(where: { $0.key == old.key }) && old.fd >= 0 {
            if old.enabled { driver.unwatch(old.fd) }
            driver.close(old.fd)
        }
        // Sockets sent for keys this loop already had (should not happen) are not leaked.
        for (key, fd) in sockets where !kept.contains(where: { $0.key == key && $0.fd == fd }) {
            driver.close(fd)
        }
        // Where each old listener position is now (-1: removed, or its protocol changed).
        let positions: [Int32] = listeners.map { old in
            kept.firstIndex(where: { $0.key == old.key }).map { Int32($0) } ?? -1
        }
        listeners = kept
        if next !== previous {
            let remap =
                given.flatMap { $0.from == previous.generation && $0.to == next.generation ? $0 : nil }
                ?? SnapshotRemap(from: previous, to: next)
            // Rows follow their listener (by key), service and endpoint (by identity) before
            // any connection is rebound: a decrement during the rebinding lands on the new rows.
            metrics.refile(remap, listeners: Self.listenerMap(from: previous, to: next), rows: next)
            for index in retained.indices { retained[index].toCurrent = retained[index].toCurrent.then(remap) }
            retained.append(RetainedSnapshot(snapshot: previous, epoch: epoch, connections: 0, toCurrent: remap))
            snapshot = next
            epoch += 1
            picker = EndpointPicker(snapshot: next, seed: Self.seed(index), carrying: picker, remap: remap)
            // Idle upstream connections follow their endpoint by identity; those of endpoints
            // that left are closed.
            pool.remap(
                remap.endpoints, endpoints: next.endpoints.count, perEndpoint: next.limits.upstreamIdlePerEndpoint
            ) {
                driver.close($0)
            }
            rebindConnections(listenerPositions: positions)
        } else {
            snapshot = next
        }
        connectionLimit = Self.share(of: next.limits.maxConnections, workers: workerCount)
        // Re-register every listener under its new position (a new one was never watched).
        disableListeners()
        if !draining { enableListeners() }
    }

    /// Where each listener of `old` is in `new` (by key), -1 when it left.
    static func listenerMap(from old: RoutingSnapshot, to new: RoutingSnapshot) -> [Int32] {
        old.listeners.map { listener in new.listeners.firstIndex { $0.key == listener.key }.map { Int32($0) } ?? -1 }
    }

    /// Watches every listener. A loop at its connection share stays watching: it refuses the
    /// clients over the limit at once (`acceptAll`); only descriptor exhaustion and drain stop it.
    func enableListeners() {
        guard !draining else { return }
        for i in listeners.indices where !listeners[i].enabled {
            do {
                // Level-triggered: a loop that stops accepting part-way is woken again.
                try driver.watchInput(
                    listeners[i].fd, EventToken(kind: .listener, index: Int32(i), generation: 0), edge: false)
                listeners[i].enabled = true
            } catch {
                logger.error("cannot watch listener \(listeners[i].key.address): \(error)")
            }
        }
    }

    func disableListeners() {
        for i in listeners.indices where listeners[i].enabled {
            driver.unwatch(listeners[i].fd)
            listeners[i].enabled = false
        }
    }

    func startDrain(deadline: Int64) {
        draining = true
        lastRequests = true
        drainDeadline = deadline
        for i in listeners.indices where listeners[i].enabled {
            driver.stopAccepting(listeners[i].fd)
            listeners[i].enabled = false
        }
        // Connections accepted on this loop's behalf before it stopped (io_uring) are served,
        // after the idle ones were closed below: under epoll they would have waited in the
        // backlog, for the next process.
        var queued: [(AcceptedSocket, Int32)] = []
        for i in listeners.indices where listeners[i].fd >= 0 {
            while case .accepted(let accepted) = driver.takeQueued(listeners[i].fd) {
                queued.append((accepted, Int32(i)))
            }
        }
        // The entries stay (without their sockets): connections keep their listener's
        // position, so its rows still count them until they close.
        for i in listeners.indices where listeners[i].fd >= 0 {
            driver.close(listeners[i].fd)
            listeners[i].fd = -1
        }
        pool.drainAll { driver.close($0) }
        // Idle keep-alive clients are closed now, those that finished a response less than
        // `drainIdleGraceMillis` ago when they have been idle that long (a request may be on
        // its way: closing under it would fail it); busy ones after their response.
        var idle = 0
        var recent = 0
        var slot: Int32 = 0
        while slot < table.highWater {
            let c = table.pointer(slot)
            if c.pointee.h2 == .session {
                // Its streams finish under the GOAWAY; they are not closed one by one.
                drainSession(slot)
            } else if c.pointee.h2 == .upstream {
                drainUpstreamSession(slot)
            } else if c.pointee.isLive && c.pointee.isHTTP && c.pointee.h2 != .stream {
                if case .close = report(slot, .drain(buffered: !exchange(slot).pointee.req.isEmpty)) {
                    if let closeAt = idleCloseTime(slot), closeAt > now {
                        timers.schedule(slot, at: closeAt)
                        recent += 1
                    } else {
                        close(slot, abort: false, reason: .draining)
                        idle += 1
                    }
                }
            }
            slot += 1
        }
        for (accepted, position) in queued {
            counters.accepted += 1
            openConnection(accepted, listener: listeners[Int(position)], position: position)
        }
        logger.info(
            "loop \(index): draining: not accepting; closed \(idle) idle keep-alive connections (\(recent) more once idle for \(Self.drainIdleGraceMillis) ms), \(table.live) still open"
        )
    }

    /// A keep-alive client that went idle less than this long before a drain gets the rest of
    /// it to send its next request (answered with `Connection: close`) before it is closed.
    static let drainIdleGraceMillis: Int64 = 1_000

    /// When an idle HTTP/1 client that a drain would close has been idle for
    /// `drainIdleGraceMillis`: from its client-idle deadline (armed when it went idle).
    func idleCloseTime(_ slot: Int32) -> Int64? {
        let machine = exchange(slot).pointee.machine
        guard let deadline = timers.deadline(of: slot) else { return nil }
        switch machine.timer {
        case .clientIdle:
            return min(deadline, deadline - exchangeTimeouts.client + Self.drainIdleGraceMillis)
        case .tlsIdle:
            return min(deadline, now + Self.drainIdleGraceMillis)
        default:
            return nil
        }
    }

    /// An idle pooled upstream connection saw an event: the server closed it (or sent bytes
    /// nobody asked for). Drop it.
    func onPooled(_ token: EventToken) {
        if let fd = pool.remove(token.index, generation: token.generation) { driver.close(fd) }
    }

    func sweepPool() {
        pool.sweep(olderThan: now - snapshot.limits.upstreamIdleMillis, trimBefore: now - UpstreamPool.trimAfterMillis)
        {
            driver.close($0)
        }
        nextPoolSweep = now + 1000
    }

    func trimBuffers() {
        buffers.trim()
        httpBuffers.trim()
        streamBuffers.trim()
        peekBuffers.trim()
        nextBufferTrim = now + 1000
    }

    func closeAllForExit() {
        if table.live > 0 {
            logger.notice("loop \(index): drain deadline: closing \(table.live) connections still open")
        } else {
            logger.info("loop \(index): drained: every connection closed")
        }
        var slot: Int32 = 0
        while slot < table.highWater {
            if table.slots[Int(slot)].isLive { close(slot, abort: true, reason: .draining) }
            slot += 1
        }
        for listener in listeners where listener.fd >= 0 { driver.close(listener.fd) }
        listeners.removeAll()
    }
}
