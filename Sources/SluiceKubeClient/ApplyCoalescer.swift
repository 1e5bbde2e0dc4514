/// Decides when the cluster state is translated and applied, and what the latency of an
/// applied snapshot is. Pure: the watchers report changes, the applier asks for work and
/// reports the outcome; instants are passed in.
///
/// | state                         | `changed` / `listed`          | `takeWork`                   |
/// | ----------------------------- | ----------------------------- | ---------------------------- |
/// | not synced (a list missing)   | remembered, no work           | nil                          |
/// | synced, idle, nothing pending | pending from this instant     | work, now applying           |
/// | applying                      | folded into the next work     | nil (one apply at a time)    |
///
/// Invariants: `pendingSince` is the receipt of the earliest change not yet translated; at
/// most one apply runs; no fixed delay — an idle applier starts at once, and everything that
/// arrives during an apply becomes one next apply.
public struct ApplyCoalescer: Sendable {
    public typealias Instant = ContinuousClock.Instant

    /// One translation to run: everything received since `since` is in the cache copy the
    /// applier reads under the same lock.
    public struct Work: Sendable, Equatable {
        public var since: Instant
        /// The first translation after both initial lists: `synced` follows it.
        public var firstSync: Bool

        public init(since: Instant, firstSync: Bool) {
            self.since = since
            self.firstSync = firstSync
        }
    }

    public enum Decision: Sendable, Equatable {
        /// The plan differs from the one serving: build generation `generation` and apply it.
        case apply(generation: UInt64)
        /// Same content hash: nothing to do, no new generation.
        case unchanged
    }

    public private(set) var pendingSince: Instant?
    public private(set) var applying = false
    /// The content hash of the plan the loops run.
    public private(set) var servingHash: UInt64
    public private(set) var generation: UInt64
    /// Which initial lists are in.
    public private(set) var servicesListed = false
    public private(set) var endpointSlicesListed = false
    /// The first full sync has been translated and is in force (what `/readyz` reports).
    public private(set) var ready = false

    /// `servingHash`: the initial snapshot's plan (listeners, no routes), generation `generation`.
    public init(servingHash: UInt64, generation: UInt64 = 1) {
        self.servingHash = servingHash
        self.generation = generation
    }

    public var synced: Bool { servicesListed && endpointSlicesListed }

    /// The cache changed (an event) at `at`. Returns whether the applier should be woken.
    public mutating func changed(at: Instant) -> Bool {
        if pendingSince == nil { pendingSince = at }
        return synced && !applying
    }

    /// A complete list of `resource` was stored at `at` (a first list or a re-list: both are
    /// translated even if nothing moved, which is cheap and makes a failed apply retry).
    public mutating func listed(_ resource: KubeResource, at: Instant) -> Bool {
        switch resource {
        case .services: servicesListed = true
        case .endpointSlices: endpointSlicesListed = true
        }
        return changed(at: at)
    }

    /// The applier's next job, or nil (not synced, nothing pending, or already applying).
    public mutating func takeWork() -> Work? {
        guard synced, !applying, let since = pendingSince else { return nil }
        applying = true
        pendingSince = nil
        return Work(since: since, firstSync: !ready)
    }

    /// What the translation with `hash` needs.
    public func decide(hash: UInt64) -> Decision {
        hash == servingHash ? .unchanged : .apply(generation: generation + 1)
    }

    /// The work is done. `appliedHash`: the hash now serving after a successful apply (nil
    /// when nothing was applied, or the apply failed and the old table keeps serving).
    /// `inForce`: whether the cluster state of the work is what the loops run now (false only
    /// after a failed apply). Returns whether more work is pending.
    public mutating func finish(appliedHash: UInt64?, inForce: Bool) -> Bool {
        precondition(applying, "finish without takeWork")
        applying = false
        if let appliedHash {
            servingHash = appliedHash
            generation += 1
        }
        if inForce { ready = true }
        return synced && pendingSince != nil
    }
}
