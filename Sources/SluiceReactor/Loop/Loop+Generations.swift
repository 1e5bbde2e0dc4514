import SluiceRouting
import SluiceSystem

/// Snapshot lifetime: a connection uses indices only into the snapshot it was routed with.
///
/// Every connection is bound to one snapshot by the loop's epoch (`Connection.snapshotEpoch`,
/// counted by the loop per swap, so a control plane that posted two tables under one
/// generation number cannot confuse them): the
/// current snapshot, or an older one this loop keeps alive in `retained` while connections
/// are bound to it (a loop-local count per generation: no atomics, no reference counting per
/// event). Swaps rebind what holds nothing in flight; the rest finishes on its own table.
///
/// | connection                              | on a swap                                    |
/// | --------------------------------------- | -------------------------------------------- |
/// | tunnel (tcp, passthrough, upgraded)     | rebound: endpoint and service by identity    |
/// | http between requests, or closing       | rebound to its listener's new tables; idle   |
/// |                                         | ones on a removed listener are closed        |
/// | peeking (PROXY header, ClientHello, TLS | rebound to its listener's new tables; kept   |
/// | handshake)                              | on the old ones when the listener is gone    |
/// | connecting, request in flight, upgrading| kept on its generation until it moves on     |
///
/// Bookkeeping about an endpoint (up/down marks, leastconn counts, pooled upstreams) goes to
/// the current picker and pool by identity (`SnapshotRemap`), never by an old index. The
/// leastconn counts are recounted from the live connections at every swap, so they stay
/// exact however endpoints come and go.
///
/// Invariants: every generation a live connection is bound to is the current one or in
/// `retained`; `retained[i].connections` is the number of live connections bound to it, and
/// an entry leaves when it reaches zero.
struct RetainedSnapshot {
    let snapshot: RoutingSnapshot
    /// The loop's epoch the snapshot had while current (`Loop.epoch`).
    let epoch: UInt64
    /// Live connections of this loop bound to `snapshot`.
    var connections: Int
    /// `snapshot`'s indices → the current snapshot's.
    var toCurrent: SnapshotRemap
}

extension Loop {
    // MARK: - Lookups

    /// The snapshot the connection's indices refer to. Loop thread; no allocation.
    @inline(__always)
    func routed(_ c: UnsafeMutablePointer<Connection>) -> RoutingSnapshot {
        let generation = c.pointee.snapshotEpoch
        if generation == epoch { return snapshot }
        return retained[retainedIndex(generation)].snapshot
    }

    /// Whether the connection is bound to the current snapshot.
    @inline(__always)
    func isCurrent(_ c: UnsafeMutablePointer<Connection>) -> Bool {
        c.pointee.snapshotEpoch == epoch
    }

    /// The position of `generation` in `retained`; traps when a connection names a generation
    /// this loop no longer keeps (a broken invariant, never a routing outcome).
    func retainedIndex(_ generation: UInt64) -> Int {
        for index in retained.indices where retained[index].epoch == generation { return index }
        preconditionFailure("a connection is bound to generation \(generation), which the loop no longer keeps")
    }

    /// The current table's index of `endpoint`, an index of the connection's snapshot; nil
    /// when it left its service since the connection was routed.
    @inline(__always)
    func currentIndex(_ c: UnsafeMutablePointer<Connection>, of endpoint: Int) -> Int? {
        if isCurrent(c) { return endpoint }
        return retained[retainedIndex(c.pointee.snapshotEpoch)].toCurrent.endpoint(endpoint)
    }

    /// The current table's index of the connection's endpoint; nil when it has none or the
    /// endpoint left its service since the connection was routed.
    @inline(__always)
    func currentEndpoint(_ c: UnsafeMutablePointer<Connection>) -> Int? {
        let endpoint = Int(c.pointee.endpoint)
        return endpoint >= 0 ? currentIndex(c, of: endpoint) : nil
    }

    /// Whether `endpoint` (an index of the connection's snapshot) is passed over now: marked
    /// down in the current table, or gone from it.
    func isDown(_ c: UnsafeMutablePointer<Connection>, _ endpoint: Int) -> Bool {
        guard let current = currentIndex(c, of: endpoint) else { return true }
        return picker.isDown(current, now: now)
    }

    // MARK: - Endpoint bookkeeping by identity

    /// The connection's endpoint accepted a connect: usable again at once.
    func markEndpointUp(_ c: UnsafeMutablePointer<Connection>) {
        if let endpoint = currentEndpoint(c) { picker.markUp(endpoint) }
    }

    /// The connection's endpoint refused or timed out: passed over for the back-off time.
    func markEndpointDown(_ c: UnsafeMutablePointer<Connection>) {
        if let endpoint = currentEndpoint(c) {
            picker.markDown(endpoint, until: now + snapshot.limits.endpointBackoffMillis)
        }
    }

    /// The connection now holds a connection (tcp) or a request (http) on its endpoint:
    /// counted in the picker's leastconn counts and in the service's and endpoint's
    /// `currentConnections`.
    @inline(__always)
    func countOpened(_ c: UnsafeMutablePointer<Connection>) {
        if let endpoint = currentEndpoint(c) {
            picker.opened(endpoint)
            metrics.servers.add(endpoint, .currentConnections)
        }
        countBackend(c, .currentConnections)
        c.pointee.counted = true
    }

    /// The counted connection or request on the connection's endpoint ended. Its bytes go
    /// to the tables first (the endpoint may change next).
    @inline(__always)
    func countClosed(_ c: UnsafeMutablePointer<Connection>) {
        flushBytes(c)
        guard c.pointee.counted else { return }
        if let endpoint = currentEndpoint(c) {
            picker.closed(endpoint)
            metrics.servers.add(endpoint, .currentConnections, -1)
        }
        countBackend(c, .currentConnections, -1)
        c.pointee.counted = false
    }

    // MARK: - Picking within the connection's generation

    /// An endpoint of `service` (an index of the connection's snapshot) for a new connection or
    /// request. Current connections use the picker; a connection bound to an older snapshot
    /// (its listener was removed while it was being read) picks among the service's endpoints
    /// in that snapshot, preferring ones still in the current table and not marked down.
    func pickEndpoint(_ c: UnsafeMutablePointer<Connection>, service: Int, clientHash: UInt64) -> Int? {
        if isCurrent(c) { return picker.pick(service: service, clientHash: clientHash, now: now) }
        let range = routed(c).services[service].endpoints
        guard !range.isEmpty else { return nil }
        let start = Int(clientHash % UInt64(range.count))
        let ring = (0..<range.count).lazy.map { range.lowerBound + (start + $0) % range.count }
        return firstUsable(c, ring) ?? range.lowerBound + start
    }

    /// The endpoint to try after the connection's endpoint failed: the next one of its service
    /// in the connection's own snapshot (a request in flight stays on the table it was routed
    /// with), passing over endpoints marked down and, for an older snapshot, endpoints that
    /// have left since. Nil when there is none.
    func nextEndpoint(_ c: UnsafeMutablePointer<Connection>) -> Int? {
        let failed = Int(c.pointee.endpoint)
        let service = Int(c.pointee.service)
        guard failed >= 0, service >= 0 else { return nil }
        if isCurrent(c) { return picker.next(after: failed, service: service, now: now) }
        let range = routed(c).services[service].endpoints
        guard range.count > 1 else { return nil }
        let offset = failed - range.lowerBound
        let after = (1..<range.count).lazy.map { range.lowerBound + (offset + $0) % range.count }
        return firstUsable(c, after)
    }

    /// Of `candidates` (indices of the connection's older snapshot, in order): the first still
    /// in the current table and not marked down, else the first still in it; nil when all left.
    private func firstUsable(_ c: UnsafeMutablePointer<Connection>, _ candidates: some Sequence<Int>) -> Int? {
        var fallback: Int? = nil
        for index in candidates {
            guard let current = currentIndex(c, of: index) else { continue }
            if !picker.isDown(current, now: now) { return index }
            if fallback == nil { fallback = index }
        }
        return fallback
    }

    // MARK: - Binding

    /// Binds the connection to the current snapshot. The caller has remapped (or cleared)
    /// every index the connection holds.
    func bindCurrent(_ c: UnsafeMutablePointer<Connection>) {
        let generation = c.pointee.snapshotEpoch
        guard generation != epoch else { return }
        c.pointee.snapshotEpoch = epoch
        unbind(generation)
    }

    /// A connection bound to `generation` closed or was rebound: the generation loses one,
    /// and is let go when none is left.
    func unbind(_ generation: UInt64) {
        guard generation != epoch, generation != 0 else { return }
        let index = retainedIndex(generation)
        retained[index].connections -= 1
        // During a swap's scan the counts are being rebuilt: entries leave at its end.
        if retained[index].connections == 0 && !rebinding { retained.remove(at: index) }
    }

    /// An HTTP connection between requests (or a peeking one) takes its listener's tables in
    /// the current snapshot; its service and endpoint are mapped by identity, an idle kept
    /// upstream whose endpoint left is closed. Returns false, changing nothing, when the
    /// listener is gone or no longer has what the connection needs: the connection then
    /// stays on its own snapshot and closes after its exchange.
    @discardableResult
    func rebindToListener(_ slot: Int32) -> Bool {
        let c = table.pointer(slot)
        guard !isCurrent(c) else { return true }
        let position = Int(c.pointee.listener)
        guard position >= 0 else { return false }
        let listener = listeners[position]
        let e = exchange(slot)
        let secureHTTP = c.pointee.isHTTP && e.pointee.secure
        let handshaking = c.pointee.peeking && c.pointee.tls != nil
        if (secureHTTP || handshaking) && listener.terminated < 0 { return false }
        rebindByIdentity(c)
        if c.pointee.isHTTP && c.pointee.endpoint < 0 && c.pointee.upFD >= 0 {
            // The idle upstream kept for this client leads to an endpoint that left.
            driver.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        e.pointee.routes = secureHTTP ? listener.terminated : listener.routes
        e.pointee.tlsContext = listener.tlsContext
        e.pointee.terminatedRoutes = listener.terminated
        e.pointee.hstsRoute = -1
        if c.pointee.peeking { c.pointee.service = listener.service }
        return true
    }

    /// Rebinds a connection that holds nothing in flight: its service and endpoint become the
    /// current table's (-1 when they left), an idle kept upstream whose endpoint left is closed.
    func rebindByIdentity(_ c: UnsafeMutablePointer<Connection>) {
        guard !isCurrent(c) else { return }
        let remap = retained[retainedIndex(c.pointee.snapshotEpoch)].toCurrent
        let endpoint = remap.endpoint(Int(c.pointee.endpoint))
        if endpoint == nil { countClosed(c) }
        c.pointee.endpoint = Int32(endpoint ?? -1)
        c.pointee.service = Int32(remap.service(Int(c.pointee.service)) ?? -1)
        bindCurrent(c)
    }

    // MARK: - Swap

    /// Called by `swap` once `snapshot`, `picker` and `listeners` are the new ones and
    /// `retained` holds the old generations with their maps into the new one: moves every
    /// connection's listener position, rebinds what holds nothing in flight, closes idle
    /// clients of removed listeners, counts what stays on each old generation, recounts the
    /// leastconn counts, and lets go of generations nobody uses. O(connections).
    func rebindConnections(listenerPositions: [Int32]) {
        for index in retained.indices { retained[index].connections = 0 }
        rebinding = true
        let current = epoch
        var slot: Int32 = 0
        var idleOnRemoved: [Int32] = []
        while slot < table.highWater {
            let c = table.pointer(slot)
            defer { slot += 1 }
            guard c.pointee.isLive else { continue }
            let position = Int(c.pointee.listener)
            c.pointee.listener = position >= 0 && position < listenerPositions.count ? listenerPositions[position] : -1
            c.pointee.stats.frontendRow = c.pointee.listener >= 0 ? listeners[Int(c.pointee.listener)].row : -1
            let generation = c.pointee.snapshotEpoch
            guard generation != current else { continue }
            let entry = retainedIndex(generation)
            retained[entry].connections += 1
            let e = exchange(slot)
            if c.pointee.isHTTP {
                switch e.pointee.machine.state {
                case .readingHead:
                    if !rebindToListener(slot) && e.pointee.req.isEmpty && c.pointee.upFD < 0 {
                        idleOnRemoved.append(slot)
                    }
                case .relaying, .closing:
                    rebindByIdentity(c)
                case .connecting, .exchanging, .upgrading:
                    break
                }
            } else if c.pointee.peeking {
                rebindToListener(slot)
            } else if c.pointee.h2 == .session {
                // An HTTP/2 connection holds no index but its listener's: its streams hold theirs.
                rebindByIdentity(c)
            } else if c.pointee.h2 == .upstream {
                // A connection to an endpoint holds no index at all (it is filed by address).
                bindCurrent(c)
            } else if c.pointee.life.state == .tunnel && !c.pointee.replay {
                rebindByIdentity(c)
            }
        }
        // Leastconn counts and the current-connection gauges, from the connections as they
        // now stand: what a close will take off is exactly what is counted here.
        metrics.clearGauges()
        slot = 0
        while slot < table.highWater {
            let c = table.pointer(slot)
            defer { slot += 1 }
            guard c.pointee.isLive else { continue }
            if c.pointee.h2 != .stream, let row = frontendRow(c) { metrics.frontends.add(row, .currentConnections) }
            guard c.pointee.counted else { continue }
            if let endpoint = currentEndpoint(c) {
                picker.opened(endpoint)
                metrics.servers.add(endpoint, .currentConnections)
            }
            countBackend(c, .currentConnections)
        }
        rebinding = false
        retained.removeAll { $0.connections == 0 }
        // HTTP/2 connections whose listener left take no new stream (GOAWAY; theirs finish).
        slot = 0
        while slot < table.highWater {
            let c = table.pointer(slot)
            if c.pointee.h2 == .session && c.pointee.listener < 0 { goAway(slot, errorCode: 0, failed: false) }
            slot += 1
        }
        for slot in idleOnRemoved {
            // An idle keep-alive client of a listener that is gone: nothing to finish.
            close(slot, abort: false, reason: .listenerRemoved)
        }
    }
}
