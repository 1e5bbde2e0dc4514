import Logging
import SluiceKube
import SluiceRouting

#if canImport(Glibc)
    import Glibc
#endif

/// Turns the cluster state into the serving table: waits for work from `KubeDiscoveryState`,
/// translates, and applies a new generation only when the content hash moved.
///
/// Runs on a thread of its own (`run` blocks), because applying waits for every event loop
/// to take the table; `apply` is the only way it reaches the loops, and the caller
/// serialises it with its other reactor calls.
///
/// `apply` returns once every loop runs the snapshot, or throws. A throw does not say
/// whether the snapshot reached the loops (`Reactor.apply` posts first and reports a loop
/// that has not taken it after 10 s), so a generation offered to `apply` is never offered
/// again, and the next translation is applied as a new generation even when its routes equal
/// those of the table before the failure.
public final class KubeApplier: Sendable {
    let state: KubeDiscoveryState
    let translator: KubeTranslator
    let logger: Logger
    let apply: @Sendable (RoutingSnapshot) throws -> Void

    public init(
        state: KubeDiscoveryState, translator: KubeTranslator, logger: Logger,
        apply: @escaping @Sendable (RoutingSnapshot) throws -> Void
    ) {
        self.state = state
        self.translator = translator
        self.logger = logger
        self.apply = apply
    }

    /// Until `state.stop()`. Logs `applied generation=N services=S endpoints=E latency_ms=X`
    /// for each applied table (latency: from the receipt of the earliest change it holds to
    /// `apply` returning; then the time spent translating, building the snapshot and in
    /// `apply`), each translator warning once while it persists, and `synced` once the first
    /// full sync is in force. Translation and building are incremental
    /// (`KubeIncrementalTranslator`, `KubeSnapshotBuilder`): a change costs what it touches.
    public func run() {
        var reported: Set<KubeWarning> = []
        var incremental = KubeIncrementalTranslator(options: translator.options)
        var builder = KubeSnapshotBuilder()
        // What moved in the plan since the last snapshot was built.
        var unbuilt = KubePlanChange()
        var lastTrim = ContinuousClock.now
        // The snapshot last handed to the loops, held here until the next one is in force, so
        // that the old one's arrays are freed on this thread, not by a loop in its swap.
        var inService: RoutingSnapshot?
        while let job = state.waitForWork() {
            let started = ContinuousClock.now
            let (translation, moved) = incremental.apply(job.change)
            unbuilt.formUnion(moved)
            let hash = incremental.contentHash
            let translated = ContinuousClock.now
            let warnings = Set(translation.warnings)
            for warning in translation.warnings where !reported.contains(warning) {
                logger.warning("\(warning)")
            }
            reported = warnings
            var inForce = true
            var generation: UInt64?
            switch state.decide(hash: hash) {
            case .unchanged:
                logger.debug("cluster change leaves the routes as they are")
                state.finish(.unchanged)
            case .apply(let next):
                let options = translator.options
                let snapshot = builder.build(
                    translation.plan, change: unbuilt, generation: next, timeouts: options.timeouts,
                    limits: options.limits, tuning: options.tuning)
                unbuilt = KubePlanChange()
                let built = ContinuousClock.now
                do {
                    try withExtendedLifetime(inService) { try apply(snapshot) }
                    let done = ContinuousClock.now
                    let latency = done - job.work.since
                    generation = next
                    state.finish(.applied(hash: hash))
                    logger.notice(
                        "applied generation=\(next) services=\(snapshot.services.count) endpoints=\(snapshot.endpoints.count) latency_ms=\(Self.millis(latency)) hash=\(hex(hash)) translate_ms=\(Self.millis(translated - started)) build_ms=\(Self.millis(built - translated)) apply_ms=\(Self.millis(done - built))"
                    )
                } catch {
                    inForce = false
                    let confirmed = state.confirmedGeneration
                    state.finish(.failed)
                    logger.error(
                        "apply of generation \(next) failed: \(error); the loops run generation \(confirmed) or take \(next) late; the next change is applied as generation \(next + 1)"
                    )
                }
                inService = snapshot
            }
            // A whole translation (and many swaps) leave freed heap behind: hand it back.
            let now = ContinuousClock.now
            if case .all = job.change {
                Self.trimHeap()
                lastTrim = now
            } else if now - lastTrim > .seconds(10) {
                Self.trimHeap()
                lastTrim = now
            }
            if job.work.firstSync && inForce {
                let plan = translation.plan
                logger.notice(
                    "synced services=\(job.services) endpointslices=\(job.endpointSlices) routes=\(plan.routes.count) generation=\(generation.map(String.init) ?? "unchanged")"
                )
            }
        }
    }

    /// Returns the heap's free pages to the system (glibc's `malloc_trim`), as HAProxy does
    /// after a reload: the old tables and the decoded lists are freed, but their pages would
    /// otherwise stay resident.
    static func trimHeap() {
        #if canImport(Glibc)
            guard let trim = mallocTrim else { return }
            _ = trim(0)
        #endif
    }

    #if canImport(Glibc)
        /// glibc's `malloc_trim(3)`, looked up once (the Glibc module does not import
        /// `<malloc.h>`); nil with another C library.
        private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
            guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return nil }
            return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        }()
    #endif

    /// Milliseconds with one decimal (`12.3`).
    static func millis(_ duration: Duration) -> String {
        let tenths = (duration.components.seconds * 10_000 + duration.components.attoseconds / 100_000_000_000_000)
        return "\(tenths / 10).\(tenths % 10)"
    }

    private func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
