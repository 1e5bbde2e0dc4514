import SluiceRouting
import SluiceTLS
import Yams

/// The `services` and `listeners` sections, their cross-references, and the snapshot built
/// from them.
extension ConfigDecoder {
    /// A service entry that passed its own checks.
    struct ServiceEntry {
        var name: String
        var algorithm: Algorithm
        var endpoints: [SocketAddress]
        var cookieName: [UInt8]?
        var proxyProtocol: ProxyVersion?
        var upstreamProtocol: UpstreamProtocol = .http1
        var upstreamTLS: UpstreamTLS? = nil
    }

    /// What the `services` section yielded: the entries that passed, and whether every entry
    /// has a known name (when not, a listener's unknown service may be a consequence, not news).
    struct ServiceTable {
        var entries: [ServiceEntry]
        var allNamed: Bool
    }

    /// Every service, in file order. Checks names (present, unique), the algorithm, and each
    /// endpoint (an address with a port, unique within its service). An empty or missing
    /// endpoint list is accepted: the service then refuses connections.
    mutating func decodeServices(_ node: Node) -> ServiceTable? {
        guard let items = sequence(node, path: "services") else { return nil }
        var table = ServiceTable(entries: [], allNamed: true)
        var firstIndexByName: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            let path = "services[\(index)]"
            let known = ["name", "algorithm", "endpoints", "cookie", "proxyProtocol", "protocol", "tls"]
            guard let entry = fields(item, path: path, known: known) else {
                table.allNamed = false
                continue
            }
            let name = required(entry, "name").flatMap { self.name($0, path: "\(path).name") }
            if let name, let nameNode = entry["name"] {
                if let first = firstIndexByName[name] {
                    report("\(path).name", at: nameNode, "service name '\(name)' is already used by services[\(first)]")
                } else {
                    firstIndexByName[name] = index
                }
            }
            if name == nil { table.allNamed = false }
            // A bad algorithm was reported; the entry still counts so listeners naming it are
            // not reported too (nothing is built from a file with diagnostics).
            let algorithm = entry["algorithm"].map { self.algorithm($0, path: "\(path).algorithm") } ?? .roundrobin
            let endpoints = entry["endpoints"].map { self.endpoints($0, path: "\(path).endpoints") } ?? []
            let cookieName = entry["cookie"].flatMap {
                self.cookieName($0, path: "\(path).cookie", algorithm: algorithm)
            }
            let proxyProtocol = entry["proxyProtocol"].flatMap {
                self.proxyVersion($0, path: "\(path).proxyProtocol")
            }
            let upstreamProtocol = entry["protocol"].flatMap {
                self.upstreamProtocol($0, path: "\(path).protocol")
            }
            let upstreamTLS = self.upstreamTLS(entry, path: path, protocol: upstreamProtocol)
            if let name {
                table.entries.append(
                    ServiceEntry(
                        name: name, algorithm: algorithm ?? .roundrobin, endpoints: endpoints, cookieName: cookieName,
                        proxyProtocol: proxyProtocol, upstreamProtocol: upstreamProtocol ?? .http1,
                        upstreamTLS: upstreamTLS))
            }
        }
        return table
    }

    /// A service's `protocol`: the HTTP version its endpoints speak (`http/1.1`, `h2c`, `h2`).
    mutating func upstreamProtocol(_ node: Node, path: String) -> UpstreamProtocol? {
        guard let text = string(node, path: path) else { return nil }
        if let value = UpstreamProtocol(rawValue: text) { return value }
        let allowed = UpstreamProtocol.allCases.map(\.rawValue).joined(separator: ", ")
        report(path, at: node, "unknown protocol '\(text)' (expected one of: \(allowed))")
        return nil
    }

    /// What the `listeners` section yielded: the listeners, the route tables of the HTTP and
    /// TLS ones, and the TLS contexts of those that terminate.
    struct ListenerTable {
        var listeners: [Listener] = []
        var routeTables: [HTTPRouteTable] = []
        var tlsContexts: [TLSContextHandle] = []
    }

    /// Every listener, in file order. `services` is nil when that section could not be read;
    /// service names are then not checked, to avoid a report per listener for one cause.
    /// `accessLog`: whether the file has a top-level `accessLog` section.
    mutating func decodeListeners(_ node: Node, services: ServiceTable?, accessLog: Bool) -> ListenerTable? {
        guard let items = sequence(node, path: "listeners") else { return nil }
        guard !items.isEmpty else {
            report("listeners", at: node, "at least one listener is required")
            return nil
        }
        var table = ListenerTable()
        var firstIndexByAddress: [SocketAddress: Int] = [:]
        for (index, item) in items.enumerated() {
            let path = "listeners[\(index)]"
            let known = [
                "name", "address", "protocol", "service", "routes", "default", "acceptProxy", "certificates",
                "accessLog", "accessLogSample", "http2",
            ]
            guard let entry = fields(item, path: path, known: known) else { continue }
            let givenName = entry["name"].map { self.name($0, path: "\(path).name") }
            let address = required(entry, "address").flatMap { self.address($0, path: "\(path).address") }
            if let address, let addressNode = entry["address"] {
                if let first = firstIndexByAddress[address] {
                    report(
                        "\(path).address", at: addressNode, "address \(address) is already used by listeners[\(first)]")
                } else {
                    firstIndexByAddress[address] = index
                }
            }
            let proto = entry["protocol"].map { self.listenerProtocol($0, path: "\(path).protocol") } ?? .tcp
            var service: Int? = -1
            var routes: HTTPRouteTable? = nil
            var terminatedRoutes: HTTPRouteTable? = nil
            var context: TLSContextHandle? = nil
            if let node = entry["certificates"], let proto, proto != .tls {
                report(
                    "\(path).certificates", at: node,
                    "only tls listeners terminate TLS (this one is \(proto.rawValue)); use 'protocol: tls'")
            }
            switch proto {
            case .tcp?:
                service = required(entry, "service").flatMap {
                    self.serviceReference($0, path: "\(path).service", in: services)
                }
                for (field, what) in [("routes", "routes"), ("default", "a default")] {
                    if let node = entry[field] {
                        report(
                            "\(path).\(field)", at: node, "only http and tls listeners have \(what) (this one is tcp)")
                    }
                }
            case .http?:
                refuseService(entry, path: path, kind: "an http")
                routes = httpRoutes(entry, path: path, services: services)
            case .tls?:
                refuseService(entry, path: path, kind: "a tls")
                let certificates = entry["certificates"].map {
                    certificateFiles($0, path: "\(path).certificates")
                }
                let tables = tlsRoutes(entry, path: path, services: services, terminating: certificates != nil)
                routes = tables?.serverNames
                terminatedRoutes = tables?.terminated
                if let node = entry["certificates"], let tables, tables.terminated == nil {
                    report(
                        "\(path).certificates", at: node,
                        "no route or default has 'terminate: true', so these certificates would never be used")
                } else if let node = entry["certificates"], let files = certificates.flatMap({ $0 }) {
                    context = tlsContext(files, node: node, path: "\(path).certificates")
                }
            case nil:
                // The protocol was reported; which fields it needs is unknown.
                _ = entry["service"].flatMap { self.serviceReference($0, path: "\(path).service", in: services) }
            }
            // Absent: none; present but invalid: nil (reported).
            let acceptProxy = entry["acceptProxy"].map { self.acceptProxy($0, path: "\(path).acceptProxy") } ?? []
            let accessLogPolicy = accessLogPolicy(entry, path: path, configured: accessLog)
            let http2 = self.http2(entry, path: path, protocol: proto, terminating: entry["certificates"] != nil)
            // A name that was given but is invalid was reported; an absent one gets a default.
            if case .some(.none) = givenName { continue }
            guard let address, let proto, let service, let acceptProxy, let accessLogPolicy, let http2 else { continue }
            let name = givenName.flatMap { $0 } ?? "\(proto.rawValue)-\(address)"
            var routeIndex = -1
            if proto == .http || proto == .tls {
                guard let routes else { continue }
                routeIndex = table.routeTables.count
                table.routeTables.append(routes)
            }
            // Terminating: a context and the table of decrypted requests, or nothing at all.
            var contextIndex = -1
            var terminatedIndex = -1
            if entry["certificates"] != nil, proto == .tls {
                guard let context, let terminatedRoutes else { continue }
                contextIndex = table.tlsContexts.count
                table.tlsContexts.append(context)
                terminatedIndex = table.routeTables.count
                table.routeTables.append(terminatedRoutes)
            }
            table.listeners.append(
                Listener(
                    name: name, address: address, protocol: proto, service: service, routes: routeIndex,
                    acceptProxy: acceptProxy, tlsContext: contextIndex, terminatedRoutes: terminatedIndex,
                    accessLog: accessLogPolicy, http2: http2))
        }
        return table
    }

    /// `http2: true`: HTTP/2 for the listener's HTTP traffic (ALPN `h2` on a tls listener's
    /// terminated sessions, prior knowledge on an http listener). Absent: false; nil when
    /// invalid (reported).
    private mutating func http2(_ entry: Fields, path: String, protocol proto: ListenerProtocol?, terminating: Bool)
        -> Bool?
    {
        guard let node = entry["http2"] else { return false }
        guard let enabled = bool(node, path: "\(path).http2") else { return nil }
        guard enabled, let proto else { return enabled }
        switch proto {
        case .tcp:
            report("\(path).http2", at: node, "only http and tls listeners speak HTTP/2 (this one is tcp)")
            return nil
        case .tls where !terminating:
            report(
                "\(path).http2", at: node,
                "HTTP/2 needs TLS terminated here: give the listener certificates and a route with 'terminate: true'")
            return nil
        case .http, .tls:
            return true
        }
    }

    /// Listeners that route by name take their services from routes and default, not from
    /// `service`.
    private mutating func refuseService(_ entry: Fields, path: String, kind: String) {
        guard let node = entry["service"] else { return }
        report(
            "\(path).service", at: node, "\(kind) listener has no service; name services in its routes or its default")
    }

    /// The snapshot for checked sections: services in file order, their endpoints flattened in
    /// the same order, each service's range into them.
    static func snapshot(
        generation: UInt64, listeners: ListenerTable, services table: ServiceTable,
        timeouts: Timeouts, limits: Limits, tuning: Tuning
    ) -> RoutingSnapshot {
        var services: [Service] = []
        var endpoints: [Endpoint] = []
        for (index, entry) in table.entries.enumerated() {
            let start = endpoints.count
            endpoints += entry.endpoints.map { Endpoint(address: $0, service: index) }
            services.append(
                Service(
                    name: entry.name, algorithm: entry.algorithm, endpoints: start..<endpoints.count,
                    cookieName: entry.cookieName, proxyProtocol: entry.proxyProtocol))
            services[services.count - 1].upstreamProtocol = entry.upstreamProtocol
            services[services.count - 1].upstreamTLS = entry.upstreamTLS
        }
        return RoutingSnapshot(
            generation: generation, listeners: listeners.listeners, services: services, endpoints: endpoints,
            routeTables: listeners.routeTables, tlsContexts: listeners.tlsContexts, timeouts: timeouts, limits: limits,
            tuning: tuning
        )
    }
}

// MARK: - Fields

extension ConfigDecoder {
    /// `HOST:PORT` with a port from 1 to 65535, as `SocketAddress.parse` reads it.
    mutating func address(_ node: Node, path: String) -> SocketAddress? {
        let hint = " (quote IPv6 addresses: \"[::1]:80\")"
        guard let text = string(node, path: path, hint: hint) else { return nil }
        switch SocketAddress.parse(text) {
        case .success(let address):
            return address
        case .failure(let error):
            report(path, at: node, "invalid address '\(text)': \(error)")
            return nil
        }
    }

    mutating func algorithm(_ node: Node, path: String) -> Algorithm? {
        guard let text = string(node, path: path) else { return nil }
        if let algorithm = Algorithm(rawValue: text) { return algorithm }
        let allowed = Algorithm.allCases.map(\.rawValue).joined(separator: ", ")
        report(path, at: node, "unknown algorithm '\(text)' (expected one of: \(allowed))")
        return nil
    }

    mutating func listenerProtocol(_ node: Node, path: String) -> ListenerProtocol? {
        guard let text = string(node, path: path) else { return nil }
        if let proto = ListenerProtocol(rawValue: text) { return proto }
        let allowed = ListenerProtocol.allCases.map(\.rawValue).joined(separator: ", ")
        report(path, at: node, "unknown protocol '\(text)' (expected one of: \(allowed))")
        return nil
    }

    /// The endpoints of one service, in order; duplicates are reported against the first.
    mutating func endpoints(_ node: Node, path: String) -> [SocketAddress] {
        guard let items = sequence(node, path: path) else { return [] }
        var addresses: [SocketAddress] = []
        var firstIndexByAddress: [SocketAddress: Int] = [:]
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let address = address(item, path: itemPath) else { continue }
            if let first = firstIndexByAddress[address] {
                report(itemPath, at: item, "endpoint \(address) is already listed at \(path)[\(first)]")
                continue
            }
            firstIndexByAddress[address] = index
            addresses.append(address)
        }
        return addresses
    }

    /// The index of the service a listener names. When `services` is incomplete an unknown
    /// name is not reported (its entry may be the one that failed) and nil is returned.
    mutating func serviceReference(_ node: Node, path: String, in services: ServiceTable?) -> Int? {
        guard let name = self.name(node, path: path), let services else { return nil }
        if let index = services.entries.firstIndex(where: { $0.name == name }) { return index }
        guard services.allNamed else { return nil }
        let defined = services.entries.map(\.name)
        let known = defined.isEmpty ? "no services are defined" : "defined: \(defined.joined(separator: ", "))"
        report(path, at: node, "no service named '\(name)' (\(known))")
        return nil
    }
}
