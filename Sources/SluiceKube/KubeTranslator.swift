import SluiceRouting

/// Turns the cluster state into a routing plan (and from it a snapshot), following the
/// original service-loadbalancer's annotations with its mistakes fixed:
///
/// - Only Services that opt in are exposed: an `lb.host` annotation (HTTP routes on the
///   `httpAddress` listener) or an entry in `tcpServices` (a TCP listener of its own).
/// - Everything is keyed `namespace/name:port`, so same-named Services in two namespaces
///   stay apart.
/// - Endpoints come from EndpointSlices (see `KubeTranslator+Endpoints.swift`).
/// - A bad annotation value is a warning and the default is used; it never fails the build.
///
/// Where the contract leaves room:
///
/// - Port: an `lb.host` entry exposes the Service's first TCP port, or the port named (or
///   numbered) after `=` in the entry (`admin.example.com=admin`); each exposed port is its own
///   snapshot service `namespace/name:port` (the Service port's number). An unknown port name
///   falls back to the first port, with a warning.
/// - Algorithm precedence: `lb.cookie-sticky-session` (cookie) over `sessionAffinity: ClientIP`
///   (source) over `lb.algorithm` over `--balance-algorithm`, as the original's template did.
///   `first` maps to `leastconn` (HAProxy's `first` needs per-endpoint connection slots).
///   The ClientIP timeout is recorded in the plan but not enforced: the source hash does not
///   expire.
/// - `lb.sslTerm: "true"` with a TLS listener (`tlsAddress` and `tlsContext`): the hosts are
///   served on the TLS listener only, terminated (certificate chosen by SNI, the first one for
///   unknown names), their requests routed by host and `lb.aclMatch` path; requests no route
///   matches, and the same hosts over plain HTTP, get `--default-return-code`. Without a TLS
///   listener: a warning, and the hosts are served over HTTP.
/// - An `lb.host` entry with a port (`grafana.example.com:30800`) of an sslTerm Service is
///   served on the TLS listener under its name only, on any port: the server name (SNI)
///   carries no port, and the Host header of a terminated request names the port the client
///   reached (443, or a NodePort in front of it), not the one the annotation was written for.
/// - `--tcp-services` entries without a namespace mean the `--namespace` one, else `default`;
///   the listener exists even while its Service does not (no endpoints: connections refused),
///   so sockets stay open as Services come and go.
/// - `spec.type` is not consulted: an opted-in Service of any type is exposed (ExternalName
///   has no slices, hence no endpoints).
/// - The HTTP listener exists even with no route, answering `--default-return-code`.
///
/// Pure and synchronous: no I/O, no clock. Called by the watcher after a batch of events.
public struct KubeTranslator: Sendable {
    public var options: KubeTranslatorOptions

    public init(options: KubeTranslatorOptions = KubeTranslatorOptions()) {
        self.options = options
    }

    /// The result of one translation.
    public struct Translation: Sendable {
        public var plan: KubeRoutingPlan
        /// In a stable order (Services by key), so unchanged inputs give unchanged warnings.
        public var warnings: [KubeWarning]

        /// See `KubeRoutingPlan.contentHash`.
        public var contentHash: UInt64 { plan.contentHash }
    }

    /// The plan for `cache` under `options`, with a warning for every value that was not
    /// usable as written.
    public func translate(_ cache: KubeCache) -> Translation {
        var builder = PlanBuilder(options: options)
        builder.build(cache)
        return Translation(plan: builder.plan, warnings: builder.warnings)
    }

    /// `translate(cache)` made into a snapshot with the options' timeouts, limits and tuning.
    public func snapshot(_ cache: KubeCache, generation: UInt64) -> (RoutingSnapshot, Translation) {
        let translation = translate(cache)
        let snapshot = translation.plan.snapshot(
            generation: generation, timeouts: options.timeouts, limits: options.limits, tuning: options.tuning)
        return (snapshot, translation)
    }
}

/// The state of one translation: the plan as it grows and the warnings.
struct PlanBuilder {
    let options: KubeTranslatorOptions
    var plan: KubeRoutingPlan
    var warnings: [KubeWarning] = []
    /// Planned services by key while building; sorted into `plan.services` at the end.
    var services: [String: KubeRoutingPlan.PlannedService] = [:]
    /// Which Service's route first took a (host, path), for the duplicate warning.
    var routeOwners: [RouteKey: String] = [:]
    /// The same for the routes of the TLS listener.
    var terminatedRouteOwners: [RouteKey: String] = [:]
    /// The EndpointSlices of each Service (same namespace, joined by label), by slice name.
    var slicesByService: [KubeObjectKey: [KubeEndpointSlice]] = [:]

    struct RouteKey: Hashable {
        var host: HostPattern
        var path: String
    }

    /// A route one Service asks for, before the routes of the Services before it are known.
    struct RouteClaim: Hashable, Sendable {
        var route: KubeRoutingPlan.PlannedRoute
        /// On the TLS listener (an `lb.sslTerm` Service with a TLS listener).
        var terminated: Bool
    }

    init(options: KubeTranslatorOptions) {
        self.options = options
        plan = KubeRoutingPlan(
            httpAddress: options.httpAddress, defaultStatus: 404, services: [], routes: [], tcpListeners: [])
        plan.accessLog = options.accessLog
        plan.http2 = options.http2
    }

    mutating func build(_ cache: KubeCache) {
        if (400...599).contains(options.defaultReturnCode) {
            plan.defaultStatus = options.defaultReturnCode
        } else {
            warn(
                "option", "--default-return-code",
                "\(options.defaultReturnCode) is not a status from 400 to 599; using 404")
        }
        if let address = options.tlsAddress {
            if let slot = options.tlsContext {
                let current = slot.current
                plan.tls = KubeRoutingPlan.PlannedTLSListener(
                    address: address, contextVersion: current.version, context: current.handle)
            } else {
                warn("option", "--tls-address", "\(address) has no certificate; no TLS listener")
            }
        }
        let slices = cache.endpointSlices.items.values
            .filter { inScope($0.metadata.namespace) }
            .sorted { $0.key < $1.key }
        for slice in slices {
            guard let serviceName = slice.serviceName else { continue }
            slicesByService[KubeObjectKey(namespace: slice.key.namespace, name: serviceName), default: []].append(slice)
        }
        let kubeServices = cache.services.items.values
            .filter { inScope($0.metadata.namespace) }
            .sorted { $0.key < $1.key }
        for service in kubeServices where service.metadata.annotations?[KubeAnnotation.host] != nil {
            exposeHTTP(service)
        }
        exposeTCP(cache.services.items)
        plan.services = services.values.sorted { $0.key < $1.key }
        // A Service read twice (HTTP and --tcp-services) would report the same thing twice.
        var seen: Set<KubeWarning> = []
        warnings = warnings.filter { seen.insert($0).inserted }
    }

    func inScope(_ namespace: String?) -> Bool {
        guard let filter = options.namespace else { return true }
        return namespace == filter
    }

    mutating func warn(_ kind: String, _ object: String, _ message: String) {
        warnings.append(KubeWarning(kind: kind, object: object, message: message))
    }

    // MARK: HTTP

    /// Routes for every host of the `lb.host` annotation of `service`: on the HTTP listener, or
    /// for `lb.sslTerm` Services on the TLS listener when there is one.
    mutating func exposeHTTP(_ service: KubeService) {
        _ = routeClaims(service, take: true)
    }

    /// The routes `service` asks for, in annotation order, its planned services made on the
    /// way. `take`: each is taken (or warned about) at once, as `take(_:object:)` does, and
    /// the result is empty.
    mutating func routeClaims(_ service: KubeService, take: Bool) -> [RouteClaim] {
        let settings = readSettings(service)
        let terminated = settings.sslTerm && plan.tls != nil
        guard terminated || plan.httpAddress != nil else {
            warn("Service", "\(service.key)", "has lb.host but there is no HTTP listener; not exposed")
            return []
        }
        let hosts = readHosts(service)
        if hosts.isEmpty {
            warn("Service", "\(service.key)", "lb.host names no usable host; not exposed")
            return []
        }
        var claims: [RouteClaim] = []
        for (host, portSelector) in hosts {
            guard let port = servicePort(service, selector: portSelector, origin: "lb.host") else { continue }
            let key = plannedService(service, port: port, settings: settings)
            // Terminated: the name on any port (see the type's notes).
            let routeHost = terminated ? HostPattern(name: host.name, wildcard: host.wildcard) : host
            let claim = RouteClaim(
                route: KubeRoutingPlan.PlannedRoute(host: routeHost, pathPrefix: settings.pathPrefix, service: key),
                terminated: terminated)
            if take {
                self.take(claim, object: service.key)
            } else {
                claims.append(claim)
            }
        }
        return claims
    }

    /// Adds the claimed route unless an earlier Service (or host of the same one) took its
    /// (host, path) on that listener; then warns when the owner is another service.
    mutating func take(_ claim: RouteClaim, object: KubeObjectKey) {
        let route = claim.route
        let routeKey = RouteKey(host: route.host, path: route.pathPrefix)
        let owner = claim.terminated ? terminatedRouteOwners[routeKey] : routeOwners[routeKey]
        if let owner {
            if owner != route.service { warnings.append(Self.conflict(claim, heldBy: owner, object: object)) }
            return
        }
        if claim.terminated {
            terminatedRouteOwners[routeKey] = route.service
            plan.terminatedRoutes.append(route)
        } else {
            routeOwners[routeKey] = route.service
            plan.routes.append(route)
        }
    }

    /// The warning for `claim` of Service `object`, whose (host, path) `owner` holds.
    static func conflict(_ claim: RouteClaim, heldBy owner: String, object: KubeObjectKey) -> KubeWarning {
        let listener = claim.terminated ? " on the TLS listener" : ""
        return KubeWarning(
            kind: "Service", object: "\(object)",
            message: "host '\(claim.route.host)' with path '\(claim.route.pathPrefix)' is already routed to \(owner)"
                + "\(listener); ignored")
    }

    // MARK: TCP

    /// A listener for every `--tcp-services` entry. An entry whose Service or port does not
    /// exist (yet) still gets its listener, with a service that has no endpoints, so the
    /// socket stays open while the Service comes and goes.
    mutating func exposeTCP(_ all: [KubeObjectKey: KubeService]) {
        let listenIP = options.httpAddress?.ip ?? .v4(0)
        var taken: Set<UInt16> = []
        if let http = options.httpAddress { taken.insert(http.port) }
        if let tls = plan.tls { taken.insert(tls.address.port) }
        var listeners: [KubeRoutingPlan.PlannedTCPListener] = []
        for entry in options.tcpServices {
            let namespace = entry.namespace ?? options.namespace ?? "default"
            let object = KubeObjectKey(namespace: namespace, name: entry.name)
            guard entry.listenPort > 0, taken.insert(entry.listenPort).inserted else {
                warn("option", "--tcp-services", "\(entry): port \(entry.listenPort) is already in use; ignored")
                continue
            }
            let address = SocketAddress(ip: listenIP, port: entry.listenPort)
            var key = "\(object):\(entry.port)"
            if let service = all[object], inScope(namespace) {
                if let port = servicePort(service, selector: entry.port, origin: "--tcp-services", fallback: false) {
                    key = plannedService(service, port: port, settings: readSettings(service))
                }
            } else {
                warn("option", "--tcp-services", "\(entry): no such Service; listening with no endpoints")
            }
            if services[key] == nil {
                services[key] = KubeRoutingPlan.PlannedService(
                    key: key, algorithm: options.balanceAlgorithm, endpoints: [])
            }
            listeners.append(KubeRoutingPlan.PlannedTCPListener(address: address, service: key))
        }
        plan.tcpListeners = listeners.sorted { SocketAddress.stableOrder($0.address, $1.address) }
    }

    // MARK: Services

    /// The planned service for one port of `service`, made on first use. Returns its key.
    mutating func plannedService(_ service: KubeService, port: KubeService.Port, settings: Settings) -> String {
        let key = "\(service.key):\(port.port)"
        if services[key] != nil { return key }
        let slices = slicesByService[service.key] ?? []
        services[key] = KubeRoutingPlan.PlannedService(
            key: key, algorithm: settings.algorithm, endpoints: endpoints(of: port, in: slices),
            clientIPTimeoutSeconds: settings.clientIPTimeoutSeconds, sslTerm: settings.sslTerm)
        services[key]?.upstreamProtocol = Self.upstreamProtocol(port.appProtocol)
        return key
    }

    /// The HTTP version a Service port's `appProtocol` asks for: HTTP/2 with prior knowledge
    /// for `kubernetes.io/h2c` (the standard name, KEP-3726), `h2c` and `grpc`; HTTP/1.1
    /// otherwise (`http`, `kubernetes.io/ws`, none).
    static func upstreamProtocol(_ appProtocol: String?) -> UpstreamProtocol {
        switch appProtocol?.lowercased() {
        case "kubernetes.io/h2c", "h2c", "grpc": .h2c
        default: .http1
        }
    }

    /// The TCP port of `service` that `selector` names (a port name or number); nil selector:
    /// the first TCP port. A selector that names no port falls back to the first one (with a
    /// warning) when `fallback`, else gives nil.
    mutating func servicePort(
        _ service: KubeService, selector: String?, origin: String, fallback: Bool = true
    ) -> KubeService.Port? {
        let tcpPorts = (service.spec?.ports ?? []).filter {
            ($0.protocol ?? "TCP") == "TCP" && (1...65535).contains($0.port)
        }
        guard let first = tcpPorts.first else {
            warn("Service", "\(service.key)", "has no TCP port; not exposed")
            return nil
        }
        guard let selector else { return first }
        if let port = tcpPorts.first(where: { $0.name == selector || String($0.port) == selector }) {
            return port
        }
        if fallback {
            warn(
                "Service", "\(service.key)",
                "\(origin) names port '\(selector)', which the Service does not have; using port \(first.port)")
            return first
        }
        warn("Service", "\(service.key)", "\(origin) names port '\(selector)', which the Service does not have")
        return nil
    }
}
