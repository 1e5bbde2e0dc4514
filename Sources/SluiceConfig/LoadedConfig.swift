import SluiceRouting

/// A configuration file that passed every check: the routing table it describes, plus the
/// settings that are not part of the table.
public struct LoadedConfig: Sendable {
    /// `workers` from the file; nil when absent (the caller then uses the CPUs it may run on).
    public let workers: Int?
    /// Listeners, services, endpoints, timeouts, limits and tuning, ready to post to the loops.
    public let snapshot: RoutingSnapshot
    /// The top-level `accessLog` section; nil when absent (no records are made then).
    public let accessLog: AccessLogSettings?

    public init(workers: Int?, accessLog: AccessLogSettings? = nil, snapshot: RoutingSnapshot) {
        self.workers = workers
        self.accessLog = accessLog
        self.snapshot = snapshot
    }
}
