import ArgumentParser
import Logging
import SluiceAdmin
import SluiceConfig
import SluiceReactor
import SluiceRouting
import SluiceSystem

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "An event-loop L4 load balancer with splice forwarding.",
        subcommands: [Run.self, Kube.self, Check.self, Demo.self, Top.self],
        defaultSubcommand: Run.self
    )
}

struct LogOptions: ParsableArguments {
    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    func bootstrap() -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "sluice")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension IOBackendChoice: ExpressibleByArgument {}

/// `--io-backend`, shared by `run` and `kube`.
struct IOBackendOption: ParsableArguments {
    @Option(
        help:
            "auto, io_uring or epoll (default: $SLUICE_IO_BACKEND, else the file's tuning.ioBackend, else auto: io_uring where it may run)."
    )
    var ioBackend: IOBackendChoice?

    /// The flag, else the environment, else `file`.
    func choice(file: IOBackendChoice) throws -> IOBackendChoice {
        if let ioBackend { return ioBackend }
        guard let text = Environment.value("SLUICE_IO_BACKEND"), !text.isEmpty else { return file }
        guard let choice = IOBackendChoice(rawValue: text) else {
            let allowed = IOBackendChoice.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("SLUICE_IO_BACKEND: unknown I/O backend '\(text)' (expected one of: \(allowed))")
        }
        return choice
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the load balancer from a configuration file.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    @Option(help: "Event loops (default: the file's `workers`, else the affinity mask's CPUs within the cgroup quota).")
    var workers: Int?

    @Option(help: "Admin listener (/healthz, /readyz, /metrics, /routes, /stats), HOST:PORT (default: none).")
    var adminAddress: String = "off"

    @OptionGroup var io: IOBackendOption

    @Option(
        help: ArgumentHelp(
            "A Unix socket: take the listening sockets over from the sluice serving there (it drains once this "
                + "one serves), else bind them; then answer the next process's takeover there (default: the "
                + "file's takeoverSocket).",
            valueName: "path"))
    var takeover: String?

    @OptionGroup var log: LogOptions

    func validate() throws {
        _ = try io.choice(file: .auto)
        if let workers, !(1...256).contains(workers) {
            throw ValidationError("--workers must be between 1 and 256")
        }
        _ = try AdminAddress.parse(adminAddress)
        if let takeover, takeover.isEmpty || takeover.utf8.count > 107 {
            throw ValidationError("--takeover must be a socket path of 1 to 107 bytes")
        }
    }

    func run() throws {
        ServingProcess.installCrashHandler()
        // Before any thread starts, so that only the control thread receives them.
        Threads.takeOverSignals()
        let logger = log.bootstrap()
        let loaded: LoadedConfig
        do {
            loaded = try ConfigLoader.load(path: config, generation: 1)
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        try ServingProcess.prepare(logger: logger)
        let count = ServingProcess.workers(explicit: workers, file: loaded.workers, logger: logger)
        let accessLog = loaded.accessLog
        let mode = FileMode(logger: logger) { generation throws(ConfigError) in
            let next = try ConfigLoader.load(path: config, generation: generation)
            if next.snapshot.tuning.ioBackend != loaded.snapshot.tuning.ioBackend {
                logger.warning(
                    "reload: tuning.ioBackend is now \(next.snapshot.tuning.ioBackend.rawValue), but the I/O backend is chosen at start: it changes at the next restart"
                )
            }
            if next.accessLog != accessLog {
                logger.warning(
                    "reload: the accessLog section is now \(next.accessLog?.description ?? "absent"), but its path, format and buffer are read at start: \(accessLog?.description ?? "no access log") stays until a restart (the listeners' accessLog modes apply now)"
                )
            }
            return next.snapshot
        }
        // Only a process that passed its configuration check asks the serving one for its sockets.
        var client: TakeoverClient?
        let takeover = takeover ?? loaded.takeoverSocket
        if let takeover {
            do {
                client = try TakeoverClient.take(path: takeover, logger: logger)
            } catch {
                logger.critical("takeover from \(takeover) failed: \(error)")
                throw ExitCode(1)
            }
        }
        try ControlPlane(
            workers: count, logger: logger, adminAddress: try AdminAddress.parse(adminAddress),
            accessLog: accessLog, ioBackend: try io.choice(file: loaded.snapshot.tuning.ioBackend),
            takeoverPath: takeover, takeoverClient: client
        )
        .run(initial: loaded.snapshot, mode: mode)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration file and print its routing table.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    @OptionGroup var io: IOBackendOption

    func validate() throws { _ = try io.choice(file: .auto) }

    func run() throws {
        do {
            let loaded = try ConfigLoader.load(path: config, generation: 1)
            print("\(config): OK")
            if let workers = loaded.workers { print("workers: \(workers)") }
            if let accessLog = loaded.accessLog {
                let modes = loaded.snapshot.listeners.map { "\($0.name)=\($0.accessLog.summary)" }
                print("access log: \(accessLog) listeners: \(modes.joined(separator: " "))")
            }
            let file = loaded.snapshot.tuning.ioBackend
            let choice = (try? io.choice(file: file)) ?? file
            switch Result(catching: { () throws(ReactorError) in try Reactor.selectBackend(choice) }) {
            case .success(let (backend, fallback)):
                print("io backend: \(backend.rawValue) (\(choice.rawValue)\(fallback.map { "; \($0)" } ?? ""))")
            case .failure(let error):
                print("io backend: none (\(choice.rawValue)): \(error): sluice run would not start")
            }
            print(loaded.snapshot.render())
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
    }
}

func printError(_ text: String) {
    var stderr = StandardError()
    print(text, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileOutput.standardError(string)
    }
}

extension AccessLogPolicy {
    /// `on`, `on sample=0.25`, `errors`, `off`.
    var summary: String {
        guard mode == .on, samplePerMillion < 1_000_000 else { return mode.rawValue }
        return "on(sample=\(Double(samplePerMillion) / 1_000_000))"
    }
}
