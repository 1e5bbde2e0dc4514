import Logging
import NIOCore
import SluiceKube
import Synchronization

/// Service discovery from the API server: the two watchers (Services, EndpointSlices) as
/// Swift tasks and the shared state; the applier runs on a thread the caller provides.
///
/// Lifecycle (control thread): `init` → `start()` → any number of `relist()` → `stop()`.
public final class KubeDiscovery: Sendable {
    public let state: KubeDiscoveryState
    public let client: KubeAPIClient
    let settings: KubeWatchSettings
    let logger: Logger
    private let tasks = Mutex<[Task<Void, Never>]>([])

    /// `servingHash`: the content hash of the initial table the loops run.
    public init(client: KubeAPIClient, settings: KubeWatchSettings, servingHash: UInt64, logger: Logger) {
        self.client = client
        self.settings = settings
        self.logger = logger
        state = KubeDiscoveryState(servingHash: servingHash)
    }

    /// Starts listing and watching both kinds.
    public func start() {
        let services = KubeWatcher<KubeService>(client: client, state: state, settings: settings, logger: logger)
        let slices = KubeWatcher<KubeEndpointSlice>(client: client, state: state, settings: settings, logger: logger)
        tasks.withLock { tasks in
            tasks.append(Task.detached { await services.run() })
            tasks.append(Task.detached { await slices.run() })
        }
    }

    /// SIGHUP: list both kinds again; the watches in progress are dropped.
    public func relist() {
        state.requestRelist()
    }

    /// Stops the watchers, wakes the applier to exit, and closes the connections. Async:
    /// returns once every watcher task has ended.
    public func stop() async {
        state.stop()
        let running = tasks.withLock { tasks in
            defer { tasks.removeAll() }
            return tasks
        }
        for task in running { task.cancel() }
        for task in running { await task.value }
        await client.shutdown()
    }
}
