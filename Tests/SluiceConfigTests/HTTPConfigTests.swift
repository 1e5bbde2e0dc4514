import SluiceConfig
import SluiceRouting
import Testing

/// An HTTP listener with routes and a default, through the loader into the snapshot.
@Suite struct HTTPConfigTests {
    static let httpConfig = """
        timeouts:
          requestHead: 2s
        limits:
          upstreamIdlePerEndpoint: 8
          upstreamIdle: 1m
        listeners:
          - name: web
            address: 0.0.0.0:30800
            protocol: http
            routes:
              - host: grafana.example.com:30800
                service: grafana
              - host: "*.example.com"
                path: /api
                stripPath: true
                service: api
              - host: "[::1]"
                path: /
                stripPath: false
                service: api
            default:
              status: 503
              body: "no route\\n"
          - address: 0.0.0.0:30801
            protocol: http
            default:
              service: api
          - address: 0.0.0.0:30802
            service: api
        services:
          - name: grafana
            algorithm: cookie
            cookie: SLUICE_GRAFANA
            endpoints:
              - 10.0.0.1:3000
          - name: api
            algorithm: cookie
            endpoints:
              - 10.0.0.2:80
              - 10.0.0.3:80
        """

    /// The snapshot's first route table, asked for `host` and `path` on port 80.
    private func lookup(_ table: HTTPRouteTable, _ host: String, _ path: String) -> RouteMatch {
        Array(host.utf8).withUnsafeBytes { h in
            Array(path.utf8).withUnsafeBytes { p in table.lookup(host: h, path: p, defaultPort: 80) }
        }
    }

    @Test func fullHTTPFileBuildsTheSnapshot() throws {
        let snapshot = try ConfigLoader.parse(yaml: Self.httpConfig, file: "http.yaml", generation: 3).snapshot
        #expect(snapshot.timeouts.requestHeadMillis == 2_000)
        #expect(snapshot.limits.upstreamIdlePerEndpoint == 8)
        #expect(snapshot.limits.upstreamIdleMillis == 60_000)

        #expect(snapshot.listeners.map(\.name) == ["web", "http-0.0.0.0:30801", "tcp-0.0.0.0:30802"])
        #expect(snapshot.listeners.map(\.protocol) == [.http, .http, .tcp])
        #expect(snapshot.listeners.map(\.service) == [-1, -1, 1])
        #expect(snapshot.listeners.map(\.routes) == [0, 1, -1])
        #expect(snapshot.routeTables.count == 2)

        #expect(snapshot.services.map(\.algorithm) == [.cookie, .cookie])
        #expect(snapshot.services.map(\.cookieName) == [Array("SLUICE_GRAFANA".utf8), Array("SLUICE".utf8)])

        let web = snapshot.routeTables[0]
        #expect(web.defaultBackend == DefaultBackend(status: 503, body: Array("no route\n".utf8)))
        #expect(lookup(web, "grafana.example.com:30800", "/d/x") == .service(0, stripPrefix: 0))
        #expect(lookup(web, "grafana.example.com", "/d/x") == .noRoute)
        #expect(lookup(web, "Www.Example.com", "/api/v1") == .service(1, stripPrefix: 4))
        #expect(lookup(web, "www.example.com", "/apiv1") == .noRoute)
        #expect(lookup(web, "[::1]:30800", "/x") == .service(1, stripPrefix: 0))

        let rest = snapshot.routeTables[1]
        #expect(rest.defaultBackend == DefaultBackend(service: 1))
        #expect(lookup(rest, "anything", "/") == .service(1, stripPrefix: 0))

        #expect(
            snapshot.render() == """
                generation 3
                listeners:
                  web  http  0.0.0.0:30800 -> routes
                    grafana.example.com:30800 / -> grafana
                    *.example.com /api -> api (strip /api)
                    [::1] / -> api
                    default -> 503 "no route\\n"
                  http-0.0.0.0:30801  http  0.0.0.0:30801 -> routes
                    default -> api
                  tcp-0.0.0.0:30802  tcp  0.0.0.0:30802 -> api
                services:
                  grafana  cookie(SLUICE_GRAFANA)  1 endpoint(s)
                    10.0.0.1:3000
                  api  cookie(SLUICE)  2 endpoint(s)
                    10.0.0.2:80
                    10.0.0.3:80
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                http: requestHead 2000 ms, upstreamIdlePerEndpoint 8, upstreamIdle 60000 ms
                """)
    }

    @Test func defaultStatusAndBodyWhenOnlyRoutesAreGiven() throws {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8080
                protocol: http
                routes:
                  - host: a.com
                    service: web
            services:
              - name: web
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.routeTables[0].defaultBackend == DefaultBackend(status: 404, body: Array("no route\n".utf8)))
        #expect(snapshot.services[0].cookieName == nil)
        #expect(snapshot.timeouts.requestHeadMillis == 5_000)
        #expect(snapshot.limits.upstreamIdlePerEndpoint == 32)
        #expect(snapshot.limits.upstreamIdleMillis == 30_000)
    }

    @Test func defaultWithOnlyABodyKeeps404() throws {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8080
                protocol: http
                routes: []
                default:
                  body: ""
            services: []
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.routeTables[0].defaultBackend == DefaultBackend(status: 404, body: []))
    }
}
