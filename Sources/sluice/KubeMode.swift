import Dispatch
import Foundation
import Logging
import NIOCore
import SluiceAdmin
import SluiceKube
import SluiceKubeClient
import SluiceSystem
import Synchronization

/// `sluice kube`'s side of the control thread: starts discovery once the loops run, re-lists
/// on SIGHUP, stops the watchers and the applier before the loops drain.
final class KubeMode: ControlMode, @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `discovery` and `applierThread` are written and read on
    // the control thread only; the probes read `discovery.state`, which is thread-safe,
    // through `stateBox`.
    let clientConfig: KubeClientConfig
    let translator: KubeTranslator
    let settings: KubeWatchSettings
    let servingHash: UInt64
    /// The TLS listener's certificates, read again on SIGHUP; nil without `--tls-address`.
    let certificates: KubeTLSCertificates?
    let logger: Logger
    private var discovery: KubeDiscovery?
    private var applierThread: ThreadHandle?
    private let stateBox = Mutex<KubeDiscoveryState?>(nil)

    init(
        clientConfig: KubeClientConfig, translator: KubeTranslator, settings: KubeWatchSettings,
        servingHash: UInt64, certificates: KubeTLSCertificates? = nil, logger: Logger
    ) {
        self.clientConfig = clientConfig
        self.translator = translator
        self.settings = settings
        self.servingHash = servingHash
        self.certificates = certificates
        self.logger = logger
    }

    func started(_ gate: ReactorGate, group: any EventLoopGroup) throws {
        let client = try KubeAPIClient(config: clientConfig, group: group)
        let discovery = KubeDiscovery(client: client, settings: settings, servingHash: servingHash, logger: logger)
        let applier = KubeApplier(state: discovery.state, translator: translator, logger: logger) { snapshot in
            do {
                try gate.apply(snapshot)
                gate.stats.reloaded()
            } catch {
                gate.stats.reloadFailed()
                throw error
            }
        }
        stateBox.withLock { $0 = discovery.state }
        applierThread = Threads.spawn { applier.run() }
        discovery.start()
        self.discovery = discovery
    }

    /// SIGHUP: the certificate files first (a new context is a new plan version, applied
    /// with the re-listed cluster state even when that did not change), then the re-list.
    func reload(_ gate: ReactorGate) {
        certificates?.reload(logger: logger)
        logger.notice("SIGHUP: listing Services and EndpointSlices again")
        discovery?.relist()
    }

    func report() {
        guard let state = stateBox.withLock({ $0 }) else { return }
        logger.info("kube: synced=\(state.isSynced) ready=\(state.isReady) watchers_alive=\(state.watchersAlive())")
    }

    /// Blocks the control thread until the watchers and the applier have ended.
    func stop() {
        guard let discovery else { return }
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            await discovery.stop()
            done.signal()
        }
        done.wait()
        applierThread?.join()
        applierThread = nil
        self.discovery = nil
    }

    var ready: @Sendable () -> Bool {
        { [stateBox = StateReader(self)] in stateBox.read()?.isReady ?? false }
    }

    var healthy: @Sendable () -> Bool {
        { [stateBox = StateReader(self)] in stateBox.read()?.watchersAlive() ?? false }
    }

    /// The watches' state and the last sync, for `/metrics`.
    var kubeStatus: (@Sendable () -> KubeWatchStatus)? {
        { [stateBox = StateReader(self)] in
            let state = stateBox.read()
            let watches =
                state?.watchesStreaming.map { ($0.resource, $0.streaming) }
                ?? KubeResource.allCases.map { ($0, false) }
            return KubeWatchStatus(
                watches: watches.map { KubeWatchStatus.Watch(resource: $0.0.rawValue.lowercased(), up: $0.1) },
                lastSyncMicros: state?.lastSyncTime.map { Int64(($0.timeIntervalSince1970 * 1_000_000).rounded()) })
        }
    }

    fileprivate func currentState() -> KubeDiscoveryState? { stateBox.withLock { $0 } }
}

/// Lets a probe closure read the discovery state without capturing the mode's other fields.
private struct StateReader: Sendable {
    let mode: KubeMode
    init(_ mode: KubeMode) { self.mode = mode }
    func read() -> KubeDiscoveryState? { mode.currentState() }
}
