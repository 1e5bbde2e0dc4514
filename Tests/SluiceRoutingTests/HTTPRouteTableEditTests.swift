import Testing

@testable import SluiceRouting

/// `HTTPRouteTable.replacing` equals building the table whole from the edited routes, over
/// long random chains of edits (entries left behind, slots growing, rebuilds on the way).
@Suite struct HTTPRouteTableEditTests {
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    static let hosts =
        (0..<40).map { "h\($0).example.com" } + ["*.example.com", "*.h1.example.com", "h2.example.com:8080"]
    static let paths = ["/", "/api", "/api/v1", "/static/"]

    static func randomRoute(_ r: inout Random, services: Int) throws -> HTTPRoute {
        let host = hosts[r.below(hosts.count)]
        let path = paths[r.below(paths.count)]
        switch r.below(10) {
        case 0: return try HTTPRoute(host: host, path: path, service: -1, redirectHTTPS: true, httpsPort: 8443)
        case 1: return try HTTPRoute(host: host, path: path, service: -1, terminate: true)
        case 2:
            return try HTTPRoute(
                host: host, path: path, stripPath: true, service: r.below(services),
                hstsField: HTTPRoute.hstsField(maxAge: 60))
        default: return try HTTPRoute(host: host, path: path, service: r.below(services))
        }
    }

    /// The same answer for every host and path of the pools, on ports 80 and 8080.
    static func expectSameLookups(_ a: HTTPRouteTable, _ b: HTTPRouteTable, _ context: String) {
        #expect(a.routes == b.routes, "\(context): routes")
        #expect(a.hasHSTS == b.hasHSTS, "\(context): hsts")
        #expect(a.defaultBackend == b.defaultBackend, "\(context): default")
        for host in hosts + ["x.example.com", "a.h1.example.com", "nothing.net", "H3.EXAMPLE.COM."] {
            let name = host.hasPrefix("*.") ? "w" + host.dropFirst() : Substring(host)
            for path in paths + ["/api/v1/x", "/apix", "/static"] {
                for port: UInt16 in [80, 8080] {
                    let lookups = Array(name.utf8).withUnsafeBytes { h in
                        Array(path.utf8).withUnsafeBytes { p in
                            (
                                a.lookup(host: h, path: p, defaultPort: port),
                                b.lookup(host: h, path: p, defaultPort: port),
                                a.lookupRoute(host: h, path: p, defaultPort: port),
                                b.lookupRoute(host: h, path: p, defaultPort: port)
                            )
                        }
                    }
                    #expect(lookups.0 == lookups.1, "\(context): \(name)\(path) port \(port)")
                    #expect(lookups.2 == lookups.3, "\(context): route of \(name)\(path) port \(port)")
                }
            }
        }
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func chainsOfEditsEqualWholeBuilds(seed: UInt64) throws {
        var r = Random(state: seed)
        var services = 6
        var routes: [HTTPRoute] = []
        for _ in 0..<20 { routes.append(try Self.randomRoute(&r, services: services)) }
        let backend = DefaultBackend(service: r.below(2) == 0 ? 3 : nil)
        var table = HTTPRouteTable(routes: routes, defaultBackend: backend)
        for step in 0..<400 {
            let current = table.routes
            let lower = current.isEmpty ? 0 : r.below(current.count + 1)
            let upper = lower + r.below(min(4, current.count - lower) + 1)
            var inserted: [HTTPRoute] = []
            // Unique (host, path) most of the time, as Kubernetes plans are; now and then a
            // repeat, which the table drops as a whole build does.
            for _ in 0..<r.below(4) {
                let route = try Self.randomRoute(&r, services: services)
                let kept = Array(current[..<lower]) + Array(current[upper...]) + inserted
                let repeats = kept.contains { $0.host == route.host && $0.pathPrefix == route.pathPrefix }
                if !repeats || r.below(20) == 0 { inserted.append(route) }
            }
            var map: [Int32]? = nil
            if r.below(3) == 0 {
                // Services renumbered: one inserted in front of a random index.
                let at = r.below(services + 1)
                map = (0..<services).map { Int32($0 < at ? $0 : $0 + 1) }
                services += 1
            }
            let next = table.replacing(lower..<upper, with: inserted, services: map)
            var given = Array(current)
            if let map {
                for index in given.indices where given[index].service >= 0 {
                    given[index].service = Int(map[given[index].service])
                }
            }
            given.replaceSubrange(lower..<upper, with: inserted)
            var expectedBackend = table.defaultBackend
            if let map, let service = expectedBackend.service { expectedBackend.service = Int(map[service]) }
            let whole = HTTPRouteTable(routes: given, defaultBackend: expectedBackend)
            Self.expectSameLookups(next, whole, "seed \(seed) step \(step)")
            #expect(next.liveHosts == whole.liveHosts, "seed \(seed) step \(step): hosts")
            table = next
        }
    }

    /// Adding and removing hosts one at a time in a large table: every host stays reachable,
    /// the removed ones are gone, and the table is rebuilt now and then rather than growing.
    @Test func manyHostsComeAndGo() throws {
        var routes: [HTTPRoute] = []
        for index in 0..<2_000 { routes.append(try HTTPRoute(host: "s\(index).example.com", service: index)) }
        var table = HTTPRouteTable(routes: routes)
        // An edit appends the entry it makes and leaves the one it takes out behind.
        let grown = table.replacing(2_000..<2_000, with: [try HTTPRoute(host: "extra.example.com", service: 9)])
        #expect(grown.hostPort.count == 2_001 && grown.liveHosts == 2_001)
        let shrunk = grown.replacing(0..<1, with: [])
        #expect(shrunk.hostPort.count == 2_001 && shrunk.liveHosts == 2_000)
        for index in 0..<3_000 {
            // Remove the first route, append a new host at the end.
            table = table.replacing(0..<1, with: [])
            let end = table.routes.count
            table = table.replacing(end..<end, with: [try HTTPRoute(host: "n\(index).example.com", service: index)])
        }
        #expect(table.routes.count == 2_000)
        #expect(table.liveHosts == 2_000)
        #expect(table.hostPort.count <= 2 * 2_000 + 1_024 + 1)
        func find(_ host: String) -> RouteMatch {
            Array(host.utf8).withUnsafeBytes { h in
                Array("/".utf8).withUnsafeBytes { p in table.lookup(host: h, path: p, defaultPort: 80) }
            }
        }
        for index in 0..<2_000 { #expect(find("s\(index).example.com") == .noRoute) }
        for index in 1_000..<3_000 {
            #expect(find("n\(index).example.com") == .service(Int32(index), stripPrefix: 0))
        }
    }
}
