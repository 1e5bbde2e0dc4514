import Foundation
import SluiceAdmin
import SluiceSystem

/// The admin listener's wiring: what it reads (`AdminSource`) and its bounds. The listener
/// itself is `SluiceAdmin.AdminServer`, on a thread of its own.
extension ControlPlane {
    /// `/healthz`: every loop answers a mailbox message within a second, and the mode is
    /// healthy (kube: both watchers alive). `/readyz`: the loops run, no stop signal arrived,
    /// and the mode is ready (kube: the first full sync is in force).
    static func adminSource(_ gate: ReactorGate, mode: some ControlMode) -> AdminSource {
        AdminSource(
            workers: gate.workers, stats: gate.stats, accessLogRings: gate.accessLogRings,
            collect: { gate.collect(timeoutMillis: $0) },
            healthy: { [healthy = mode.healthy] in gate.loopsResponding && healthy() },
            ready: { [ready = mode.ready] in gate.loopsRunning && !gate.stopping && ready() },
            kube: mode.kubeStatus, ioBackend: gate.ioBackend)
    }

    /// The defaults; debug builds take `SLUICE_ADMIN_IDLE_MS`, `SLUICE_ADMIN_HEAD_MS` and
    /// `SLUICE_ADMIN_WRITE_MS` so tests can watch the deadlines act without waiting for them.
    static func adminOptions() -> AdminOptions {
        var options = AdminOptions()
        #if DEBUG
            func millis(_ name: String) -> Int64? {
                guard let text = Environment.value(name), let value = Int64(text), value > 0 else { return nil }
                return value
            }
            if let value = millis("SLUICE_ADMIN_IDLE_MS") { options.idleMillis = value }
            if let value = millis("SLUICE_ADMIN_HEAD_MS") { options.headMillis = value }
            if let value = millis("SLUICE_ADMIN_WRITE_MS") { options.writeMillis = value }
        #endif
        return options
    }
}

/// Wall-clock time, for the start time `/metrics` reports.
enum WallClock {
    static func nowMicros() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000_000).rounded()) }
}
