import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import SluiceAdmin
import SluiceConfig
import SluiceReactor
import SluiceRouting
import SluiceSystem
import Synchronization

/// What feeds the loops their tables: a configuration file (`sluice run`) or the cluster
/// (`sluice kube`). Called on the control thread only.
protocol ControlMode {
    /// The loops run `gate`'s reactor; start feeding it (kube: the watchers and the applier).
    func started(_ gate: ReactorGate, group: any EventLoopGroup) throws
    /// SIGHUP.
    func reload(_ gate: ReactorGate)
    /// SIGUSR1, after the loops' counters.
    func report()
    /// SIGTERM/SIGINT, before the loops drain: stop changing the table.
    func stop()
    /// `/readyz`, besides the loops running. Any thread.
    var ready: @Sendable () -> Bool { get }
    /// `/healthz`, besides the loops. Any thread.
    var healthy: @Sendable () -> Bool { get }
    /// The Kubernetes watches and last sync for `/metrics`; nil outside kube mode. Any thread.
    var kubeStatus: (@Sendable () -> KubeWatchStatus)? { get }
}

extension ControlMode {
    var kubeStatus: (@Sendable () -> KubeWatchStatus)? { nil }
}

/// The control thread: starts the loops and the admin listener, then waits for signals.
/// SIGHUP reloads (`ControlMode.reload`), SIGUSR1 logs every loop's counters, SIGUSR2 reopens
/// the access-log file, SIGTERM/SIGINT drain and exit.
struct ControlPlane {
    let workers: Int
    let logger: Logger
    /// `--admin-address`; nil: no admin listener.
    let adminAddress: SluiceRouting.SocketAddress?
    /// The access log; nil: none (the loops get no rings and record nothing).
    var accessLog: AccessLogSettings? = nil
    /// `--io-backend`, else the environment, else the file's `tuning.ioBackend`.
    var ioBackend: IOBackendChoice = .auto
    /// Start time and reload counts, for `/metrics`.
    let stats = ProcessStats(startTimeMicros: WallClock.nowMicros())

    func run(initial: RoutingSnapshot, mode: some ControlMode) throws {
        // Access log: the file is opened before anything binds; see AccessLogWriter.
        var accessLogWriter: AccessLogWriter?
        if let accessLog {
            do {
                accessLogWriter = try AccessLogWriter(settings: accessLog, logger: logger)
            } catch {
                logger.critical("access log: \(error)")
                throw ExitCode(1)
            }
            logger.info("access log: \(accessLog.summary)")
        }
        let reactor: Reactor
        do {
            let (backend, fallback) = try Reactor.selectBackend(ioBackend)
            if let fallback { logger.warning("\(fallback)") }
            reactor = try Reactor(
                workers: workers, snapshot: initial, logger: logger, accessLogCapacity: accessLog?.ringCapacity ?? 0,
                backend: backend)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        accessLogWriter?.start(rings: reactor.accessLogRings)
        let gate = ReactorGate(reactor, stats: stats)
        // One NIO thread for the Kubernetes API client (the admin listener has its own thread).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        var admin: AdminServer?
        if let adminAddress {
            do {
                admin = try AdminServer(
                    address: adminAddress, source: Self.adminSource(gate, mode: mode), options: Self.adminOptions(),
                    logger: logger)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(1)
            }
            admin?.start()
        }
        gate.start()
        var listening = initial.listeners.map { "\($0.name)=\($0.address)" }
        if let adminAddress { listening.append("admin=\(adminAddress)") }
        logger.notice(
            "ready generation=\(initial.generation) workers=\(workers) io=\(reactor.backend.rawValue) \(listening.joined(separator: " "))"
        )
        do {
            try mode.started(gate, group: group)
        } catch {
            logger.critical("\(error)")
            gate.drain(graceMillis: 0)
            accessLogWriter?.stop()
            admin?.close()
            throw ExitCode(1)
        }
        while true {
            switch Threads.waitForSignal() {
            case .reload:
                mode.reload(gate)
            case .report:
                gate.report()
                mode.report()
                if let accessLogWriter { logger.notice("access log: \(accessLogWriter.summary)") }
            case .reopenLogs:
                accessLogWriter?.reopen()
            case .stop:
                gate.stopping = true
                mode.stop()
                let grace = gate.snapshot.timeouts.drainMillis
                logger.notice("stopping: no new connections; open ones have \(grace) ms to finish")
                gate.drain(graceMillis: grace)
                // The loops have exited: the writer's last drain takes every record.
                accessLogWriter?.stop()
                admin?.close()
                logger.notice("stopped")
                return
            }
        }
    }
}

/// The reactor, for the threads that drive it: the control thread and the kube applier.
/// `Reactor` wants one caller at a time; every call here takes the lock.
final class ReactorGate: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `reactor` is used only while `lock` is held, except `ping`
    // and `collect`, which post to the loops' thread-safe mailboxes, and `workers` and
    // `accessLogRings`, which are constants; the flags are atomics.
    private let reactor: Reactor
    private let lock = Mutex(())
    private let running = Atomic(false)
    private let stoppingFlag = Atomic(false)
    /// Reloads are counted here by the modes (file: SIGHUP; kube: each applied table).
    let stats: ProcessStats

    init(_ reactor: Reactor, stats: ProcessStats) {
        self.reactor = reactor
        self.stats = stats
    }

    var workers: Int { reactor.workers }

    /// `Reactor.accessLogRings` (fixed at start).
    var accessLogRings: [AccessLogRing] { reactor.accessLogRings }
    /// `Reactor.backend` (fixed at start).
    var ioBackend: String { reactor.backend.rawValue }

    /// Every loop's metrics, or nil when one did not answer in time. Like `ping`, it touches
    /// only the loops' mailboxes: no lock, so a scrape never waits behind an `apply`.
    func collect(timeoutMillis: Int64) -> [LoopMetricsSample]? { reactor.collect(timeoutMillis: timeoutMillis) }

    /// Starts the loop threads.
    func start() {
        lock.withLock { _ in reactor.start() }
        running.store(true, ordering: .releasing)
    }

    /// The loops were started.
    var loopsRunning: Bool { running.load(ordering: .acquiring) }

    /// The loops run and each answers a mailbox message within a second (not wedged).
    /// `Reactor.ping` touches only the loops' thread-safe mailboxes: no lock, so a probe
    /// never waits behind an `apply`.
    var loopsResponding: Bool { loopsRunning && reactor.ping(timeoutMillis: 1_000) }

    /// A stop signal arrived: `/readyz` answers 503 from now on.
    var stopping: Bool {
        get { stoppingFlag.load(ordering: .acquiring) }
        set { stoppingFlag.store(newValue, ordering: .releasing) }
    }

    var snapshot: RoutingSnapshot { lock.withLock { _ in reactor.snapshot } }

    /// See `Reactor.apply`: returns once every loop runs `next`.
    func apply(_ next: RoutingSnapshot) throws(ReactorError) {
        try lock.withLock { _ throws(ReactorError) in try reactor.apply(next) }
    }

    func report() { lock.withLock { _ in reactor.report() } }

    /// Stops accepting and waits for every loop thread to exit.
    func drain(graceMillis: Int64) {
        lock.withLock { _ in
            reactor.drain(graceMillis: graceMillis)
            reactor.join()
        }
        running.store(false, ordering: .releasing)
    }
}

/// `sluice run`: the table comes from a configuration file, re-read on SIGHUP.
struct FileMode: ControlMode {
    let logger: Logger
    /// Builds the snapshot of the given generation from the configuration source.
    let load: (UInt64) throws(ConfigError) -> RoutingSnapshot

    func started(_ gate: ReactorGate, group: any EventLoopGroup) throws {}

    func reload(_ gate: ReactorGate) {
        let generation = gate.snapshot.generation
        do {
            let next = try load(generation + 1)
            try gate.apply(next)
            gate.stats.reloaded()
            logger.notice("reloaded generation=\(generation + 1)")
        } catch let error as ConfigError {
            gate.stats.reloadFailed()
            logger.error("reload failed: keeping generation \(generation)\n\(error.description)")
        } catch {
            gate.stats.reloadFailed()
            logger.error("reload failed: keeping generation \(generation): \(error)")
        }
    }

    func report() {}
    func stop() {}
    var ready: @Sendable () -> Bool { { true } }
    var healthy: @Sendable () -> Bool { { true } }
}
