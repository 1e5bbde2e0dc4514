import Synchronization
import Testing

@testable import SluiceRouting

private var empty: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

private func sni(_ table: HTTPRouteTable, _ name: String) -> RouteMatch {
    Array(name.utf8).withUnsafeBytes { table.lookup(serverName: $0) }
}

private func match(_ table: HTTPRouteTable, _ host: String, _ path: String = "/", port: UInt16 = 80) -> RouteMatch {
    Array(host.utf8).withUnsafeBytes { hostBytes in
        Array(path.utf8).withUnsafeBytes { table.lookup(host: hostBytes, path: $0, defaultPort: port) }
    }
}

private func index(_ table: HTTPRouteTable, _ host: String, _ path: String = "/", port: UInt16 = 80) -> Int32 {
    Array(host.utf8).withUnsafeBytes { hostBytes in
        Array(path.utf8).withUnsafeBytes { table.lookupRoute(host: hostBytes, path: $0, defaultPort: port) }
    }
}

@Suite struct TerminationRouteTests {
    @Test func terminateRoutesAndDefaultAnswerTerminate() throws {
        let table = HTTPRouteTable(
            routes: [
                try HTTPRoute(host: "db.example.com", service: 0),
                try HTTPRoute(host: "grafana.example.com", service: -1, terminate: true),
                try HTTPRoute(host: "*.apps.example.com", service: -1, terminate: true),
            ],
            defaultBackend: DefaultBackend(service: 0, terminate: true))
        #expect(sni(table, "db.example.com") == .service(0, stripPrefix: 0))
        #expect(sni(table, "Grafana.Example.com.") == .terminate)
        #expect(sni(table, "x.apps.example.com") == .terminate)
        // Unknown and missing names take the default, which terminates before its service.
        #expect(sni(table, "other.example.com") == .terminate)
        #expect(sni(table, "") == .terminate)
        #expect(table.lookupRoute(host: empty, path: empty, defaultPort: 443) == -1)
    }

    @Test func defaultWithoutTerminateKeepsServiceOrClose() throws {
        let routes = [try HTTPRoute(host: "a.io", service: -1, terminate: true)]
        #expect(sni(HTTPRouteTable(routes: routes), "b.io") == .noRoute)
        #expect(
            sni(HTTPRouteTable(routes: routes, defaultBackend: DefaultBackend(service: 2)), "b.io")
                == .service(2, stripPrefix: 0))
    }

    @Test func redirectRoutesAnswerTheirIndexInConfigurationOrder() throws {
        let table = HTTPRouteTable(routes: [
            try HTTPRoute(host: "app.example.com", path: "/api", service: 1),
            try HTTPRoute(host: "grafana.example.com", service: -1, redirectHTTPS: true, httpsPort: 8443),
            try HTTPRoute(host: "app.example.com", service: -1, redirectHTTPS: true),
        ])
        #expect(match(table, "grafana.example.com", "/d/x?y=1") == .redirect(route: 1))
        #expect(match(table, "app.example.com", "/login") == .redirect(route: 2))
        #expect(match(table, "app.example.com", "/api/v1") == .service(1, stripPrefix: 0))
        #expect(match(table, "other.example.com") == .noRoute)
        #expect(table.routes[1].httpsPort == 8443)
        #expect(table.routes[2].httpsPort == 443)
    }

    @Test func lookupRouteIndexesRoutesAsGiven() throws {
        // The table stores each host's routes longest prefix first; indices stay in the given order.
        let table = HTTPRouteTable(
            routes: [
                try HTTPRoute(host: "a.io", service: 0),
                try HTTPRoute(host: "a.io", path: "/api", stripPath: true, service: 1),
                try HTTPRoute(host: "*.b.io", path: "/x", service: 2),
                try HTTPRoute(host: "a.io", path: "/api", service: 3),  // duplicate: dropped
                try HTTPRoute(host: "a.io:8443", path: "/api/v2", service: 4),
            ],
            defaultBackend: DefaultBackend(service: 9))
        #expect(table.routes.map(\.service) == [0, 1, 2, 4])
        #expect(index(table, "a.io", "/") == 0)
        #expect(index(table, "a.io", "/api/v2") == 1)
        #expect(index(table, "a.io:8443", "/api/v2/z") == 3)
        #expect(index(table, "a.io", "/api/v2", port: 8443) == 3)
        #expect(index(table, "c.b.io", "/x?q") == 2)
        #expect(index(table, "c.b.io", "/y") == -1)
        #expect(index(table, "nowhere", "/") == -1)
        #expect(index(table, "a.io:bad", "/") == -1)
        #expect(index(table, "", "/") == -1)
        // `lookup` keeps answering the same as before for the same requests.
        #expect(match(table, "a.io", "/api/v2") == .service(1, stripPrefix: 4))
        #expect(match(table, "c.b.io", "/y") == .service(9, stripPrefix: 0))
    }

    @Test func hstsFieldIsPrecomputedAndReadBack() throws {
        let field = HTTPRoute.hstsField(maxAge: 31_536_000)
        #expect(String(decoding: field, as: UTF8.self) == "Strict-Transport-Security: max-age=31536000\r\n")
        let route = try HTTPRoute(host: "a.io", service: 0, hstsField: field)
        #expect(route.hstsMaxAge == 31_536_000)
        #expect(try HTTPRoute(host: "a.io", service: 0).hstsMaxAge == nil)
        let table = HTTPRouteTable(routes: [route])
        let found = index(table, "a.io", "/", port: 443)
        #expect(table.routes[Int(found)].hstsField == field)
    }

    @Test func contextHandleReleasesOnceWhenDropped() {
        let released = Atomic<Int>(0)
        do {
            let handle = TLSContextHandle(pointer: OpaquePointer(bitPattern: 0x1000)!, summary: "a.io") { freed in
                #expect(Int(bitPattern: UnsafeRawPointer(freed)) == 0x1000)
                released.add(1, ordering: .relaxed)
            }
            _ = RoutingSnapshot(generation: 1, listeners: [], services: [], endpoints: [], tlsContexts: [handle])
            #expect(released.load(ordering: .relaxed) == 0)
        }
        #expect(released.load(ordering: .relaxed) == 1)
    }

    @Test func renderShowsCertificatesTerminationRedirectAndHSTS() throws {
        let sniTable = HTTPRouteTable(
            routes: [
                try HTTPRoute(host: "db.example.com", service: 0),
                try HTTPRoute(host: "grafana.example.com", service: -1, terminate: true),
            ],
            defaultBackend: DefaultBackend(terminate: true))
        let terminated = HTTPRouteTable(
            routes: [
                try HTTPRoute(
                    host: "grafana.example.com", path: "/g", stripPath: true, service: 1,
                    hstsField: HTTPRoute.hstsField(maxAge: 600))
            ],
            defaultBackend: DefaultBackend(status: 421, body: Array("no\n".utf8)))
        let plain = HTTPRouteTable(routes: [
            try HTTPRoute(host: "grafana.example.com", service: -1, redirectHTTPS: true, httpsPort: 8443),
            try HTTPRoute(host: "www.example.com", service: -1, redirectHTTPS: true),
        ])
        let context = TLSContextHandle(
            pointer: OpaquePointer(bitPattern: 0x1000)!, summary: "grafana.example.com (default), *.example.com",
            release: { _ in })
        let snapshot = RoutingSnapshot(
            generation: 3,
            listeners: [
                Listener(
                    name: "https", address: try SocketAddress.parse("127.0.0.1:8443").get(), protocol: .tls,
                    service: -1, routes: 0, tlsContext: 0, terminatedRoutes: 1),
                Listener(
                    name: "http", address: try SocketAddress.parse("127.0.0.1:8080").get(), protocol: .http,
                    service: -1, routes: 2),
            ],
            services: [
                Service(name: "db-tls", algorithm: .roundrobin, endpoints: 0..<0),
                Service(name: "grafana", algorithm: .roundrobin, endpoints: 0..<0),
            ],
            endpoints: [],
            routeTables: [sniTable, terminated, plain],
            tlsContexts: [context])
        #expect(
            snapshot.render() == """
                generation 3
                listeners:
                  https  tls  127.0.0.1:8443 -> routes by server name
                    certificates grafana.example.com (default), *.example.com
                    db.example.com -> db-tls
                    grafana.example.com -> terminate
                    default -> terminate
                    terminated requests:
                      grafana.example.com /g -> grafana (strip /g) (hsts max-age=600)
                      default -> 421 "no\\n"
                  http  http  127.0.0.1:8080 -> routes
                    grafana.example.com / -> redirect https:8443
                    www.example.com / -> redirect https
                    default -> 404 "no route\\n"
                services:
                  db-tls  roundrobin  0 endpoint(s)
                  grafana  roundrobin  0 endpoint(s)
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                http: requestHead 5000 ms, upstreamIdlePerEndpoint 32, upstreamIdle 30000 ms
                tls: tlsHello 5000 ms
                """)
    }
}
