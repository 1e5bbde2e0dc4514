import SluiceRouting
import SluiceSystem

/// Where an HTTP client's upstream connection goes between requests: into the loop's pool,
/// so that an idle client holds none (`UpstreamPool` has the table of the two ways an idle
/// connection is registered). After a response the connection is *parked*: pooled, still
/// under this client's token, so taking it back for the next request costs nothing; any
/// other client may take it meanwhile (and registers it under its own token). A client that
/// leaves, or takes another connection, hands its parked one to the pooled token.
///
/// Invariants: at most one descriptor is registered under a client's `.upstream` token at a
/// time (its `upFD`, or its parked entry); `Connection.parked` names an entry only together
/// with its generation, so an entry another client took, or the sweep closed, is recognised.
extension Loop {
    /// The response is complete and the client stays: park its clean upstream (filed by the
    /// endpoint's identity in the current table), or close an unclean one.
    func parkUpstream(_ slot: Int32) {
        let c = table.pointer(slot)
        let fd = c.pointee.upFD
        guard fd >= 0 else { return }
        c.pointee.upFD = -1
        disownParked(c)
        if exchange(slot).pointee.machine.upstreamReusable, let endpoint = currentEndpoint(c),
            let (index, generation) = pool.put(fd: fd, endpoint: endpoint, owner: slot, capped: false, now: now)
        {
            c.pointee.parked = index
            c.pointee.parkedGeneration = generation
            return
        }
        driver.close(fd)
    }

    /// The attached upstream is not wanted by this client any more: pool it under its own
    /// token if it is clean (within the per-endpoint cap), else close it.
    /// `keepParked`: the client's parked connection stays under its token (the caller is
    /// about to reclaim it, or disowns it itself).
    func detachUpstream(_ slot: Int32, keepParked: Bool = false) {
        let c = table.pointer(slot)
        if !keepParked { disownParked(c) }
        let fd = c.pointee.upFD
        guard fd >= 0 else { return }
        c.pointee.upFD = -1
        // Filed under the endpoint's index in the current table, by identity.
        if exchange(slot).pointee.machine.upstreamReusable, let endpoint = currentEndpoint(c),
            let (index, generation) = pool.put(fd: fd, endpoint: endpoint, owner: -1, capped: true, now: now)
        {
            if watchPooled(fd, index: index, generation: generation) { return }
            _ = pool.remove(index, generation: generation)
        }
        driver.close(fd)
    }

    /// The client's parked connection when it leads to `endpoint` (an index of the current
    /// table), taken out of the pool; its registration is already this client's. Nil when
    /// the client parked none, another client took it, or it leads elsewhere.
    func reclaimParked(_ slot: Int32, endpoint: Int) -> Int32? {
        let c = table.pointer(slot)
        guard c.pointee.parked >= 0,
            let entry = pool.entry(c.pointee.parked, generation: c.pointee.parkedGeneration),
            entry.owner == slot, Int(entry.endpoint) == endpoint
        else { return nil }
        let fd = pool.remove(c.pointee.parked, generation: c.pointee.parkedGeneration)
        c.pointee.parked = -1
        return fd
    }

    /// The client no longer answers for its parked connection: if it is still pooled, it
    /// goes under the pooled token (or is closed when that fails). Draining closes it.
    func disownParked(_ c: UnsafeMutablePointer<Connection>) {
        let index = c.pointee.parked
        guard index >= 0 else { return }
        c.pointee.parked = -1
        let generation = c.pointee.parkedGeneration
        guard let entry = pool.entry(index, generation: generation), entry.owner >= 0 else { return }
        if draining || !watchPooled(entry.fd, index: index, generation: generation) {
            if let fd = pool.remove(index, generation: generation) { driver.close(fd) }
            return
        }
        pool.disown(index, generation: generation)
    }

    /// An event under the client's upstream token while it has no upstream attached: its
    /// parked connection spoke or hung up (a server closing an idle connection). Drop it.
    func onParkedEvent(_ slot: Int32, _ mask: Readiness) {
        let c = table.pointer(slot)
        guard mask.mayRead, c.pointee.parked >= 0 else {
            return
        }
        if let entry = pool.entry(c.pointee.parked, generation: c.pointee.parkedGeneration), entry.owner == slot,
            let fd = pool.remove(c.pointee.parked, generation: c.pointee.parkedGeneration)
        {
            driver.close(fd)
        }
        c.pointee.parked = -1
    }

    /// Registers a pooled connection under its entry's token, for input and hang-up only (OUT
    /// would fire at once). False when epoll refused.
    func watchPooled(_ fd: Int32, index: Int32, generation: UInt32) -> Bool {
        driver.watchIdle(fd, EventToken(kind: .pooled, index: index, generation: generation))
    }
}
