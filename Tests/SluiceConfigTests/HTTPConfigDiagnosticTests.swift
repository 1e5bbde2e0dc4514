import SluiceConfig
import Testing

/// An HTTP listener that loads; tests change one line at a time.
///
///      1 listeners:
///      2   - address: 127.0.0.1:8080
///      3     protocol: http
///      4     routes:
///      5       - host: a.example.com
///      6         path: /api
///      7         service: web
///      8 services:
///      9   - name: web
///     10     endpoints:
///     11       - 127.0.0.1:9001
private let httpConfig = """
    listeners:
      - address: 127.0.0.1:8080
        protocol: http
        routes:
          - host: a.example.com
            path: /api
            service: web
    services:
      - name: web
        endpoints:
          - 127.0.0.1:9001

    """

private func http(replacing line: Int, with text: String) -> String {
    httpConfig.replacingLine(line, with: text)
}

/// Each HTTP-specific mistake, with the exact text `sluice check` prints for it.
@Suite struct HTTPConfigDiagnosticTests {
    @Test func theBaseFileLoads() {
        #expect(diagnostics(httpConfig) == [])
    }

    @Test func badHostPatterns() {
        let cases: [(String, String)] = [
            ("*.*.com", "a wildcard is only allowed as the whole first label"),
            ("www.*.com", "a wildcard is only allowed as the whole first label"),
            ("*", "a wildcard needs a domain after it, as in *.example.com"),
            ("a..com", "a label must not be empty"),
            ("a_b.com", "a label may hold only letters, digits and hyphens"),
            ("-a.com", "a label must not start or end with a hyphen"),
            ("a.com:0", "the port must be a number from 1 to 65535"),
            ("a.com:99999", "the port must be a number from 1 to 65535"),
            ("[::g]", "the text between the brackets is not an IPv6 address"),
            ("::1", "an IPv6 address must be in brackets, as in [::1]"),
            (String(repeating: "x", count: 64) + ".com", "a label must be at most 63 characters"),
        ]
        for (host, reason) in cases {
            #expect(
                diagnostics(http(replacing: 5, with: "      - host: \"\(host)\"")) == [
                    "t.yaml:5:15: listeners[0].routes[0].host: '\(host)' is not a valid host pattern: \(reason)"
                ]
            )
        }
        #expect(
            diagnostics(http(replacing: 5, with: "      - host: \"\"")) == [
                "t.yaml:5:15: listeners[0].routes[0].host: must not be empty"
            ]
        )
    }

    @Test func theBriefsExampleReadsAsDocumented() {
        let yaml = http(replacing: 7, with: "        service: web\n      - host: \"*.*.com\"\n        service: web")
        #expect(
            diagnostics(yaml) == [
                "t.yaml:8:15: listeners[0].routes[1].host: '*.*.com' is not a valid host pattern: "
                    + "a wildcard is only allowed as the whole first label"
            ]
        )
    }

    @Test func badPaths() {
        #expect(
            diagnostics(http(replacing: 6, with: "        path: api")) == [
                "t.yaml:6:15: listeners[0].routes[0].path: must start with '/', found 'api'"
            ]
        )
        #expect(
            diagnostics(http(replacing: 6, with: "        path: \"/a?b\"")) == [
                "t.yaml:6:15: listeners[0].routes[0].path: '/a?b' must not contain '?', '#', spaces or control characters"
            ]
        )
        #expect(
            diagnostics(http(replacing: 6, with: "        path: \"/a b\"")) == [
                "t.yaml:6:15: listeners[0].routes[0].path: '/a b' must not contain '?', '#', spaces or control characters"
            ]
        )
        #expect(
            diagnostics(http(replacing: 6, with: "        path: /api\n        stripPath: maybe")) == [
                "t.yaml:7:20: listeners[0].routes[0].stripPath: expected true or false, found 'maybe'"
            ]
        )
    }

    @Test func routeFields() {
        #expect(
            diagnostics(http(replacing: 7, with: "        service: api")) == [
                "t.yaml:7:18: listeners[0].routes[0].service: no service named 'api' (defined: web)"
            ]
        )
        #expect(
            diagnostics(http(replacing: 7, with: "        backend: web")) == [
                "t.yaml:5:9: listeners[0].routes[0].service: required field is missing",
                "t.yaml:7:9: listeners[0].routes[0].backend: unknown field 'backend' (known: host, path, stripPath, service, redirectHTTPS, httpsPort, hsts)",
            ]
        )
        #expect(
            diagnostics(http(replacing: 5, with: "      - path: /x").replacingLine(6, with: "")) == [
                "t.yaml:5:9: listeners[0].routes[0].host: required field is missing"
            ]
        )
        #expect(
            diagnostics(
                http(replacing: 5, with: "      - a.example.com").replacingLine(6, with: "").replacingLine(7, with: ""))
                == ["t.yaml:5:9: listeners[0].routes[0]: expected a mapping, found 'a.example.com'"]
        )
    }

    @Test func duplicateHostAndPathNamesTheFirst() {
        let yaml = http(
            replacing: 7,
            with: """
                        service: web
                      - host: A.Example.com.
                        path: /api
                        service: web
                      - host: a.example.com
                        service: web
                      - host: a.example.com:80
                        path: /api
                        service: web
                      - host: a.example.com
                        path: /
                        service: web
                """)
        #expect(
            diagnostics(yaml) == [
                "t.yaml:8:9: listeners[0].routes[1]: host 'a.example.com' with path '/api' is already routed by "
                    + "listeners[0].routes[0]",
                "t.yaml:16:9: listeners[0].routes[4]: host 'a.example.com' with path '/' is already routed by "
                    + "listeners[0].routes[2]",
            ]
        )
    }

    @Test func httpListenersNeedRoutesAndNoService() {
        #expect(
            diagnostics(
                http(replacing: 4, with: "    service: web").replacingLine(5, with: "").replacingLine(6, with: "")
                    .replacingLine(7, with: "")) == [
                    "t.yaml:2:5: listeners[0].routes: required field is missing "
                        + "(an http listener needs routes or a default)",
                    "t.yaml:4:14: listeners[0].service: an http listener has no service; "
                        + "name services in its routes or its default",
                ]
        )
        #expect(
            diagnostics(
                http(replacing: 4, with: "    routes: []").replacingLine(5, with: "").replacingLine(6, with: "")
                    .replacingLine(7, with: "")) == [
                    "t.yaml:4:13: listeners[0].routes: at least one route is required when there is no default"
                ]
        )
        #expect(
            diagnostics(
                http(replacing: 4, with: "    routes: {a: b}")
                    .replacingLine(5, with: "").replacingLine(6, with: "").replacingLine(7, with: "")) == [
                    "t.yaml:4:13: listeners[0].routes: expected a sequence, found a mapping"
                ]
        )
    }

    @Test func tcpListenersHaveNoRoutesOrDefault() {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8080
                service: web
                routes:
                  - host: a.com
                    service: web
                default:
                  status: 404
            services:
              - name: web
            """
        #expect(
            diagnostics(yaml) == [
                "t.yaml:5:7: listeners[0].routes: only http and tls listeners have routes (this one is tcp)",
                "t.yaml:8:7: listeners[0].default: only http and tls listeners have a default (this one is tcp)",
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 3, with: "    protocol: tcp")) == [
                "t.yaml:2:5: listeners[0].service: required field is missing"
            ]
        )
    }

    @Test func badDefaults() {
        func withDefault(_ text: String) -> String {
            http(replacing: 7, with: "        service: web\n    default:\n" + text)
        }
        #expect(
            diagnostics(withDefault("      status: 302")) == [
                "t.yaml:9:15: listeners[0].default.status: must be from 400 to 599"
            ]
        )
        #expect(
            diagnostics(withDefault("      status: 600")) == [
                "t.yaml:9:15: listeners[0].default.status: must be from 400 to 599"
            ]
        )
        #expect(
            diagnostics(withDefault("      status: gone")) == [
                "t.yaml:9:15: listeners[0].default.status: expected an integer, found 'gone'"
            ]
        )
        #expect(
            diagnostics(withDefault("      status: 404\n      service: web")) == [
                "t.yaml:9:7: listeners[0].default: give either 'service' or 'status' and 'body', not both"
            ]
        )
        #expect(
            diagnostics(withDefault("      body: hi\n      service: web")) == [
                "t.yaml:9:7: listeners[0].default: give either 'service' or 'status' and 'body', not both"
            ]
        )
        #expect(
            diagnostics(withDefault("      service: nowhere")) == [
                "t.yaml:9:16: listeners[0].default.service: no service named 'nowhere' (defined: web)"
            ]
        )
        #expect(
            diagnostics(withDefault("      code: 404")) == [
                "t.yaml:9:7: listeners[0].default.code: unknown field 'code' (known: status, body, service)"
            ]
        )
        #expect(
            diagnostics(http(replacing: 7, with: "        service: web\n    default: 404")) == [
                "t.yaml:8:14: listeners[0].default: expected a mapping, found '404'"
            ]
        )
        #expect(diagnostics(withDefault("      status: 599\n      body: \"gone\\n\"")) == [])
    }

    @Test func cookieOnlyWithTheCookieAlgorithm() {
        #expect(
            diagnostics(http(replacing: 9, with: "  - name: web\n    cookie: SID")) == [
                "t.yaml:10:13: services[0].cookie: only the cookie algorithm uses a cookie "
                    + "(this service's algorithm is roundrobin)"
            ]
        )
        #expect(
            diagnostics(http(replacing: 9, with: "  - name: web\n    algorithm: source\n    cookie: SID")) == [
                "t.yaml:11:13: services[0].cookie: only the cookie algorithm uses a cookie "
                    + "(this service's algorithm is source)"
            ]
        )
        #expect(
            diagnostics(http(replacing: 9, with: "  - name: web\n    algorithm: cookie\n    cookie: \"a=b\"")) == [
                "t.yaml:11:13: services[0].cookie: 'a=b' is not a valid cookie name: "
                    + "use letters, digits and !#$%&'*+-.^_`|~"
            ]
        )
        #expect(
            diagnostics(http(replacing: 9, with: "  - name: web\n    algorithm: cookie\n    cookie: \"\"")) == [
                "t.yaml:11:13: services[0].cookie: must not be empty"
            ]
        )
        // A bad algorithm is reported once, not again through its cookie.
        #expect(
            diagnostics(http(replacing: 9, with: "  - name: web\n    algorithm: sticky\n    cookie: SID")) == [
                "t.yaml:10:16: services[0].algorithm: unknown algorithm 'sticky' "
                    + "(expected one of: roundrobin, leastconn, source, cookie)"
            ]
        )
        #expect(diagnostics(http(replacing: 9, with: "  - name: web\n    algorithm: cookie\n    cookie: SID")) == [])
    }

    @Test func httpSettings() {
        #expect(
            diagnostics(minimal(appending: "timeouts:\n  requestHead: 0s")) == [
                "t.yaml:9:16: timeouts.requestHead: must be greater than 0"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "limits:\n  upstreamIdle: soon")) == [
                "t.yaml:9:17: limits.upstreamIdle: expected a duration such as 250ms, 5s, 2m, 1h or an integer of "
                    + "milliseconds, found 'soon'"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "limits:\n  upstreamIdlePerEndpoint: 4097")) == [
                "t.yaml:9:28: limits.upstreamIdlePerEndpoint: must be from 0 to 4096"
            ]
        )
        #expect(diagnostics(minimal(appending: "limits:\n  upstreamIdlePerEndpoint: 0")) == [])
    }

    @Test func anUnknownProtocolDoesNotCascade() {
        #expect(
            diagnostics(http(replacing: 3, with: "    protocol: https")) == [
                "t.yaml:3:15: listeners[0].protocol: unknown protocol 'https' (expected one of: tcp, http, tls)"
            ]
        )
    }
}
