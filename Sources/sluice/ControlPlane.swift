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
    /// `timeouts.drainDelay` when the table leaves it out (`sluice kube`: 5 s).
    var defaultDrainDelayMillis: Int64 = 0
    /// `--takeover PATH`: where this process answers the next one's takeover (`Takeover`).
    var takeoverPath: String? = nil
    /// The sockets taken from the process that served at `takeoverPath`; nil: bind them.
    var takeoverClient: TakeoverClient? = nil

    /// Listens for the next process's takeover at `takeoverPath`; nil without one (or when
    /// the socket cannot be made: this process serves all the same).
    func startTakeover(_ gate: ReactorGate, admin: Int32?) -> TakeoverServer? {
        guard let takeoverPath else { return nil }
        do {
            let server = try TakeoverServer(path: takeoverPath, logger: logger) { body in
                try gate.lendListeningSockets(admin: admin, body)
            }
            server.start()
            logger.info("takeover: the next process takes the listeners over at \(takeoverPath)")
            return server
        } catch {
            logger.error("takeover: cannot listen on \(takeoverPath): \(error); no takeover of this process")
            return nil
        }
    }

    /// The admin listener taken over when it is bound to `address`; else it is closed.
    static func inheritedAdmin(_ fd: Int32?, address: SluiceRouting.SocketAddress?) -> Int32? {
        guard let fd else { return nil }
        if let address, let bound = try? Socket.localAddress(fd),
            bound == SystemAddress(ip: Self.systemIP(address.ip), port: address.port)
        {
            return fd
        }
        Syscall.close(fd)
        return nil
    }

    static func systemIP(_ ip: SluiceRouting.SocketAddress.IP) -> SystemAddress.IP {
        switch ip {
        case .v4(let a): .v4(a)
        case .v6(let hi, let lo): .v6(hi, lo)
        }
    }

    /// SIGTERM/SIGINT: `/readyz` answers 503 at once; the listeners keep accepting for
    /// `timeouts.drainDelay` while every HTTP/1 response closes its client; then accepting
    /// stops, idle keep-alive clients are closed, and what is open has `timeouts.drain` to
    /// finish. Returns once every loop has exited.
    func stop(_ gate: ReactorGate, mode: some ControlMode, delayMillis explicitDelay: Int64? = nil) {
        gate.stopping = true
        mode.stop()
        let timeouts = gate.snapshot.timeouts
        let delay = explicitDelay ?? timeouts.drainDelayMillis ?? defaultDrainDelayMillis
        if delay > 0 {
            logger.notice(
                "stopping: /readyz answers 503; listeners accept for \(delay) ms more (timeouts.drainDelay); every HTTP/1 response closes its connection"
            )
            gate.closeKeepAlive()
            let end = MonotonicClock.nowMillis() + delay
            var left = delay
            while left > 0 {
                let signal = Threads.waitForSignal(timeoutMillis: Int(left))
                if signal == .stop {
                    logger.notice("stopping: a second stop signal ends the drain delay")
                    break
                }
                if let signal { logger.warning("stopping: \(signal) ignored during the drain delay") }
                left = end - MonotonicClock.nowMillis()
            }
        } else {
            logger.notice("stopping: /readyz answers 503")
        }
        let grace = timeouts.drainMillis
        logger.notice(
            "draining: listeners closed, idle keep-alive connections closed; open ones have \(grace) ms to finish (timeouts.drain)"
        )
        gate.drain(graceMillis: grace)
    }

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
                inherited: InheritedSockets(descriptors: takeoverClient?.listeners ?? []), backend: backend)
        } catch {
            logger.critical("\(error)")
            if let takeoverClient {
                logger.critical("takeover: abandoned; pid \(takeoverClient.oldPID) keeps serving")
                takeoverClient.abandon()
            }
            throw ExitCode(1)
        }
        let inheritedAdmin = Self.inheritedAdmin(takeoverClient?.admin, address: adminAddress)
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
                    logger: logger, inherited: inheritedAdmin)
            } catch {
                logger.critical("\(error)")
                takeoverClient?.abandon()
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
            takeoverClient?.abandon()
            gate.drain(graceMillis: 0)
            accessLogWriter?.stop()
            admin?.close()
            throw ExitCode(1)
        }
        let takeoverServer = startTakeover(gate, admin: admin?.listeningSocket)
        if let takeoverClient {
            do {
                try takeoverClient.serving()
                logger.notice(
                    "takeover: serving on \(takeoverClient.listeners.count) listening sockets of pid \(takeoverClient.oldPID); it drains now"
                )
            } catch {
                logger.warning("\(error)")
            }
        }
        // systemd (Type=notify): this process serves and is the one to watch, also after a takeover.
        if SystemdNotify.expected { SystemdNotify.send("READY=1\nMAINPID=\(getpid())") }
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
                if let successor = takeoverServer?.successor {
                    // The next process has the listeners (the admin one too): hand over at once.
                    logger.notice("stopping: pid \(successor) took over the listeners")
                    admin?.close()
                    admin = nil
                    stop(gate, mode: mode, delayMillis: 0)
                } else {
                    stop(gate, mode: mode)
                }
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

    /// Calls `body` with every loop's listening sockets and `admin`, valid while it runs (no
    /// `apply` or `drain` meanwhile); with nil once a stop signal arrived.
    func lendListeningSockets(admin: Int32?, _ body: (TakeoverServer.Sockets?) throws -> Void) throws {
        try lock.withLock { _ in
            try body(stopping ? nil : (reactor.listeningSockets, admin))
        }
    }

    /// See `Reactor.closeKeepAlive`.
    func closeKeepAlive() { lock.withLock { _ in reactor.closeKeepAlive() } }

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
