import SluiceRouting
import SluiceSystem

/// Messages from the control plane: new routing tables, drain, reports; listener and pool upkeep.
extension Loop {
    // MARK: - Mail

    func handleMail() {
        for message in mailbox.take() {
            switch message {
            case .snapshot(let next, let sockets, let applied):
                swap(to: next, sockets: sockets)
                applied.countDown()
            case .drain(let deadline): startDrain(deadline: deadline)
            case .ping(let answered): answered.countDown()
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
                updated.tlsContext = Int32(listener.tlsContext)
                updated.terminated = Int32(listener.terminatedRoutes)
                updated.acceptProxy = listener.acceptProxy
                kept.append(updated)
            } else if let fd = sockets[listener.key] {
                kept.append(
                    LoopListener(
                        key: listener.key, fd: fd, service: service, routes: routes,
                        tlsContext: Int32(listener.tlsContext), terminated: Int32(listener.terminatedRoutes),
                        acceptProxy: listener.acceptProxy, enabled: false))
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
        remapRouteTables(from: listeners, to: kept)
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

    /// Connections still reading their first bytes hold a route-table index of the old
    /// snapshot: point them at their listener's table in the new one, or close them when
    /// their listener is gone or changed protocol.
    func remapRouteTables(from old: [LoopListener], to new: [LoopListener]) {
        var slot: Int32 = 0
        while slot < table.highWater {
            let c = table.pointer(slot)
            if c.pointee.downFD >= 0 && (c.pointee.isHTTP || c.pointee.peeking) {
                let e = exchange(slot)
                let routes = e.pointee.routes
                var remapped: Int32 = -1
                if e.pointee.secure && !c.pointee.peeking {
                    // Decrypted requests follow their listener's table of terminated routes.
                    if let previous = old.first(where: { $0.terminated == routes && $0.terminated >= 0 }),
                        let current = new.first(where: { $0.key == previous.key })
                    {
                        remapped = current.terminated
                    }
                } else if let previous = old.first(where: { $0.routes == routes && $0.routes >= 0 }),
                    let current = new.first(where: { $0.key == previous.key })
                {
                    remapped = current.routes
                }
                if remapped >= 0 {
                    e.pointee.routes = remapped
                } else if c.pointee.peeking || (c.pointee.isHTTP && e.pointee.phase == .readingHead) {
                    close(slot, abort: false)
                }
            }
            slot += 1
        }
    }
}
