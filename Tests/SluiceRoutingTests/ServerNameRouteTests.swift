import Testing

@testable import SluiceRouting

/// A TLS listener's table: host patterns, every path `/`.
private func table(_ hosts: [(String, Int)], default fallback: Int? = nil) throws -> HTTPRouteTable {
    let routes = try hosts.map { row throws(HostPattern.ParseError) in try HTTPRoute(host: row.0, service: row.1) }
    return HTTPRouteTable(routes: routes, defaultBackend: DefaultBackend(service: fallback))
}

/// The route for a ClientHello naming `name`, both ways the proxy may ask: through the
/// HTTP lookup with an empty path and port 443, and through `lookup(serverName:)`.
private func route(_ table: HTTPRouteTable, _ name: String) -> RouteMatch {
    Array(name.utf8).withUnsafeBytes { sni in
        let direct = table.lookup(host: sni, path: UnsafeRawBufferPointer(start: nil, count: 0), defaultPort: 443)
        let byName = table.lookup(serverName: sni)
        #expect(direct == byName, "\(name)")
        return byName
    }
}

private func to(_ service: Int32) -> RouteMatch { .service(service, stripPrefix: 0) }

@Suite struct ServerNameRouteTests {
    @Test func exactNamesBeatWildcards() throws {
        let routes = try table([("*.example.com", 0), ("grafana.example.com", 1), ("example.com", 2)])
        #expect(route(routes, "grafana.example.com") == to(1))
        #expect(route(routes, "GRAFANA.Example.COM") == to(1))
        #expect(route(routes, "grafana.example.com.") == to(1))
        #expect(route(routes, "kibana.example.com") == to(0))
        #expect(route(routes, "example.com") == to(2))
        #expect(route(routes, "a.b.example.com") == .noRoute)
        #expect(route(routes, "example.org") == .noRoute)
    }

    @Test func unknownOrMissingNamesTakeTheDefault() throws {
        let withFallback = try table([("a.example.com", 0)], default: 3)
        #expect(route(withFallback, "a.example.com") == to(0))
        #expect(route(withFallback, "b.example.com") == to(3))
        #expect(route(withFallback, "") == to(3))
        #expect(route(withFallback, ".") == to(3))

        let closing = try table([("a.example.com", 0)])
        #expect(route(closing, "b.example.com") == .noRoute)
        #expect(route(closing, "") == .noRoute)

        let onlyDefault = try table([], default: 1)
        #expect(route(onlyDefault, "anything.example") == to(1))
        #expect(route(onlyDefault, "") == to(1))
    }

    /// A server name carries no port; routes without a port match whatever 443 stands in for.
    @Test func routesWithoutPortsMatchOnTheDefaultPort() throws {
        let routes = try table([("a.example.com", 0)])
        #expect(route(routes, "a.example.com:8443") == to(0))
        #expect(route(routes, "a.example.com:x") == .noRoute)
    }

    @Test func aRoutePortIsMatchedAgainst443() throws {
        // The configuration refuses ports in tls routes; the table itself reads them as HTTP does.
        let routes = try table([("a.example.com:443", 0), ("b.example.com:8443", 1)])
        #expect(route(routes, "a.example.com") == to(0))
        #expect(route(routes, "b.example.com") == .noRoute)
    }
}
