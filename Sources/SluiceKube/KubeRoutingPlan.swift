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
        /// How requests reach the endpoints: the Service port's `appProtocol`
        /// `kubernetes.io/h2c` (or `h2c`, `grpc`) makes them HTTP/2 streams.
        public var upstreamProtocol: UpstreamProtocol = .http1

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
    /// HTTP/2 from clients on the http and TLS listeners (the command line's; not part of
    /// `canonicalText`).
    public var http2 = false

    /// The plan as text, one line per item, in a fixed order (for people and tests; `contentHash`
    /// digests the same content piece by piece).
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
            let proto = service.upstreamProtocol == .http1 ? "" : " protocol \(service.upstreamProtocol.rawValue)"
            lines.append(
                "service \(service.key) \(service.algorithm.rawValue)\(affinity) sslTerm \(service.sslTerm)\(proto)")
            for endpoint in service.endpoints { lines.append("  \(endpoint)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A digest of everything `canonicalText` holds, the same across runs and processes
    /// (unlike `hashValue`), so it can be logged and compared between builds of the same
    /// inputs. Built to be kept up to date piece by piece (`KubeIncrementalTranslator`): the
    /// header's digest plus, wrapping, one mixed FNV-1a digest per service (its key, settings
    /// and endpoints) and per route (listener, host, path, service). Services and routes are
    /// unique by key, and the order of routes does not change how requests are routed, so a
    /// sum over them identifies the plan as its sorted text does.
    public var contentHash: UInt64 {
        var hash = headerDigest
        for service in services { hash &+= Self.digest(service) }
        for route in routes { hash &+= Self.digest(route, terminated: false) }
        for route in terminatedRoutes { hash &+= Self.digest(route, terminated: true) }
        return hash
    }

    /// The part of `contentHash` that is not services or routes: the listeners and the
    /// default status.
    public var headerDigest: UInt64 {
        var fnv = FNV1a()
        fnv.add(0x68)
        if let httpAddress { fnv.add(httpAddress) } else { fnv.add(0) }
        fnv.add(UInt64(defaultStatus))
        if let tls {
            fnv.add(0x74)
            fnv.add(tls.address)
            fnv.add(tls.contextVersion)
        }
        for listener in tcpListeners {
            fnv.add(0x63)
            fnv.add(listener.address)
            fnv.add(listener.service)
        }
        return SocketAddress.mix(fnv.hash)
    }

    /// One service's term of `contentHash`.
    public static func digest(_ service: PlannedService) -> UInt64 {
        var fnv = FNV1a()
        fnv.add(0x73)
        fnv.add(service.key)
        fnv.add(service.algorithm.rawValue)
        fnv.add(UInt64(bitPattern: Int64(service.clientIPTimeoutSeconds ?? -1)))
        fnv.add(service.sslTerm ? 1 : 0)
        if service.upstreamProtocol != .http1 { fnv.add(service.upstreamProtocol.rawValue) }
        for endpoint in service.endpoints { fnv.add(endpoint) }
        return SocketAddress.mix(fnv.hash)
    }

    /// One route's term of `contentHash`; `terminated`: a route of the TLS listener.
    public static func digest(_ route: PlannedRoute, terminated: Bool) -> UInt64 {
        var fnv = FNV1a()
        fnv.add(terminated ? 0x54 : 0x72)
        fnv.add(route.host.name)
        fnv.add(route.host.wildcard ? 1 : 0)
        fnv.add(UInt64(route.host.port ?? 0) | (route.host.port == nil ? 1 << 32 : 0))
        fnv.add(route.pathPrefix)
        fnv.add(route.service)
        return SocketAddress.mix(fnv.hash)
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
        var builder = KubeSnapshotBuilder()
        return builder.build(
            self, change: KubePlanChange(all: true), generation: generation, timeouts: timeouts, limits: limits,
            tuning: tuning)
    }

    /// The listeners, route tables and TLS contexts of a snapshot.
    struct Tables: Sendable {
        var listeners: [Listener]
        var routeTables: [HTTPRouteTable]
        var tlsContexts: [TLSContextHandle]
    }

    /// The listeners and their tables, services named by their index in `services`
    /// (`index`). See `snapshot`.
    func tables(index: (String) -> Int) -> Tables {
        var listeners: [Listener] = []
        var routeTables: [HTTPRouteTable] = []
        if let httpAddress {
            let routes = self.routes.map {
                HTTPRoute(host: $0.host, pathPrefix: Array($0.pathPrefix.utf8), service: index($0.service))
            }
            listeners.append(
                Listener(name: "http", address: httpAddress, protocol: .http, service: -1, routes: routeTables.count))
            routeTables.append(HTTPRouteTable(routes: routes, defaultBackend: DefaultBackend(status: defaultStatus)))
        }
        var tlsContexts: [TLSContextHandle] = []
        if let tls {
            let tables = tlsTables(index: index)
            listeners.append(
                Listener(
                    name: "tls", address: tls.address, protocol: .tls, service: -1, routes: routeTables.count,
                    tlsContext: tlsContexts.count, terminatedRoutes: routeTables.count + 1))
            routeTables.append(tables.serverNames)
            routeTables.append(tables.requests)
            tlsContexts.append(tls.context)
        }
        for listener in tcpListeners {
            listeners.append(
                Listener(
                    name: "tcp-\(listener.address)", address: listener.address, protocol: .tcp,
                    service: index(listener.service)))
        }
        for index in listeners.indices {
            listeners[index].accessLog = accessLog
            if listeners[index].protocol != .tcp { listeners[index].http2 = http2 }
        }
        return Tables(listeners: listeners, routeTables: routeTables, tlsContexts: tlsContexts)
    }

    /// The TLS listener's server name table (a `terminate` entry per host of
    /// `terminatedRoutes`, a default that terminates) and its table of decrypted requests.
    func tlsTables(index: (String) -> Int) -> (serverNames: HTTPRouteTable, requests: HTTPRouteTable) {
        var serverNames: [HTTPRoute] = []
        var seen: Set<HostPattern> = []
        for route in terminatedRoutes where seen.insert(route.host).inserted {
            serverNames.append(HTTPRoute(host: route.host, service: -1, terminate: true))
        }
        let requests = terminatedRoutes.map {
            HTTPRoute(host: $0.host, pathPrefix: Array($0.pathPrefix.utf8), service: index($0.service))
        }
        return (
            HTTPRouteTable(routes: serverNames, defaultBackend: DefaultBackend(status: defaultStatus, terminate: true)),
            HTTPRouteTable(routes: requests, defaultBackend: DefaultBackend(status: defaultStatus))
        )
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

/// FNV-1a (64 bits) over values fed in order; strings and byte runs end with a separator.
struct FNV1a {
    private(set) var hash: UInt64 = 0xCBF2_9CE4_8422_2325

    @inline(__always)
    mutating func byte(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }

    mutating func add(_ value: UInt64) {
        var rest = value
        for _ in 0..<8 {
            byte(UInt8(truncatingIfNeeded: rest))
            rest >>= 8
        }
    }

    mutating func add(_ text: String) {
        for unit in text.utf8 { byte(unit) }
        byte(0xFF)
    }

    mutating func add(_ bytes: [UInt8]) {
        for unit in bytes { byte(unit) }
        byte(0xFF)
    }

    mutating func add(_ address: SocketAddress) {
        switch address.ip {
        case .v4(let value):
            byte(4)
            add(UInt64(value))
        case .v6(let high, let low):
            byte(6)
            add(high)
            add(low)
        }
        add(UInt64(address.port))
    }
}
