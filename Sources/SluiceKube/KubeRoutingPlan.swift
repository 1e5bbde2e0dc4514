import SluiceRouting

/// Everything about the cluster that decides routing, in a canonical order, and nothing else:
/// two plans are equal exactly when the snapshots built from them route alike. A change
/// that leaves the plan equal (a leader-election update in kube-system, a Service without
/// annotation, a new resourceVersion on an unchanged object) needs no new snapshot.
public struct KubeRoutingPlan: Sendable, Hashable {
    /// One exposed Service port.
    public struct PlannedService: Sendable, Hashable {
        /// `namespace/name:port`, the port being the Service port's number.
        public var key: String
        public var algorithm: Algorithm
        /// Unique, sorted (IPv4 before IPv6, then by address and port).
        public var endpoints: [SocketAddress]
        /// `sessionAffinity: ClientIP`'s timeout (seconds) when it chose `source`. Recorded for
        /// the day stickiness expires; the source hash does not expire today.
        public var clientIPTimeoutSeconds: Int?
        /// `lb.sslTerm: "true"`: served on the TLS listener (terminated) when there is one,
        /// over plain HTTP otherwise.
        public var sslTerm: Bool

        public init(
            key: String, algorithm: Algorithm, endpoints: [SocketAddress], clientIPTimeoutSeconds: Int? = nil,
            sslTerm: Bool = false
        ) {
            self.key = key
            self.algorithm = algorithm
            self.endpoints = endpoints
            self.clientIPTimeoutSeconds = clientIPTimeoutSeconds
            self.sslTerm = sslTerm
        }
    }

    public struct PlannedRoute: Sendable, Hashable {
        public var host: HostPattern
        public var pathPrefix: String
        /// A `PlannedService.key`.
        public var service: String

        public init(host: HostPattern, pathPrefix: String, service: String) {
            self.host = host
            self.pathPrefix = pathPrefix
            self.service = service
        }
    }

    /// The terminating TLS listener (`--tls-address` with certificates).
    public struct PlannedTLSListener: Sendable, Hashable {
        public var address: SocketAddress
        /// `KubeTLSContextSlot.Current.version` of `context`: a new one (re-read certificates)
        /// makes a new plan.
        public var contextVersion: UInt64
        /// Carried into the snapshot; not part of equality, hashing or `canonicalText`.
        public var context: TLSContextHandle

        public init(address: SocketAddress, contextVersion: UInt64, context: TLSContextHandle) {
            self.address = address
            self.contextVersion = contextVersion
            self.context = context
        }

        public static func == (lhs: PlannedTLSListener, rhs: PlannedTLSListener) -> Bool {
            lhs.address == rhs.address && lhs.contextVersion == rhs.contextVersion
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(address)
            hasher.combine(contextVersion)
        }
    }

    public struct PlannedTCPListener: Sendable, Hashable {
        public var address: SocketAddress
        /// A `PlannedService.key`.
        public var service: String

        public init(address: SocketAddress, service: String) {
            self.address = address
            self.service = service
        }
    }

    public var httpAddress: SocketAddress?
    public var defaultStatus: UInt16
    /// Sorted by key.
    public var services: [PlannedService]
    /// The http listener's routes. Services in key order, each one's hosts in annotation
    /// order; unique (host, path).
    public var routes: [PlannedRoute]
    /// nil: no TLS listener, and `terminatedRoutes` is empty.
    public var tls: PlannedTLSListener? = nil
    /// The routes of requests decrypted on the TLS listener (`lb.sslTerm` Services), in the
    /// same order as `routes`; unique (host, path); hosts carry no port (see `PlanBuilder`).
    /// Each host is also a `terminate` entry of the listener's server name table.
    public var terminatedRoutes: [PlannedRoute] = []
    /// Sorted by listen address.
    public var tcpListeners: [PlannedTCPListener]
    /// Every listener's access-log policy (the command line's; not part of `canonicalText`).
    public var accessLog = AccessLogPolicy()

    /// The plan as text, one line per item, in a fixed order (what `contentHash` digests).
    public var canonicalText: String {
        var lines: [String] = []
        lines.append("http \(httpAddress.map(String.init(describing:)) ?? "-") default \(defaultStatus)")
        for route in routes { lines.append("route \(route.host) \(route.pathPrefix) \(route.service)") }
        if let tls {
            lines.append("tls \(tls.address) certificates v\(tls.contextVersion) default terminate \(defaultStatus)")
            for route in terminatedRoutes {
                lines.append("terminate \(route.host) \(route.pathPrefix) \(route.service)")
            }
        }
        for listener in tcpListeners { lines.append("tcp \(listener.address) \(listener.service)") }
        for service in services {
            let affinity = service.clientIPTimeoutSeconds.map { " clientIP \($0)s" } ?? ""
            lines.append("service \(service.key) \(service.algorithm.rawValue)\(affinity) sslTerm \(service.sslTerm)")
            for endpoint in service.endpoints { lines.append("  \(endpoint)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// FNV-1a (64 bits) of `canonicalText`: the same across runs and processes (unlike
    /// `hashValue`), so it can be logged and compared between builds of the same inputs.
    public var contentHash: UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in canonicalText.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }

    /// The snapshot the loops read. Services in plan order, their endpoints flattened in the
    /// same order, the HTTP listener (if any) first, then the TLS listener (if any), then the
    /// TCP listeners. The TLS listener terminates everything: its server name table has a
    /// `terminate` entry per host and a default that terminates with the first certificate;
    /// the decrypted requests are routed by host and path, the rest answered `defaultStatus`.
    /// Every listener gets `accessLog`.
    public func snapshot(
        generation: UInt64, timeouts: Timeouts = Timeouts(), limits: Limits = Limits(), tuning: Tuning = Tuning()
    ) -> RoutingSnapshot {
        var services: [Service] = []
        var endpoints: [Endpoint] = []
        var indexByKey: [String: Int] = [:]
        for (index, planned) in self.services.enumerated() {
            let start = endpoints.count
            endpoints += planned.endpoints.map { Endpoint(address: $0, service: index) }
            services.append(
                Service(name: planned.key, algorithm: planned.algorithm, endpoints: start..<endpoints.count))
            indexByKey[planned.key] = index
        }
        var listeners: [Listener] = []
        var routeTables: [HTTPRouteTable] = []
        if let httpAddress {
            let routes = self.routes.map {
                HTTPRoute(host: $0.host, pathPrefix: Array($0.pathPrefix.utf8), service: indexByKey[$0.service]!)
            }
            listeners.append(
                Listener(name: "http", address: httpAddress, protocol: .http, service: -1, routes: routeTables.count))
            routeTables.append(HTTPRouteTable(routes: routes, defaultBackend: DefaultBackend(status: defaultStatus)))
        }
        var tlsContexts: [TLSContextHandle] = []
        if let tls {
            var serverNames: [HTTPRoute] = []
            var seen: Set<HostPattern> = []
            for route in terminatedRoutes where seen.insert(route.host).inserted {
                serverNames.append(HTTPRoute(host: route.host, service: -1, terminate: true))
            }
            let requests = terminatedRoutes.map {
                HTTPRoute(host: $0.host, pathPrefix: Array($0.pathPrefix.utf8), service: indexByKey[$0.service]!)
            }
            listeners.append(
                Listener(
                    name: "tls", address: tls.address, protocol: .tls, service: -1, routes: routeTables.count,
                    tlsContext: tlsContexts.count, terminatedRoutes: routeTables.count + 1))
            routeTables.append(
                HTTPRouteTable(
                    routes: serverNames, defaultBackend: DefaultBackend(status: defaultStatus, terminate: true)))
            routeTables.append(HTTPRouteTable(routes: requests, defaultBackend: DefaultBackend(status: defaultStatus)))
            tlsContexts.append(tls.context)
        }
        for listener in tcpListeners {
            listeners.append(
                Listener(
                    name: "tcp-\(listener.address)", address: listener.address, protocol: .tcp,
                    service: indexByKey[listener.service]!))
        }
        for index in listeners.indices { listeners[index].accessLog = accessLog }
        return RoutingSnapshot(
            generation: generation, listeners: listeners, services: services, endpoints: endpoints,
            routeTables: routeTables, tlsContexts: tlsContexts, timeouts: timeouts, limits: limits, tuning: tuning)
    }
}

extension SocketAddress {
    /// IPv4 before IPv6, then by address, then by port: a stable order for endpoint lists.
    static func stableOrder(_ lhs: SocketAddress, _ rhs: SocketAddress) -> Bool {
        func rank(_ address: SocketAddress) -> (Int, UInt64, UInt64, UInt16) {
            switch address.ip {
            case .v4(let value): return (0, 0, UInt64(value), address.port)
            case .v6(let high, let low): return (1, high, low, address.port)
            }
        }
        return rank(lhs) < rank(rhs)
    }
}
