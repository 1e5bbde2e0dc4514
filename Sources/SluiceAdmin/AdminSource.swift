import SluiceReactor

/// What the admin listener reads, as the executable wires it. Every member is safe to call
/// from the admin threads; none may take a lock that a table swap holds for long.
public struct AdminSource: Sendable {
    public var workers: Int
    public var stats: ProcessStats
    /// The loops' access-log rings (`Reactor.accessLogRings`); empty without an access log.
    public var accessLogRings: [AccessLogRing]
    /// `Reactor.collect`: every loop's sample, or nil when one did not answer in time.
    public var collect: @Sendable (_ timeoutMillis: Int64) -> [LoopMetricsSample]?
    /// `/healthz`: may wait up to about a second (it asks every loop to answer).
    public var healthy: @Sendable () -> Bool
    /// `/readyz`: answers at once, never waits for a loop.
    public var ready: @Sendable () -> Bool
    /// Kubernetes discovery state; nil outside kube mode.
    public var kube: (@Sendable () -> KubeWatchStatus)?
    /// The loops' I/O backend (`Reactor.backend`).
    public var ioBackend: String

    public init(
        workers: Int, stats: ProcessStats, accessLogRings: [AccessLogRing] = [],
        collect: @escaping @Sendable (Int64) -> [LoopMetricsSample]?, healthy: @escaping @Sendable () -> Bool,
        ready: @escaping @Sendable () -> Bool, kube: (@Sendable () -> KubeWatchStatus)? = nil,
        ioBackend: String = "epoll"
    ) {
        self.ioBackend = ioBackend
        self.workers = workers
        self.stats = stats
        self.accessLogRings = accessLogRings
        self.collect = collect
        self.healthy = healthy
        self.ready = ready
        self.kube = kube
    }

    /// The process side of a scrape, read now.
    public func processView() -> ProcessView {
        ProcessView(
            startTimeMicros: stats.startTimeMicros, workers: workers, reloads: stats.reloads,
            reloadFailures: stats.reloadFailures, accessLogTaken: accessLogRings.reduce(0) { $0 + $1.taken },
            accessLogDropped: accessLogRings.reduce(0) { $0 + $1.dropped }, kube: kube?(), ioBackend: ioBackend)
    }
}
