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

    @Test func listenersWithTheSameAddressAndProtocolShareAKey() throws {
        let address = try SocketAddress.parse("127.0.0.1:80").get()
        let a = Listener(name: "a", address: address, protocol: .tcp, service: 0)
        let b = Listener(name: "b", address: address, protocol: .tcp, service: 3)
        #expect(a.key == b.key)
    }
}
