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
    /// `takeoverSocket`: where `sluice run` takes the listeners over from the process serving
    /// there, and answers the next one's takeover (`--takeover` wins); nil when absent.
    public let takeoverSocket: String?

    public init(
        workers: Int?, accessLog: AccessLogSettings? = nil, takeoverSocket: String? = nil, snapshot: RoutingSnapshot
    ) {
        self.workers = workers
        self.accessLog = accessLog
        self.takeoverSocket = takeoverSocket
        self.snapshot = snapshot
    }
}
