import Synchronization

/// Process-wide counts that do not live on the loops: the start time and the reloads. Any
/// thread; the control thread and the Kubernetes applier count, the admin worker reads.
public final class ProcessStats: Sendable {
    /// When the process started, microseconds since the epoch.
    public let startTimeMicros: Int64
    private let reloadCount = Atomic<Int>(0)
    private let failureCount = Atomic<Int>(0)

    public init(startTimeMicros: Int64) {
        self.startTimeMicros = startTimeMicros
    }

    /// A new table is in force on every loop (not the first).
    public func reloaded() { reloadCount.wrappingAdd(1, ordering: .relaxed) }

    /// A reload was refused or did not reach every loop in time.
    public func reloadFailed() { failureCount.wrappingAdd(1, ordering: .relaxed) }

    public var reloads: Int { reloadCount.load(ordering: .relaxed) }
    public var reloadFailures: Int { failureCount.load(ordering: .relaxed) }
}

/// The Kubernetes discovery's state at a scrape (kube mode only).
public struct KubeWatchStatus: Sendable, Equatable {
    public struct Watch: Sendable, Equatable {
        /// `services`, `endpointslices`.
        public var resource: String
        /// The watch streams now (not listing, not backing off).
        public var up: Bool

        public init(resource: String, up: Bool) {
            self.resource = resource
            self.up = up
        }
    }

    public var watches: [Watch]
    /// When the table in force last matched the cluster state, microseconds since the
    /// epoch; nil before the first sync.
    public var lastSyncMicros: Int64?

    public init(watches: [Watch], lastSyncMicros: Int64?) {
        self.watches = watches
        self.lastSyncMicros = lastSyncMicros
    }
}

/// What a scrape shows about the process besides the loops' tables.
public struct ProcessView: Sendable {
    public var startTimeMicros: Int64
    public var workers: Int
    public var reloads: Int
    public var reloadFailures: Int
    /// Summed over `Reactor.accessLogRings`.
    public var accessLogTaken: Int
    public var accessLogDropped: Int
    public var kube: KubeWatchStatus?
    /// The loops' I/O backend (`epoll`, `io_uring`).
    public var ioBackend: String

    public init(
        startTimeMicros: Int64, workers: Int, reloads: Int = 0, reloadFailures: Int = 0, accessLogTaken: Int = 0,
        accessLogDropped: Int = 0, kube: KubeWatchStatus? = nil, ioBackend: String = "epoll"
    ) {
        self.ioBackend = ioBackend
        self.startTimeMicros = startTimeMicros
        self.workers = workers
        self.reloads = reloads
        self.reloadFailures = reloadFailures
        self.accessLogTaken = accessLogTaken
        self.accessLogDropped = accessLogDropped
        self.kube = kube
    }
}
