import Logging
import SluiceKube
import SluiceRouting

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
    /// `apply` returning), each translator warning once while it persists, and `synced` once
    /// the first full sync is in force.
    public func run() {
        var reported: Set<KubeWarning> = []
        while let (work, cache) = state.waitForWork() {
            let translation = translator.translate(cache)
            let warnings = Set(translation.warnings)
            for warning in translation.warnings where !reported.contains(warning) {
                logger.warning("\(warning)")
            }
            reported = warnings
            var inForce = true
            var generation: UInt64?
            switch state.decide(hash: translation.contentHash) {
            case .unchanged:
                logger.debug("cluster change leaves the routes as they are")
                state.finish(.unchanged)
            case .apply(let next):
                let options = translator.options
                let snapshot = translation.plan.snapshot(
                    generation: next, timeouts: options.timeouts, limits: options.limits, tuning: options.tuning)
                do {
                    try apply(snapshot)
                    let latency = ContinuousClock.now - work.since
                    generation = next
                    state.finish(.applied(hash: translation.contentHash))
                    logger.notice(
                        "applied generation=\(next) services=\(snapshot.services.count) endpoints=\(snapshot.endpoints.count) latency_ms=\(latency.wholeMilliseconds) hash=\(hex(translation.contentHash))"
                    )
                } catch {
                    inForce = false
                    let confirmed = state.confirmedGeneration
                    state.finish(.failed)
                    logger.error(
                        "apply of generation \(next) failed: \(error); the loops run generation \(confirmed) or take \(next) late; the next change is applied as generation \(next + 1)"
                    )
                }
            }
            if work.firstSync && inForce {
                let plan = translation.plan
                logger.notice(
                    "synced services=\(cache.services.items.count) endpointslices=\(cache.endpointSlices.items.count) routes=\(plan.routes.count) generation=\(generation.map(String.init) ?? "unchanged")"
                )
            }
        }
    }

    private func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
