import SluiceRouting
import Testing

@Suite struct RoutingSnapshotTests {
    private func table() throws -> RoutingSnapshot {
        let a = try SocketAddress.parse("10.0.0.1:80").get()
        let b = try SocketAddress.parse("[::1]:81").get()
        return RoutingSnapshot(
            generation: 4,
            listeners: [
                Listener(
                    name: "web", address: try SocketAddress.parse("0.0.0.0:8080").get(), protocol: .tcp, service: 1)
            ],
            services: [
                Service(name: "empty", algorithm: .leastconn, endpoints: 0..<0),
                Service(name: "app", algorithm: .roundrobin, endpoints: 0..<2),
            ],
            endpoints: [Endpoint(address: a, service: 1), Endpoint(address: b, service: 1)]
        )
    }

    @Test func serviceIndexByName() throws {
        let snapshot = try table()
        #expect(snapshot.serviceIndex(named: "app") == 1)
        #expect(snapshot.serviceIndex(named: "empty") == 0)
        #expect(snapshot.serviceIndex(named: "none") == nil)
    }

    @Test func renderListsEveryPart() throws {
        #expect(
            try table().render() == """
                generation 4
                listeners:
                  web  tcp  0.0.0.0:8080 -> app
                services:
                  empty  leastconn  0 endpoint(s)
                  app  roundrobin  2 endpoint(s)
                    10.0.0.1:80
                    [::1]:81
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                """
        )
    }

    @Test func renderShowsHTTPRoutesAndSettings() throws {
        let routes = HTTPRouteTable(
            routes: [
                try HTTPRoute(host: "grafana.example.com:30800", service: 0),
                try HTTPRoute(host: "*.Example.com", path: "/api", stripPath: true, service: 1),
            ],
            defaultBackend: DefaultBackend(status: 503, body: Array("down\n".utf8)))
        let fallback = HTTPRouteTable(routes: [], defaultBackend: DefaultBackend(service: 1))
        let snapshot = RoutingSnapshot(
            generation: 2,
            listeners: [
                Listener(
                    name: "web", address: try SocketAddress.parse("0.0.0.0:30800").get(), protocol: .http,
                    service: -1, routes: 0),
                Listener(
                    name: "rest", address: try SocketAddress.parse("0.0.0.0:30801").get(), protocol: .http,
                    service: -1, routes: 1),
            ],
            services: [
                Service(name: "grafana", algorithm: .cookie, endpoints: 0..<0, cookieName: Array("G".utf8)),
                Service(name: "api", algorithm: .roundrobin, endpoints: 0..<0),
            ],
            endpoints: [],
            routeTables: [routes, fallback]
        )
        #expect(
            snapshot.render() == """
                generation 2
                listeners:
                  web  http  0.0.0.0:30800 -> routes
                    grafana.example.com:30800 / -> grafana
                    *.example.com /api -> api (strip /api)
                    default -> 503 "down\\n"
                  rest  http  0.0.0.0:30801 -> routes
                    default -> api
                services:
                  grafana  cookie(G)  0 endpoint(s)
                  api  roundrobin  0 endpoint(s)
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                http: requestHead 5000 ms, upstreamIdlePerEndpoint 32, upstreamIdle 30000 ms
                """
        )
    }

    @Test func renderShowsTLSRoutesAcceptProxyAndProxyProtocol() throws {
        let sni = HTTPRouteTable(
            routes: [
                try HTTPRoute(host: "grafana.example.com", service: 0), try HTTPRoute(host: "*.Apps.io", service: 1),
            ],
            defaultBackend: DefaultBackend(service: 1))
        let closing = HTTPRouteTable(
            routes: [try HTTPRoute(host: "a.io", service: 0)], defaultBackend: DefaultBackend())
        let lan = try CIDR.parse("10.0.0.0/8").get()
        let loopback = try CIDR.parse("::1").get()
        var timeouts = Timeouts()
        timeouts.tlsHelloMillis = 2_500
        let snapshot = RoutingSnapshot(
            generation: 5,
            listeners: [
                Listener(
                    name: "tls", address: try SocketAddress.parse("0.0.0.0:30443").get(), protocol: .tls,
                    service: -1, routes: 0, acceptProxy: [lan, loopback]),
                Listener(
                    name: "strict", address: try SocketAddress.parse("[::]:30444").get(), protocol: .tls,
                    service: -1, routes: 1),
                Listener(
                    name: "db", address: try SocketAddress.parse("0.0.0.0:5432").get(), protocol: .tcp, service: 0,
                    acceptProxy: [lan]),
            ],
            services: [
                Service(name: "grafana", algorithm: .roundrobin, endpoints: 0..<0, proxyProtocol: .v2),
                Service(name: "fallback", algorithm: .source, endpoints: 0..<0, proxyProtocol: .v1),
            ],
            endpoints: [],
            routeTables: [sni, closing],
            timeouts: timeouts
        )
        #expect(
            snapshot.render() == """
                generation 5
                listeners:
                  tls  tls  0.0.0.0:30443 -> routes by server name
                    grafana.example.com -> grafana
                    *.apps.io -> fallback
                    default -> fallback
                    acceptProxy 10.0.0.0/8, ::1/128
                  strict  tls  [::]:30444 -> routes by server name
                    a.io -> grafana
                    default -> close
                  db  tcp  0.0.0.0:5432 -> grafana
                    acceptProxy 10.0.0.0/8
                services:
                  grafana  roundrobin  proxyProtocol v2  0 endpoint(s)
                  fallback  source  proxyProtocol v1  0 endpoint(s)
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                tls: tlsHello 2500 ms
                """
        )
    }

    @Test func newSettingsHaveTheDocumentedDefaults() {
        #expect(Timeouts().tlsHelloMillis == 5_000)
        #expect(Service(name: "a", algorithm: .roundrobin, endpoints: 0..<0).proxyProtocol == nil)
        #expect(ProxyVersion.allCases.map(\.rawValue) == ["v1", "v2"])
        #expect(ListenerProtocol(rawValue: "tls") == .tls)
        #expect(Timeouts().requestHeadMillis == 5_000)
        #expect(Limits().upstreamIdlePerEndpoint == 32)
        #expect(Limits().upstreamIdleMillis == 30_000)
        #expect(
            Listener(name: "a", address: SocketAddress(ip: .v4(0), port: 1), protocol: .tcp, service: 0).routes == -1)
    }

    @Test func listenersWithTheSameAddressAndProtocolShareAKey() throws {
        let address = try SocketAddress.parse("127.0.0.1:80").get()
        let a = Listener(name: "a", address: address, protocol: .tcp, service: 0)
        let b = Listener(name: "b", address: address, protocol: .tcp, service: 3)
        #expect(a.key == b.key)
    }
}
