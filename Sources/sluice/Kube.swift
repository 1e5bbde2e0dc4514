import ArgumentParser
import Logging
import SluiceKube
import SluiceKubeClient
import SluiceRouting
import SluiceSystem

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

    @Option(help: "The TLS listener, HOST:PORT (reserved: TLS termination is not available yet).")
    var tlsAddress: String?

    @Option(help: "Admin listener for /healthz and /readyz, HOST:PORT; \"\" or off disables it.")
    var adminAddress: String = "0.0.0.0:8081"

    @Option(help: "Raw TCP services, [namespace/]name:port[,...]; each listens on its port.")
    var tcpServices: String = ""

    @Option(help: "The status for requests no route matches (400-599).")
    var defaultReturnCode: UInt16 = 404

    @Option(help: "For Services without lb.algorithm: roundrobin, leastconn, first or source.")
    var balanceAlgorithm: String = "roundrobin"

    @Option(help: "Drop a watch that sends nothing, not even a bookmark, for this long (e.g. 90s, 2s).")
    var watchIdleTimeout: String = "90s"

    @Option(help: "Event loops (default: the CPUs in the affinity mask).")
    var workers: Int?

    @OptionGroup var log: LogOptions

    func validate() throws {
        if let workers, !(1...256).contains(workers) {
            throw ValidationError("--workers must be between 1 and 256")
        }
        _ = try options()
        _ = try AdminAddress.parse(adminAddress)
        guard let idle = DurationSyntax.parse(watchIdleTimeout), idle >= .milliseconds(100) else {
            throw ValidationError("--watch-idle-timeout '\(watchIdleTimeout)': expected a duration such as 90s or 2s")
        }
    }

    /// The translator's options from the flags.
    func options() throws -> KubeTranslatorOptions {
        let http: SocketAddress
        switch SocketAddress.parse(httpAddress) {
        case .success(let address): http = address
        case .failure(let error): throw ValidationError("--http-address '\(httpAddress)': \(error)")
        }
        if let tlsAddress, case .failure(let error) = SocketAddress.parse(tlsAddress) {
            throw ValidationError("--tls-address '\(tlsAddress)': \(error)")
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
        return KubeTranslatorOptions(
            httpAddress: http, tcpServices: tcp, defaultReturnCode: defaultReturnCode, balanceAlgorithm: algorithm,
            namespace: namespace)
    }

    func run() throws {
        // Before any thread starts, so that only the control thread receives them.
        Threads.takeOverSignals()
        let logger = log.bootstrap()
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
        let translator = KubeTranslator(options: try options())
        if let tlsAddress {
            logger.warning("--tls-address \(tlsAddress): TLS termination is not available yet; no TLS listener")
        }
        let settings = KubeWatchSettings(namespace: namespace, idleTimeout: DurationSyntax.parse(watchIdleTimeout)!)
        // The loops start with the listeners and no routes, so the ports answer (with the
        // default code) before the first sync.
        let (initial, translation) = translator.snapshot(KubeCache(), generation: 1)
        let mode = KubeMode(
            clientConfig: clientConfig, translator: translator, settings: settings,
            servingHash: translation.contentHash, logger: logger)
        let count = workers ?? Threads.affinityCPUs().count
        logger.info("kube: API server \(clientConfig.server), namespace \(namespace ?? "(all)")")
        try ControlPlane(workers: count, logger: logger, adminAddress: try AdminAddress.parse(adminAddress))
            .run(initial: initial, mode: mode)
    }
}
