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
/// arrives during an apply becomes one next apply. A generation number is handed out once:
/// `decide` takes it before the snapshot is built, and a failed apply does not give it back
/// (the reactor may have posted that snapshot before it reported a timeout, so the loops may
/// run it). After a failed apply the serving content is unknown, so the next translation is
/// applied whatever its hash.
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
        /// The plan differs from the one serving (or that one is unknown): build generation
        /// `generation` and apply it.
        case apply(generation: UInt64)
        /// Same content hash: nothing to do, no new generation.
        case unchanged
    }

    /// How the work ended, for `finish`.
    public enum Outcome: Sendable, Equatable {
        /// `decide` said `.unchanged`: the loops already run this cluster state.
        case unchanged
        /// The generation `decide` handed out, with content `hash`, is in force on every loop.
        case applied(hash: UInt64)
        /// Applying the generation `decide` handed out failed. The loops may still take it
        /// (posted, then a timeout) or never see it (refused before posting).
        case failed
    }

    public private(set) var pendingSince: Instant?
    public private(set) var applying = false
    /// The content hash of the plan the loops run; nil after a failed apply, when the loops
    /// may run either the table before it or the one that failed.
    public private(set) var servingHash: UInt64?
    /// The last generation handed out by `decide`, applied or not; never handed out again.
    public private(set) var generation: UInt64
    /// The last generation every loop confirmed.
    public private(set) var confirmedGeneration: UInt64
    /// Which initial lists are in.
    public private(set) var servicesListed = false
    public private(set) var endpointSlicesListed = false
    /// The first full sync has been translated and is in force (what `/readyz` reports).
    public private(set) var ready = false

    /// `servingHash`: the initial snapshot's plan (listeners, no routes), generation `generation`.
    public init(servingHash: UInt64, generation: UInt64 = 1) {
        self.servingHash = servingHash
        self.generation = generation
        confirmedGeneration = generation
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

    /// What the translation with `hash` needs. `.apply` takes the next generation number
    /// for good: whatever the apply's outcome, no later call returns it again.
    public mutating func decide(hash: UInt64) -> Decision {
        precondition(applying, "decide without takeWork")
        if hash == servingHash { return .unchanged }
        generation += 1
        return .apply(generation: generation)
    }

    /// The work taken by `takeWork` is done, as `outcome` says. Only `.applied` and
    /// `.unchanged` put the work's cluster state in force (and make the discovery ready).
    /// Returns whether more work is pending.
    public mutating func finish(_ outcome: Outcome) -> Bool {
        precondition(applying, "finish without takeWork")
        applying = false
        switch outcome {
        case .unchanged:
            ready = true
        case .applied(let hash):
            servingHash = hash
            confirmedGeneration = generation
            ready = true
        case .failed:
            servingHash = nil
        }
        return synced && pendingSince != nil
    }
}
