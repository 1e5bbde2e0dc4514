import SluiceConfig
import SluiceRouting
import Testing

/// TLS listeners, PROXY protocol settings and the ClientHello timeout, through the loader
/// into the snapshot.
@Suite struct TLSConfigTests {
    static let tlsConfig = """
        timeouts:
          tlsHello: 3s
        listeners:
          - name: tls
            address: 0.0.0.0:30443
            protocol: tls
            routes:
              - host: grafana.example.com
                service: grafana-tls
              - host: "*.apps.example.com"
                service: apps
            default:
              service: fallback-tls
            acceptProxy: [10.0.0.0/8, "::1/128", 192.168.7.9]
          - address: "[::]:30444"
            protocol: tls
            routes:
              - host: Kibana.Example.com.
                service: apps
          - address: 0.0.0.0:30445
            protocol: tls
            routes: []
            default:
              close: true
          - name: db
            address: 0.0.0.0:5432
            service: grafana-tls
            acceptProxy:
              - 172.16.0.0/12
          - name: web
            address: 0.0.0.0:30800
            protocol: http
            acceptProxy: ["10.1.2.3/16"]
            default:
              service: apps
        services:
          - name: grafana-tls
            proxyProtocol: v2
            endpoints: [10.0.0.5:8443]
          - name: apps
            algorithm: leastconn
            endpoints: [10.0.0.6:443, 10.0.0.7:443]
          - name: fallback-tls
            proxyProtocol: v1
            endpoints: ["[::1]:9443"]
        """

    /// `table` asked for a ClientHello naming `name` (empty: no SNI).
    private func lookup(_ table: HTTPRouteTable, _ name: String) -> RouteMatch {
        Array(name.utf8).withUnsafeBytes { sni in
            table.lookup(host: sni, path: UnsafeRawBufferPointer(start: nil, count: 0), defaultPort: 443)
        }
    }

    private func ip(_ text: String) -> SocketAddress.IP { SocketAddress.parseIP(Array(text.utf8))! }

    @Test func fullTLSFileBuildsTheSnapshot() throws {
        let snapshot = try ConfigLoader.parse(yaml: Self.tlsConfig, file: "tls.yaml", generation: 7).snapshot
        #expect(snapshot.timeouts.tlsHelloMillis == 3_000)
        #expect(snapshot.timeouts.requestHeadMillis == 5_000)

        #expect(
            snapshot.listeners.map(\.name) == [
                "tls", "tls-[::]:30444", "tls-0.0.0.0:30445", "db", "web",
            ])
        #expect(snapshot.listeners.map(\.protocol) == [.tls, .tls, .tls, .tcp, .http])
        #expect(snapshot.listeners.map(\.service) == [-1, -1, -1, 0, -1])
        #expect(snapshot.listeners.map(\.routes) == [0, 1, 2, -1, 3])
        #expect(snapshot.routeTables.count == 4)
        #expect(
            snapshot.listeners.map { $0.acceptProxy.map(\.description) } == [
                ["10.0.0.0/8", "::1/128", "192.168.7.9/32"], [], [], ["172.16.0.0/12"], ["10.1.0.0/16"],
            ])
        #expect(snapshot.listeners[0].acceptProxy[0].contains(ip("10.200.0.1")))
        #expect(snapshot.listeners[4].acceptProxy[0].contains(ip("10.1.99.1")))

        #expect(snapshot.services.map(\.proxyProtocol) == [.v2, nil, .v1])

        let tls = snapshot.routeTables[0]
        #expect(tls.routes.allSatisfy { $0.pathPrefix == [UInt8(ascii: "/")] && !$0.stripPath })
        #expect(tls.defaultBackend.service == 2)
        #expect(lookup(tls, "grafana.example.com") == .service(0, stripPrefix: 0))
        #expect(lookup(tls, "x.apps.example.com") == .service(1, stripPrefix: 0))
        #expect(lookup(tls, "apps.example.com") == .service(2, stripPrefix: 0))
        #expect(lookup(tls, "") == .service(2, stripPrefix: 0))

        let second = snapshot.routeTables[1]
        #expect(second.defaultBackend.service == nil)
        #expect(lookup(second, "kibana.example.com") == .service(1, stripPrefix: 0))
        #expect(lookup(second, "grafana.example.com") == .noRoute)
        #expect(lookup(second, "") == .noRoute)

        let closing = snapshot.routeTables[2]
        #expect(closing.routes.isEmpty)
        #expect(closing.defaultBackend.service == nil)
        #expect(lookup(closing, "kibana.example.com") == .noRoute)

        #expect(
            snapshot.render() == """
                generation 7
                listeners:
                  tls  tls  0.0.0.0:30443 -> routes by server name
                    grafana.example.com -> grafana-tls
                    *.apps.example.com -> apps
                    default -> fallback-tls
                    acceptProxy 10.0.0.0/8, ::1/128, 192.168.7.9/32
                  tls-[::]:30444  tls  [::]:30444 -> routes by server name
                    kibana.example.com -> apps
                    default -> close
                  tls-0.0.0.0:30445  tls  0.0.0.0:30445 -> routes by server name
                    default -> close
                  db  tcp  0.0.0.0:5432 -> grafana-tls
                    acceptProxy 172.16.0.0/12
                  web  http  0.0.0.0:30800 -> routes
                    default -> apps
                    acceptProxy 10.1.0.0/16
                services:
                  grafana-tls  roundrobin  proxyProtocol v2  1 endpoint(s)
                    10.0.0.5:8443
                  apps  leastconn  2 endpoint(s)
                    10.0.0.6:443
                    10.0.0.7:443
                  fallback-tls  roundrobin  proxyProtocol v1  1 endpoint(s)
                    [::1]:9443
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                http: requestHead 5000 ms, upstreamIdlePerEndpoint 32, upstreamIdle 30000 ms
                tls: tlsHello 3000 ms
                """)
    }

    @Test func theContractsExampleLoads() throws {
        let yaml = """
            listeners:
              - name: tls
                address: 0.0.0.0:30443
                protocol: tls                 # SNI passthrough
                routes:                       # same host patterns as http (exact, *.domain); no path
                  - host: grafana.example.com
                    service: grafana-tls
                default:                      # no SNI or unknown SNI
                  service: fallback-tls       # or omit `default` (or `default: {close: true}`) to close
                acceptProxy: [10.0.0.0/8, "::1/128"]   # optional, any listener
            services:
              - name: grafana-tls
                proxyProtocol: v2             # optional: v1 | v2
                endpoints: [10.0.0.5:8443]
              - name: fallback-tls
                endpoints: [10.0.0.6:8443]
            timeouts:
              tlsHello: 5s                    # the ClientHello must arrive whole in time, else close
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.listeners[0].protocol == .tls)
        #expect(snapshot.listeners[0].acceptProxy.map(\.description) == ["10.0.0.0/8", "::1/128"])
        #expect(snapshot.routeTables[0].defaultBackend.service == 1)
        #expect(snapshot.services[0].proxyProtocol == .v2)
        #expect(snapshot.timeouts.tlsHelloMillis == 5_000)
    }

    @Test func defaultsWhenNothingTLSIsGiven() throws {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8443
                protocol: tls
                routes:
                  - host: a.com
                    service: web
                default: {close: true}
            services:
              - name: web
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.listeners[0].acceptProxy == [])
        #expect(snapshot.services[0].proxyProtocol == nil)
        #expect(snapshot.timeouts.tlsHelloMillis == 5_000)
        #expect(snapshot.routeTables[0].defaultBackend.service == nil)
    }

    /// A proxyProtocol service may be a tls default, and `close: false` with a service is the service.
    @Test func closeFalseWithAServiceIsThatService() throws {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8443
                protocol: tls
                default:
                  close: false
                  service: web
            services:
              - name: web
                proxyProtocol: v1
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.routeTables[0].defaultBackend.service == 0)
    }
}
