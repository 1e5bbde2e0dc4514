import SluiceAdmin
import SluiceReactor
import SluiceRouting

/// Hand-built snapshots and samples for the renderer and server tests.
enum Fixtures {
    static func address(_ text: String) -> SocketAddress {
        switch SocketAddress.parse(text, allowPortZero: true) {
        case .success(let address): return address
        case .failure(let error): fatalError("\(text): \(error)")
        }
    }

    /// A snapshot with one listener per `listeners` entry (http, routes table 0, on
    /// 127.0.0.1:8080+i) and the services given as name → endpoint addresses.
    static func snapshot(
        generation: UInt64, listeners: [String] = ["web"], services: [(String, [String])]
    ) -> RoutingSnapshot {
        var flatServices: [Service] = []
        var endpoints: [Endpoint] = []
        for (name, addresses) in services {
            let start = endpoints.count
            for text in addresses { endpoints.append(Endpoint(address: address(text), service: flatServices.count)) }
            flatServices.append(Service(name: name, algorithm: .roundrobin, endpoints: start..<endpoints.count))
        }
        let routes = flatServices.indices.map { index in
            try! HTTPRoute(host: "\(index).example.com", service: index)
        }
        return RoutingSnapshot(
            generation: generation,
            listeners: listeners.enumerated().map { i, name in
                Listener(
                    name: name, address: address("127.0.0.1:\(8080 + i)"), protocol: .http, service: -1, routes: 0)
            },
            services: flatServices, endpoints: endpoints, routeTables: [HTTPRouteTable(routes: routes)])
    }

    /// The small sample the exact-text tests render: listener `web`, service `api` with two
    /// endpoints (the second marked down), over two loops.
    static func small() -> (MetricsAggregate, ProcessView) {
        let snapshot = snapshot(generation: 7, services: [("api", ["10.0.0.1:80", "10.0.0.2:80"])])
        var a = LoopMetricsSample.empty(loop: 0, snapshot: snapshot)
        var b = LoopMetricsSample.empty(loop: 1, snapshot: snapshot)
        a.frontends.add(0, .connections, 3)
        b.frontends.add(0, .connections, 1)
        a.frontends.add(0, .httpRequests, 4)
        b.frontends.add(0, .httpRequests, 1)
        a.backends.add(0, .httpRequests, 4)
        b.backends.add(0, .httpRequests, 1)
        a.backends.add(0, .responses2xx, 3)
        a.backends.add(0, .responses5xx, 1)
        b.backends.add(0, .responses5xx, 1)
        a.servers.add(0, .httpRequests, 3)
        b.servers.add(1, .httpRequests, 2)
        for _ in 0..<3 { a.requestDuration.record(0, micros: 20_000) }
        for _ in 0..<2 { b.requestDuration.record(0, micros: 300_000) }
        b.endpointDown[1] = true
        a.closeReasons[Int(CloseReason.clientClosed.rawValue)] = 2
        b.closeReasons[Int(CloseReason.clientClosed.rawValue)] = 1
        a.liveConnections = 2
        b.liveConnections = 1
        let process = ProcessView(
            startTimeMicros: 1_700_000_000_500_000, workers: 2, reloads: 3, reloadFailures: 1, accessLogTaken: 9,
            accessLogDropped: 0)
        return (MetricsAggregate([a, b])!, process)
    }

    static func render(_ metrics: MetricsAggregate, _ process: ProcessView, _ format: MetricsFormat = .prometheus)
        -> String
    {
        let out = ByteOutput()
        MetricsRenderer(format: format, into: out).render(metrics, process: process)
        return out.text
    }

    /// The lines of the family `name` (from its `# HELP` to the next family's).
    static func block(_ name: String, in text: String) -> String {
        var lines: [Substring] = []
        var inside = false
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                inside = line.hasPrefix("# HELP \(name) ")
            } else if line.hasPrefix("# EOF") {
                inside = false
            }
            if inside { lines.append(line) }
        }
        return lines.joined(separator: "\n")
    }
}
