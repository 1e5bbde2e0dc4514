import SluiceRouting

/// A configuration file that passed every check: the routing table it describes, plus the
/// settings that are not part of the table.
public struct LoadedConfig: Sendable {
    /// `workers` from the file; nil when absent (the caller then uses the CPUs it may run on).
    public let workers: Int?
    /// Listeners, services, endpoints, timeouts, limits and tuning, ready to post to the loops.
    public let snapshot: RoutingSnapshot

    public init(workers: Int?, snapshot: RoutingSnapshot) {
        self.workers = workers
        self.snapshot = snapshot
    }
}
