import SluiceConfig
import Testing

/// A TLS listener that loads; tests change one line at a time.
///
///      1 listeners:
///      2   - address: 127.0.0.1:8443
///      3     protocol: tls
///      4     routes:
///      5       - host: a.example.com
///      6         service: web
///      7 services:
///      8   - name: web
///      9     endpoints:
///     10       - 127.0.0.1:9443
private let tlsConfig = """
    listeners:
      - address: 127.0.0.1:8443
        protocol: tls
        routes:
          - host: a.example.com
            service: web
    services:
      - name: web
        endpoints:
          - 127.0.0.1:9443

    """

private func tls(replacing line: Int, with text: String) -> String {
    tlsConfig.replacingLine(line, with: text)
}

/// `tlsConfig` with `default:` and `text` (its fields) after the routes.
private func tls(default text: String) -> String {
    tls(replacing: 6, with: "        service: web\n    default:\n" + text)
}

/// Each TLS and PROXY protocol mistake, with the exact text `sluice check` prints for it.
@Suite struct TLSConfigDiagnosticTests {
    @Test func theBaseFileLoads() {
        #expect(diagnostics(tlsConfig) == [])
    }

    @Test func aRouteHostHasNoPort() {
        #expect(
            diagnostics(tls(replacing: 5, with: "      - host: a.example.com:8443")) == [
                "t.yaml:5:15: listeners[0].routes[0].host: 'a.example.com:8443' names a port, but a tls route "
                    + "matches the server name (SNI), which carries none; write 'a.example.com'"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 5, with: "      - host: \"*.Example.com:443\"")) == [
                "t.yaml:5:15: listeners[0].routes[0].host: '*.example.com:443' names a port, but a tls route "
                    + "matches the server name (SNI), which carries none; write '*.example.com'"
            ]
        )
    }

    @Test func routeHostsAreHostPatterns() {
        #expect(
            diagnostics(tls(replacing: 5, with: "      - host: \"*.*.com\"")) == [
                "t.yaml:5:15: listeners[0].routes[0].host: '*.*.com' is not a valid host pattern: "
                    + "a wildcard is only allowed as the whole first label"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 5, with: "      - host: \"\"")) == [
                "t.yaml:5:15: listeners[0].routes[0].host: must not be empty"
            ]
        )
        #expect(diagnostics(tls(replacing: 5, with: "      - host: \"*.example.com\"")) == [])
    }

    @Test func routesHaveNoPath() {
        #expect(
            diagnostics(tls(replacing: 6, with: "        path: /api\n        service: web")) == [
                "t.yaml:6:15: listeners[0].routes[0].path: a passthrough tls route matches the server name "
                    + "only; paths need 'terminate: true' or an http listener"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 6, with: "        stripPath: true\n        service: web")) == [
                "t.yaml:6:20: listeners[0].routes[0].stripPath: a passthrough tls route matches the server name "
                    + "only; paths need 'terminate: true' or an http listener"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 6, with: "        port: 443\n        service: web")) == [
                "t.yaml:6:9: listeners[0].routes[0].port: unknown field 'port' (known: host, path, stripPath, service, terminate, hsts)"
            ]
        )
    }

    @Test func routeFields() {
        #expect(
            diagnostics(tls(replacing: 6, with: "        service: api")) == [
                "t.yaml:6:18: listeners[0].routes[0].service: no service named 'api' (defined: web)"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 6, with: "")) == [
                "t.yaml:5:9: listeners[0].routes[0].service: required field is missing"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 5, with: "      - service: web").replacingLine(6, with: "")) == [
                "t.yaml:5:9: listeners[0].routes[0].host: required field is missing"
            ]
        )
    }

    @Test func duplicateHostsNameTheFirst() {
        let yaml = tls(
            replacing: 6,
            with: """
                        service: web
                      - host: A.Example.com.
                        service: web
                      - host: "*.example.com"
                        service: web
                """)
        #expect(
            diagnostics(yaml) == [
                "t.yaml:7:9: listeners[0].routes[1]: host 'a.example.com' is already routed by listeners[0].routes[0]"
            ]
        )
    }

    @Test func routesOrADefaultAreRequired() {
        #expect(
            diagnostics(tls(replacing: 4, with: "").replacingLine(5, with: "").replacingLine(6, with: "")) == [
                "t.yaml:2:5: listeners[0].routes: required field is missing (a tls listener needs routes or a default)"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 4, with: "    routes: []").replacingLine(5, with: "").replacingLine(6, with: ""))
                == ["t.yaml:4:13: listeners[0].routes: at least one route is required when there is no default"]
        )
        #expect(
            diagnostics(
                tls(replacing: 4, with: "    routes: a.example.com").replacingLine(5, with: "").replacingLine(
                    6, with: "")) == ["t.yaml:4:13: listeners[0].routes: expected a sequence, found 'a.example.com'"]
        )
    }

    @Test func aTLSListenerHasNoService() {
        #expect(
            diagnostics(tls(replacing: 3, with: "    protocol: tls\n    service: web")) == [
                "t.yaml:4:14: listeners[0].service: a tls listener has no service; name services in its routes or "
                    + "its default"
            ]
        )
    }

    @Test func badDefaults() {
        #expect(
            diagnostics(tls(default: "      status: 404")) == [
                "t.yaml:8:15: listeners[0].default.status: only http listeners answer with a status and body; "
                    + "a tls default is 'service: NAME' or 'close: true'"
            ]
        )
        #expect(
            diagnostics(tls(default: "      body: nope\n      service: web")) == [
                "t.yaml:8:13: listeners[0].default.body: only http listeners answer with a status and body; "
                    + "a tls default is 'service: NAME' or 'close: true'"
            ]
        )
        #expect(
            diagnostics(tls(default: "      close: true\n      service: web")) == [
                "t.yaml:8:7: listeners[0].default: give either 'service' or 'close: true', not both"
            ]
        )
        #expect(
            diagnostics(tls(default: "      close: false")) == [
                "t.yaml:8:7: listeners[0].default: a tls default is 'service: NAME' or 'close: true'"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 6, with: "        service: web\n    default: {}")) == [
                "t.yaml:7:14: listeners[0].default: a tls default is 'service: NAME' or 'close: true'"
            ]
        )
        #expect(
            diagnostics(tls(default: "      close: maybe")) == [
                "t.yaml:8:14: listeners[0].default.close: expected true or false, found 'maybe'"
            ]
        )
        #expect(
            diagnostics(tls(default: "      service: nowhere")) == [
                "t.yaml:8:16: listeners[0].default.service: no service named 'nowhere' (defined: web)"
            ]
        )
        #expect(
            diagnostics(tls(default: "      code: 404")) == [
                "t.yaml:8:7: listeners[0].default.code: unknown field 'code' (known: service, close, status, body, terminate)"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 6, with: "        service: web\n    default: close")) == [
                "t.yaml:7:14: listeners[0].default: expected a mapping, found 'close'"
            ]
        )
        #expect(diagnostics(tls(default: "      close: true")) == [])
        #expect(diagnostics(tls(default: "      service: web")) == [])
    }

    @Test func badAcceptProxyBlocks() {
        #expect(
            diagnostics(tls(replacing: 3, with: "    protocol: tls\n    acceptProxy: [10.0.0.0/8, 10.0.0.0/33]")) == [
                "t.yaml:4:31: listeners[0].acceptProxy[1]: '10.0.0.0/33' is not a valid address block: "
                    + "the prefix length must be a number from 0 to 32"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 3, with: "    protocol: tls\n    acceptProxy: [\"::1/129\", \"[::1]\"]")) == [
                "t.yaml:4:19: listeners[0].acceptProxy[0]: '::1/129' is not a valid address block: "
                    + "the prefix length must be a number from 0 to 128",
                "t.yaml:4:30: listeners[0].acceptProxy[1]: '[::1]' is not a valid address block: "
                    + "expected an IPv4 or IPv6 address, optionally followed by /PREFIX-LENGTH",
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: web\n    acceptProxy: 10.0.0.0/8")) == [
                "t.yaml:4:18: listeners[0].acceptProxy: expected a sequence, found '10.0.0.0/8'"
            ]
        )
        #expect(
            diagnostics(
                minimal(
                    replacing: 3, with: "    service: web\n    acceptProxy:\n      - 10.1.0.0/16\n      - 10.1.2.3/16"))
                == [
                    "t.yaml:6:9: listeners[0].acceptProxy[1]: 10.1.0.0/16 is already listed at listeners[0].acceptProxy[0]"
                ]
        )
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: web\n    acceptProxy: [\"\", {a: 1}]")) == [
                "t.yaml:4:19: listeners[0].acceptProxy[0]: must not be empty",
                "t.yaml:4:23: listeners[0].acceptProxy[1]: expected a string, found a mapping",
            ]
        )
        #expect(diagnostics(minimal(replacing: 3, with: "    service: web\n    acceptProxy: []")) == [])
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: web\n    acceptProxy: [0.0.0.0/0, \"::/0\"]")) == [])
    }

    @Test func badProxyProtocolVersions() {
        #expect(
            diagnostics(tls(replacing: 8, with: "  - name: web\n    proxyProtocol: v3")) == [
                "t.yaml:9:20: services[0].proxyProtocol: unknown PROXY protocol version 'v3' (expected one of: v1, v2)"
            ]
        )
        #expect(
            diagnostics(tls(replacing: 8, with: "  - name: web\n    proxyProtocol:")) == [
                "t.yaml:9:19: services[0].proxyProtocol: expected a string, found nothing"
            ]
        )
        #expect(diagnostics(tls(replacing: 8, with: "  - name: web\n    proxyProtocol: v1")) == [])
        #expect(diagnostics(minimal(replacing: 5, with: "  - name: web\n    proxyProtocol: v2")) == [])
    }

    /// HTTP listeners speak HTTP to their endpoints and say who the client is in X-Forwarded-For.
    @Test func httpListenersRefuseServicesThatExpectAPROXYHeader() {
        let yaml = """
            listeners:
              - name: tls
                address: 127.0.0.1:8443
                protocol: tls
                default:
                  service: tls-app
              - name: web
                address: 127.0.0.1:8080
                protocol: http
                routes:
                  - host: a.example.com
                    service: tls-app
                  - host: b.example.com
                    service: web-app
                default:
                  service: tls-app
            services:
              - name: tls-app
                proxyProtocol: v2
              - name: web-app
            """
        let reason =
            "service 'tls-app' has proxyProtocol v2, but an http listener sends no PROXY header (it passes the "
            + "client's address in X-Forwarded-For); use it from a tcp or tls listener"
        #expect(
            diagnostics(yaml) == [
                "t.yaml:12:18: listeners[1].routes[0].service: \(reason)",
                "t.yaml:16:16: listeners[1].default.service: \(reason)",
            ]
        )
        // A bad version is reported once, not again through the listeners that use the service.
        #expect(
            diagnostics(yaml.replacingLine(19, with: "    proxyProtocol: v9")) == [
                "t.yaml:19:20: services[0].proxyProtocol: unknown PROXY protocol version 'v9' (expected one of: v1, v2)"
            ]
        )
    }

    @Test func tlsHelloTimeout() {
        #expect(
            diagnostics(minimal(appending: "timeouts:\n  tlsHello: 0s")) == [
                "t.yaml:9:13: timeouts.tlsHello: must be greater than 0"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "timeouts:\n  tlsHello: soon")) == [
                "t.yaml:9:13: timeouts.tlsHello: expected a duration such as 250ms, 5s, 2m, 1h or an integer of "
                    + "milliseconds, found 'soon'"
            ]
        )
        #expect(diagnostics(minimal(appending: "timeouts:\n  tlsHello: 250ms")) == [])
    }

    @Test func tcpListenersHaveNoRoutesButMayAcceptProxy() {
        #expect(
            diagnostics(tls(replacing: 3, with: "    protocol: tcp\n    service: web")) == [
                "t.yaml:6:7: listeners[0].routes: only http and tls listeners have routes (this one is tcp)"
            ]
        )
    }
}
