import ArgumentParser
import Logging
import SluiceAdmin
import SluiceKube
import SluiceKubeClient
import SluiceRouting
import SluiceSystem
import SluiceTLS

/// `sluice kube`: the routing table comes from the cluster's Services (opted in by an
/// `lb.host` annotation or `--tcp-services`) and their EndpointSlices. Flags keep the
/// original service-loadbalancer's names.
struct Kube: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Discover services from the Kubernetes API and load-balance them.")

    @Option(help: "A kubeconfig file (its current context); default: the in-cluster service account.")
    var kubeconfig: String?

    @Option(help: "Where the in-cluster token and ca.crt are mounted.")
    var serviceAccountDir: String = KubeClientConfig.serviceAccountDirectory

    @Option(help: "Only Services of this namespace (default: all).")
    var namespace: String?

    @Option(help: "The HTTP listener for lb.host Services, HOST:PORT.")
    var httpAddress: String = "0.0.0.0:80"

    @Option(help: "The TLS listener for lb.sslTerm Services, HOST:PORT (needs --tls-certificate and --tls-key).")
    var tlsAddress: String?

    @Option(
        help: ArgumentHelp(
            "A PEM certificate chain for the TLS listener; repeatable, paired in order with --tls-key. The first "
                + "is the default, for clients that name no host or one no certificate covers.",
            valueName: "cert.pem"))
    var tlsCertificate: [String] = []

    @Option(
        help: ArgumentHelp(
            "The PEM private key of the --tls-certificate in the same position; repeatable.", valueName: "key.pem"))
    var tlsKey: [String] = []

    @Option(help: "Admin listener (/healthz, /readyz, /metrics, /routes, /stats), HOST:PORT; \"\" or off disables it.")
    var adminAddress: String = "0.0.0.0:8081"

    @Option(help: "Raw TCP services, [namespace/]name:port[,...]; each listens on its port.")
    var tcpServices: String = ""

    @Option(help: "The status for requests no route matches (400-599).")
    var defaultReturnCode: UInt16 = 404

    @Option(help: "For Services without lb.algorithm: roundrobin, leastconn, first or source.")
    var balanceAlgorithm: String = "roundrobin"

    @Option(help: "Drop a watch that sends nothing, not even a bookmark, for this long (e.g. 90s, 2s).")
    var watchIdleTimeout: String = "90s"

    @Option(help: "Event loops (default: the CPUs in the affinity mask, at most the cgroup CPU quota).")
    var workers: Int?

    @Option(
        help: "On SIGTERM: how long the listeners keep accepting after /readyz turned 503 (e.g. 5s, 0 for none).")
    var drainDelay: String = "5s"

    @Option(help: "On SIGTERM, once accepting stopped: how long open connections may take to finish (e.g. 30s).")
    var drain: String = "30s"

    @Option(
        help: ArgumentHelp(
            "The access log: a file (appended to, reopened on SIGUSR2), stdout, or off.", valueName: "path"))
    var accessLog: String = "off"

    @Option(help: ArgumentHelp("The access log's form: json (one object a line) or text.", valueName: "json|text"))
    var accessLogFormat: String?

    @Option(
        help: ArgumentHelp(
            "Which records the listeners write: on (every request and connection) or errors (failures only).",
            valueName: "on|errors"))
    var accessLogMode: String?

    @Option(
        help: "With --access-log-mode on: the share of successful records kept, from 0 to 1 (failures are always kept)."
    )
    var accessLogSample: Double?

    @Flag(
        help:
            "HTTP/2 from clients: prior knowledge (h2c) on the HTTP listener, ALPN h2 on the TLS listener (gRPC clients need it)."
    )
    var http2 = false

    @OptionGroup var io: IOBackendOption

    @OptionGroup var log: LogOptions

    func validate() throws {
        if let workers, !(1...256).contains(workers) {
            throw ValidationError("--workers must be between 1 and 256")
        }
        _ = try options(tlsContext: nil)
        _ = try certificateFiles()
        _ = try AdminAddress.parse(adminAddress)
        _ = try accessLogSettings()
        _ = try drainTimeouts()
        guard let idle = DurationSyntax.parse(watchIdleTimeout), idle >= .milliseconds(100) else {
            throw ValidationError("--watch-idle-timeout '\(watchIdleTimeout)': expected a duration such as 90s or 2s")
        }
    }

    /// The certificate files of the TLS listener, paired in order; empty without
    /// `--tls-address`.
    func certificateFiles() throws -> [TLSCertificateFiles] {
        guard tlsAddress != nil else {
            if !tlsCertificate.isEmpty || !tlsKey.isEmpty {
                throw ValidationError("--tls-certificate and --tls-key need --tls-address (the TLS listener)")
            }
            return []
        }
        guard !tlsCertificate.isEmpty || !tlsKey.isEmpty else {
            throw ValidationError(
                "--tls-address needs a certificate: give --tls-certificate CERT.pem and --tls-key KEY.pem")
        }
        guard tlsCertificate.count == tlsKey.count else {
            throw ValidationError(
                "--tls-certificate and --tls-key come in pairs, in order: \(tlsCertificate.count) "
                    + "certificate(s) but \(tlsKey.count) key(s)")
        }
        return zip(tlsCertificate, tlsKey).map { TLSCertificateFiles(cert: $0, key: $1) }
    }

    /// The translator's options from the flags; `tlsContext`: the TLS listener's certificates
    /// (nil while validating, before the files are read).
    func options(tlsContext: KubeTLSContextSlot?) throws -> KubeTranslatorOptions {
        let http: SocketAddress
        switch SocketAddress.parse(httpAddress) {
        case .success(let address): http = address
        case .failure(let error): throw ValidationError("--http-address '\(httpAddress)': \(error)")
        }
        var tls: SocketAddress?
        if let tlsAddress {
            switch SocketAddress.parse(tlsAddress) {
            case .success(let address): tls = address
            case .failure(let error): throw ValidationError("--tls-address '\(tlsAddress)': \(error)")
            }
            if tls?.port == http.port {
                throw ValidationError("--tls-address and --http-address must use different ports")
            }
        }
        let tcp: [KubeTCPService]
        switch KubeTCPService.parseList(tcpServices) {
        case .success(let entries): tcp = entries
        case .failure(let error): throw ValidationError("--tcp-services \(error)")
        }
        guard (400...599).contains(defaultReturnCode) else {
            throw ValidationError("--default-return-code must be a status from 400 to 599")
        }
        let algorithm: Algorithm
        switch balanceAlgorithm {
        case "roundrobin": algorithm = .roundrobin
        case "leastconn", "first": algorithm = .leastconn
        case "source": algorithm = .source
        default:
            throw ValidationError("--balance-algorithm must be roundrobin, leastconn, first or source")
        }
        if let namespace, namespace.isEmpty {
            throw ValidationError("--namespace must not be empty (omit it for all namespaces)")
        }
        var options = KubeTranslatorOptions(
            httpAddress: http, tcpServices: tcp, defaultReturnCode: defaultReturnCode, balanceAlgorithm: algorithm,
            namespace: namespace, timeouts: try drainTimeouts(), tlsAddress: tls, tlsContext: tlsContext,
            accessLog: try accessLogPolicy())
        options.http2 = http2
        return options
    }

    /// The default timeouts with `--drain-delay` and `--drain`.
    func drainTimeouts() throws -> Timeouts {
        var timeouts = Timeouts()
        func millis(_ text: String, flag: String, zero: Bool) throws -> Int64 {
            if zero && text == "0" { return 0 }
            guard let duration = DurationSyntax.parse(text), duration >= (zero ? .zero : .milliseconds(1)),
                duration <= .seconds(3600)
            else {
                throw ValidationError("\(flag) '\(text)': expected a duration such as 5s or 500ms, at most 1h")
            }
            let (seconds, attoseconds) = duration.components
            return seconds * 1000 + attoseconds / 1_000_000_000_000_000
        }
        timeouts.drainDelayMillis = try millis(drainDelay, flag: "--drain-delay", zero: true)
        timeouts.drainMillis = try millis(drain, flag: "--drain", zero: false)
        return timeouts
    }

    /// The writer's settings from `--access-log` and `--access-log-format`; nil for off.
    func accessLogSettings() throws -> AccessLogSettings? {
        let format: AccessLogFormat
        switch accessLogFormat {
        case nil: format = .json
        case let text?:
            guard let known = AccessLogFormat(rawValue: text) else {
                throw ValidationError("--access-log-format must be json or text")
            }
            format = known
        }
        switch accessLog {
        case "off", "":
            for (flag, given) in [
                ("--access-log-format", accessLogFormat != nil), ("--access-log-mode", accessLogMode != nil),
                ("--access-log-sample", accessLogSample != nil),
            ] where given {
                throw ValidationError("\(flag) needs --access-log PATH or --access-log stdout")
            }
            return nil
        case "stdout": return AccessLogSettings(destination: .standardOutput, format: format)
        case "stderr": return AccessLogSettings(destination: .standardError, format: format)
        default:
            if accessLog.hasSuffix("/") {
                throw ValidationError("--access-log '\(accessLog)' names a directory; expected a file")
            }
            return AccessLogSettings(destination: .file(accessLog), format: format)
        }
    }

    /// Every listener's policy from `--access-log-mode` and `--access-log-sample`.
    func accessLogPolicy() throws -> AccessLogPolicy {
        guard try accessLogSettings() != nil else { return AccessLogPolicy() }
        let mode: AccessLogPolicy.Mode
        switch accessLogMode {
        case nil, "on": mode = .on
        case "errors": mode = .errors
        default: throw ValidationError("--access-log-mode must be on or errors")
        }
        guard let sample = accessLogSample else { return AccessLogPolicy(mode: mode) }
        guard mode == .on else {
            throw ValidationError("--access-log-sample applies to --access-log-mode on (errors keeps every failure)")
        }
        guard sample >= 0 && sample <= 1 else {
            throw ValidationError("--access-log-sample must be from 0 to 1 (0.1 keeps one in ten)")
        }
        return AccessLogPolicy(mode: .on, samplePerMillion: UInt32((sample * 1_000_000).rounded()))
    }

    func run() throws {
        ServingProcess.installCrashHandler()
        // Before any thread starts, so that only the control thread receives them.
        Threads.takeOverSignals()
        let logger = log.bootstrap()
        try ServingProcess.prepare(logger: logger)
        // The certificate files first: a mistake in them is reported before any connection.
        var certificates: KubeTLSCertificates?
        do {
            let files = try certificateFiles()
            if !files.isEmpty { certificates = try KubeTLSCertificates.load(files) }
        } catch {
            printError("sluice kube: \(error)")
            throw ExitCode(1)
        }
        let clientConfig: KubeClientConfig
        do {
            if let kubeconfig {
                clientConfig = try KubeClientConfig.kubeconfig(path: kubeconfig)
            } else {
                clientConfig = try KubeClientConfig.inCluster(directory: serviceAccountDir)
            }
        } catch {
            printError("sluice kube: \(error)")
            throw ExitCode(1)
        }
        let translator = KubeTranslator(options: try options(tlsContext: certificates?.slot))
        if let tlsAddress, let certificates {
            logger.info("kube: TLS listener \(tlsAddress), certificates: \(certificates.slot.current.handle.summary)")
        }
        let settings = KubeWatchSettings(namespace: namespace, idleTimeout: DurationSyntax.parse(watchIdleTimeout)!)
        // The loops start with the listeners and no routes, so the ports answer (with the
        // default code) before the first sync.
        let (initial, translation) = translator.snapshot(KubeCache(), generation: 1)
        let mode = KubeMode(
            clientConfig: clientConfig, translator: translator, settings: settings,
            servingHash: translation.contentHash, certificates: certificates, logger: logger)
        let count = ServingProcess.workers(explicit: workers, file: nil, logger: logger)
        logger.info("kube: API server \(clientConfig.server), namespace \(namespace ?? "(all)")")
        try ControlPlane(
            workers: count, logger: logger, adminAddress: try AdminAddress.parse(adminAddress),
            accessLog: try accessLogSettings(), ioBackend: try io.choice(file: .auto),
            defaultDrainDelayMillis: 5_000
        )
        .run(initial: initial, mode: mode)
    }
}
