import Testing

@testable import SluiceRouting

/// A table from `(host, path, stripPath, service)` rows.
private func table(
    _ rows: [(String, String?, Bool, Int)], default fallback: DefaultBackend = DefaultBackend()
) throws -> HTTPRouteTable {
    let routes = try rows.map { row throws(HostPattern.ParseError) in
        try HTTPRoute(host: row.0, path: row.1, stripPath: row.2, service: row.3)
    }
    return HTTPRouteTable(routes: routes, defaultBackend: fallback)
}

/// `table.lookup` for text host and path.
private func route(_ table: HTTPRouteTable, _ host: String, _ path: String = "/", port: UInt16 = 80) -> RouteMatch {
    Array(host.utf8).withUnsafeBytes { hostBytes in
        Array(path.utf8).withUnsafeBytes { pathBytes in
            table.lookup(host: hostBytes, path: pathBytes, defaultPort: port)
        }
    }
}

private func to(_ service: Int32, strip: Int32 = 0) -> RouteMatch { .service(service, stripPrefix: strip) }

@Suite struct HTTPRouteTableHostTests {
    @Test func exactBeatsWildcardAndPortBeatsAnyPort() throws {
        let routes = try table([
            ("*.example.com", nil, false, 0),
            ("*.example.com:8080", nil, false, 1),
            ("www.example.com", nil, false, 2),
            ("www.example.com:8080", nil, false, 3),
        ])
        #expect(route(routes, "www.example.com:8080") == to(3))
        #expect(route(routes, "www.example.com") == to(2))
        #expect(route(routes, "www.example.com:9090") == to(2))
        #expect(route(routes, "www.example.com", port: 8080) == to(3))
        #expect(route(routes, "api.example.com:8080") == to(1))
        #expect(route(routes, "api.example.com", port: 8080) == to(1))
        #expect(route(routes, "api.example.com") == to(0))
        #expect(route(routes, "api.example.com:443") == to(0))
    }

    @Test func aPortRuleMatchesOnlyThatPort() throws {
        let routes = try table([("grafana.example.com:30800", nil, false, 4)])
        #expect(route(routes, "grafana.example.com:30800") == to(4))
        #expect(route(routes, "grafana.example.com", port: 30800) == to(4))
        #expect(route(routes, "grafana.example.com") == .noRoute)
        #expect(route(routes, "grafana.example.com:30801") == .noRoute)
        #expect(route(routes, "grafana.example.com:80", port: 30800) == .noRoute)
    }

    @Test func wildcardMatchesExactlyOneMoreLabel() throws {
        let routes = try table([("*.example.com", nil, false, 1)])
        #expect(route(routes, "a.example.com") == to(1))
        #expect(route(routes, "a-b.example.com") == to(1))
        #expect(route(routes, "example.com") == .noRoute)
        #expect(route(routes, "a.b.example.com") == .noRoute)
        #expect(route(routes, ".example.com") == .noRoute)
        #expect(route(routes, "aexample.com") == .noRoute)
        #expect(route(routes, "a.example.org") == .noRoute)
        #expect(route(routes, "a.example.com.evil") == .noRoute)
    }

    @Test func hostsCompareWithoutCaseAndTrailingDot() throws {
        let routes = try table([("Example.COM", nil, false, 1), ("*.Example.Org.", nil, false, 2)])
        #expect(route(routes, "example.com") == to(1))
        #expect(route(routes, "EXAMPLE.com") == to(1))
        #expect(route(routes, "example.com.") == to(1))
        #expect(route(routes, "Example.Com.:80") == to(1))
        #expect(route(routes, "WWW.example.ORG") == to(2))
        #expect(route(routes, "www.example.org.:8080") == to(2))
        #expect(route(routes, "example.com..") == .noRoute)
    }

    @Test func ipv6LiteralsMatchAsText() throws {
        let routes = try table([("[::1]", nil, false, 1), ("[fe80::A]:8080", nil, false, 2)])
        #expect(route(routes, "[::1]") == to(1))
        #expect(route(routes, "[::1]:8080") == to(1))
        #expect(route(routes, "[fe80::a]:8080") == to(2))
        #expect(route(routes, "[FE80::A]:8080") == to(2))
        #expect(route(routes, "[fe80::a]:8081") == .noRoute)
        #expect(route(routes, "[fe80::a]") == .noRoute)
        #expect(route(routes, "[0::1]") == .noRoute)
        #expect(route(routes, "::1") == .noRoute)
        #expect(route(routes, "[::1") == .noRoute)
        #expect(route(routes, "[::1]x") == .noRoute)
    }

    @Test func ipv4LiteralsAreNames() throws {
        let routes = try table([("10.0.0.1", nil, false, 1), ("*.0.0.1", nil, false, 2)])
        #expect(route(routes, "10.0.0.1:8080") == to(1))
        #expect(route(routes, "10.0.0.2") == .noRoute)
    }

    @Test func malformedHostsTakeTheDefault() throws {
        let routes = try table([("a.com", nil, false, 1)], default: DefaultBackend(service: 9))
        for host in ["", ":80", "a.com:x", "a.com:65536", "a.com:123456", "a.com:8:8", ".", "a.com:-1"] {
            #expect(route(routes, host) == to(9), "\(host)")
        }
        // An empty port is the default port (RFC 3986).
        #expect(route(routes, "a.com:") == to(1))
    }

    @Test func noRouteWithoutDefaultService() throws {
        let routes = try table([("a.com", "/api", false, 1)], default: DefaultBackend(status: 503, body: []))
        #expect(route(routes, "b.com") == .noRoute)
        #expect(route(routes, "a.com", "/") == .noRoute)
        #expect(routes.defaultBackend == DefaultBackend(status: 503, body: []))
        #expect(
            HTTPRouteTable(routes: []).defaultBackend == DefaultBackend(status: 404, body: Array("no route\n".utf8)))
        #expect(route(HTTPRouteTable(routes: []), "a.com") == .noRoute)
        let onlyDefault = HTTPRouteTable(routes: [], defaultBackend: DefaultBackend(service: 0))
        #expect(route(onlyDefault, "anything", "/x") == to(0))
    }

    @Test func theMostSpecificHostDecidesWithoutFallingThrough() throws {
        // The exact host owns only /admin: other paths on it take the default, not the wildcard.
        let routes = try table(
            [("admin.example.com", "/admin", false, 1), ("*.example.com", nil, false, 2)],
            default: DefaultBackend(service: 7))
        #expect(route(routes, "admin.example.com", "/admin/x") == to(1))
        #expect(route(routes, "admin.example.com", "/other") == to(7))
        #expect(route(routes, "www.example.com", "/other") == to(2))
    }

    @Test func aThousandHosts() throws {
        var rows: [(String, String?, Bool, Int)] = []
        for index in 0..<1_000 {
            rows.append(("host\(index).example.com", nil, false, index))
            rows.append(("host\(index).example.com", "/api", true, 10_000 + index))
            rows.append(("*.zone\(index).example.net:8\(index % 10)", nil, false, 20_000 + index))
        }
        let routes = try table(rows)
        for index in 0..<1_000 {
            #expect(route(routes, "HOST\(index).example.com") == to(Int32(index)))
            #expect(route(routes, "host\(index).example.com", "/api/v1") == to(Int32(10_000 + index), strip: 4))
            #expect(route(routes, "x.zone\(index).example.net:8\(index % 10)") == to(Int32(20_000 + index)))
            #expect(route(routes, "x.zone\(index).example.net:9\(index % 10)") == .noRoute)
            #expect(route(routes, "host\(index + 1_000).example.com") == .noRoute)
        }
        #expect(routes.exactSlots.count == 2_048)
        #expect(routes.wildcardSlots.count == 2_048)
        #expect(routes.routes.count == 3_000)
    }
}

@Suite struct HTTPRouteTablePathTests {
    @Test func prefixesMatchAtSegmentBoundaries() throws {
        let routes = try table([("a.com", "/api", false, 1), ("a.com", nil, false, 0)])
        #expect(route(routes, "a.com", "/api") == to(1))
        #expect(route(routes, "a.com", "/api/") == to(1))
        #expect(route(routes, "a.com", "/api/x/y") == to(1))
        #expect(route(routes, "a.com", "/api?q=1") == to(1))
        #expect(route(routes, "a.com", "/apix") == to(0))
        #expect(route(routes, "a.com", "/ap") == to(0))
        #expect(route(routes, "a.com", "/API") == to(0))
        #expect(route(routes, "a.com", "") == to(0))
        #expect(route(routes, "a.com", "*") == to(0))
    }

    @Test func aPrefixEndingInSlashNeedsTheSlash() throws {
        let routes = try table([("a.com", "/api/", true, 1)])
        #expect(route(routes, "a.com", "/api/x") == to(1, strip: 4))
        #expect(route(routes, "a.com", "/api/") == to(1, strip: 4))
        #expect(route(routes, "a.com", "/api") == .noRoute)
    }

    @Test func longestPrefixWinsWhateverTheOrder() throws {
        let routes = try table([
            ("a.com", "/a", false, 1),
            ("a.com", "/a/b/c", false, 3),
            ("a.com", nil, false, 0),
            ("a.com", "/a/b", false, 2),
        ])
        #expect(route(routes, "a.com", "/a/b/c/d") == to(3))
        #expect(route(routes, "a.com", "/a/b/cd") == to(2))
        #expect(route(routes, "a.com", "/a/b") == to(2))
        #expect(route(routes, "a.com", "/a/x") == to(1))
        #expect(route(routes, "a.com", "/b") == to(0))
    }

    @Test func stripLengths() throws {
        let routes = try table([
            ("a.com", "/api", true, 1),
            ("a.com", "/keep", false, 2),
            ("a.com", "/", true, 3),
            ("b.com", nil, true, 4),
        ])
        #expect(route(routes, "a.com", "/api/users") == to(1, strip: 4))
        #expect(route(routes, "a.com", "/api") == to(1, strip: 4))
        #expect(route(routes, "a.com", "/api?x") == to(1, strip: 4))
        #expect(route(routes, "a.com", "/keep/x") == to(2))
        #expect(route(routes, "a.com", "/other") == to(3))
        #expect(route(routes, "b.com", "/other") == to(4))
    }

    @Test func theFirstOfTwoEqualRoutesIsKept() throws {
        let routes = try table([("a.com", "/x", false, 1), ("A.com.", "/x", false, 2)])
        #expect(route(routes, "a.com", "/x") == to(1))
        #expect(routes.routes.map(\.service) == [1])
    }
}

@Suite struct HostPatternTests {
    @Test(
        arguments: [
            ("example.com", "example.com"), ("Example.COM.", "example.com"), ("*.example.com", "*.example.com"),
            ("*.Example.com.:8080", "*.example.com:8080"), ("localhost", "localhost"), ("a-b.c1", "a-b.c1"),
            ("10.0.0.1:80", "10.0.0.1:80"), ("[::1]", "[::1]"), ("[FE80::1]:443", "[fe80::1]:443"), ("*.com", "*.com"),
        ])
    func parsesAndNormalises(text: String, normal: String) throws {
        #expect(try HostPattern.parse(text).get().description == normal)
    }

    @Test(
        arguments: [
            ("", HostPattern.ParseError.empty), (".", .empty), (":80", .empty), ("*", .wildcardWithoutDomain),
            ("*.", .wildcardWithoutDomain), ("*.*.com", .wildcardPlacement), ("a.*.com", .wildcardPlacement),
            ("*a.com", .wildcardPlacement), ("a*.com", .wildcardPlacement), ("a..com", .emptyLabel),
            (".a.com", .emptyLabel), ("a_b.com", .badCharacter), ("a b.com", .badCharacter),
            ("-a.com", .hyphenAtEdge), ("a-.com", .hyphenAtEdge), (String(repeating: "a", count: 64), .labelTooLong),
            (Array(repeating: "abcdefghi", count: 26).joined(separator: "."), .nameTooLong), ("a.com:0", .badPort),
            ("a.com:65536", .badPort), ("a.com:", .badPort), ("a.com:x", .badPort), ("[::1]x", .badPort),
            ("[::1]:", .badPort), ("[::g]", .badIPv6), ("[::1", .badIPv6), ("::1", .unbracketedIPv6),
            ("*.[::1]", .unbracketedIPv6), ("é.com", .badCharacter),
        ])
    func refuses(text: String, error: HostPattern.ParseError) {
        #expect(HostPattern.parse(text) == .failure(error))
    }

    @Test func errorsDescribeThemselves() {
        #expect(
            HostPattern.ParseError.wildcardPlacement.description
                == "a wildcard is only allowed as the whole first label")
        #expect(HostPattern.ParseError.badPort.description == "the port must be a number from 1 to 65535")
    }
}
