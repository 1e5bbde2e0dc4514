import Glibc
import SluiceReactor
import SluiceRouting
import Testing

/// The loops' metric tables, read through `Reactor.collect` while a real reactor proxies real
/// requests on loopback.
@Suite(.serialized) struct ObserveMetricsTests {
    static func reason(_ sample: LoopMetricsSample, _ reason: CloseReason) -> Int {
        sample.closeReasons[Int(reason.rawValue)]
    }

    @Test func httpRequestsAreCountedPerListenerServiceAndEndpoint() throws {
        let backend = TestBackend { head in
            .respond(head.contains("/fail") ? TestBackend.ok("boom!", status: 500) : TestBackend.ok("hello"))
        }
        defer { backend.stop() }
        let proxy = try TestProxy {
            Build.http(port: $0, services: [("app", [backend.port])], hosts: [("app.test", 0)])
        }
        defer { proxy.stop() }

        let fd = Net.connect(proxy.port)
        let first = request("app.test", "/a")
        let second = request("app.test", "/fail")
        Net.send(fd, first)
        let ok = try #require(readResponse(fd))
        Net.send(fd, second)
        let failed = try #require(readResponse(fd))
        #expect(ok.status == 200 && ok.body == Array("hello".utf8))
        #expect(failed.status == 500)

        let s = proxy.sample()
        #expect(s.frontends[0, .connections] == 1)
        #expect(s.frontends[0, .currentConnections] == 1)
        #expect(s.frontends[0, .httpRequests] == 2)
        #expect(s.frontends[0, .responses2xx] == 1)
        #expect(s.frontends[0, .responses5xx] == 1)
        #expect(s.frontends[0, .bytesIn] == first.utf8.count + second.utf8.count)
        #expect(s.frontends[0, .bytesOut] == ok.size + failed.size)
        let forwarded = backend.requests.reduce(0) { $0 + $1.utf8.count }
        let answered = TestBackend.ok("hello").count + TestBackend.ok("boom!", status: 500).count
        #expect(backend.requests.count == 2)
        #expect(s.backends[0, .httpRequests] == 2)
        #expect(s.backends[0, .connections] == 2)
        #expect(s.backends[0, .reuses] == 1)
        #expect(s.backends[0, .responses2xx] == 1)
        #expect(s.backends[0, .responses5xx] == 1)
        #expect(s.backends[0, .bytesIn] == forwarded)
        #expect(s.backends[0, .bytesOut] == answered)
        #expect(s.backends[0, .currentConnections] == 0)
        #expect(s.servers[0, .connections] == 2)
        #expect(s.servers[0, .httpRequests] == 2)
        #expect(s.servers[0, .reuses] == 1)
        #expect(s.servers[0, .responses2xx] == 1)
        #expect(s.servers[0, .responses5xx] == 1)
        #expect(s.servers[0, .bytesIn] == forwarded)
        #expect(s.servers[0, .bytesOut] == answered)
        #expect(s.servers[0, .currentConnections] == 0)
        #expect(s.requestDuration.counts == [2])
        #expect(s.connectDuration.counts == [1])
        #expect(s.requestDuration.buckets.reduce(0, +) == 2)

        Glibc.close(fd)
        let closed = proxy.sample { $0.frontends[0, .currentConnections] == 0 }
        #expect(closed.frontends[0, .currentConnections] == 0)
        #expect(Self.reason(closed, .clientClosed) == 1)
        #expect(closed.closeReasons.reduce(0, +) == 1)
    }

    @Test func proxyAnswersAreCountedAsSentAndTheirCausesAsErrors() throws {
        let backend = TestBackend { _ in .respond(TestBackend.ok()) }
        defer { backend.stop() }
        let proxy = try TestProxy {
            Build.http(
                port: $0, services: [("app", [backend.port]), ("empty", [])],
                hosts: [("app.test", 0), ("empty.test", 1)])
        }
        defer { proxy.stop() }

        // No route: the default backend's 404, the connection kept.
        let fd = Net.connect(proxy.port)
        Net.send(fd, request("nowhere.test"))
        #expect(readResponse(fd)?.status == 404)
        // No endpoint: 503, and the connection closes.
        Net.send(fd, request("empty.test"))
        #expect(readResponse(fd)?.status == 503)
        Glibc.close(fd)
        // A malformed request: 400.
        let bad = Net.connect(proxy.port)
        Net.send(bad, "GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        #expect(readResponse(bad)?.status == 400)
        Glibc.close(bad)

        let s = proxy.sample { $0.frontends[0, .currentConnections] == 0 }
        #expect(s.frontends[0, .httpRequests] == 3)
        #expect(s.frontends[0, .noRoute] == 1)
        #expect(s.frontends[0, .responses4xx] == 2)
        #expect(s.frontends[0, .responses5xx] == 1)
        #expect(s.frontends[0, .requestErrors] == 1)
        #expect(s.backends[1, .httpRequests] == 1)
        #expect(s.backends[1, .noEndpoint] == 1)
        #expect(s.backends[1, .responses5xx] == 0)
        #expect(s.backends[0, .httpRequests] == 0)
        #expect(Self.reason(s, .noEndpoint) == 1)
        #expect(Self.reason(s, .badRequest) == 1)
        #expect(s.frontends[0, .currentConnections] == 0)
    }

    @Test func serverTimeoutResetAndRefusedUpstreamAreCountedWithTheirReasons() throws {
        let hold = TestBackend { _ in .hold(TestBackend.ok()) }
        defer { hold.stop() }
        let reset = TestBackend { _ in .reset }
        defer { reset.stop() }
        let refused = Net.freePort()
        var timeouts = Timeouts()
        timeouts.serverMillis = 300
        let proxy = try TestProxy {
            Build.http(
                port: $0, services: [("slow", [hold.port]), ("reset", [reset.port]), ("down", [refused])],
                hosts: [("slow.test", 0), ("reset.test", 1), ("down.test", 2)], timeouts: timeouts)
        }
        defer { proxy.stop() }

        for (host, status) in [("slow.test", 504), ("reset.test", 502), ("down.test", 502)] {
            let fd = Net.connect(proxy.port)
            Net.send(fd, request(host))
            #expect(readResponse(fd)?.status == status, "\(host)")
            Glibc.close(fd)
        }
        let s = proxy.sample { $0.frontends[0, .currentConnections] == 0 }
        #expect(s.backends[0, .timeoutServer] == 1)
        #expect(s.backends[0, .connections] == 1)
        #expect(s.backends[1, .responseErrors] == 1)
        #expect(s.backends[2, .connectionErrors] == 1)
        #expect(s.servers[2, .connectionErrors] == 1)
        #expect(s.backends[2, .connections] == 0)
        #expect(s.frontends[0, .responses5xx] == 3)
        #expect(Self.reason(s, .serverTimeout) == 1)
        #expect(Self.reason(s, .upstreamReset) == 1)
        #expect(Self.reason(s, .connectFailed) == 1)
        for row in 0..<3 { #expect(s.backends[row, .currentConnections] == 0) }
        // The 504 took the server timeout, and is in the service's request-duration histogram.
        #expect(s.requestDuration.counts[0] == 1)
        #expect(s.requestDuration.sumMicros[0] >= 300_000)
    }

    @Test func tcpTunnelsCountBytesBothWaysAndTheirGauges() throws {
        let echo = TestBackend(echo: true)
        defer { echo.stop() }
        let proxy = try TestProxy { port in
            let (services, endpoints) = Build.services([("echo", [echo.port])])
            return RoutingSnapshot(
                generation: 1,
                listeners: [Listener(name: "tcp", address: Build.address(port), protocol: .tcp, service: 0)],
                services: services, endpoints: endpoints)
        }
        defer { proxy.stop() }

        let fd = Net.connect(proxy.port)
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 3000)
        Net.send(fd, payload)
        var echoed: [UInt8] = []
        while echoed.count < payload.count, let chunk = Net.receive(fd) { echoed += chunk }
        #expect(echoed == payload)
        let open = proxy.sample()
        #expect(open.frontends[0, .currentConnections] == 1)
        #expect(open.backends[0, .currentConnections] == 1)
        #expect(open.servers[0, .currentConnections] == 1)
        #expect(open.backends[0, .connections] == 1)
        // A scrape sees the bytes of a tunnel still open.
        #expect(open.frontends[0, .bytesIn] == 3000)
        #expect(open.frontends[0, .bytesOut] == 3000)
        #expect(open.backends[0, .bytesIn] == 3000)
        #expect(open.backends[0, .bytesOut] == 3000)
        #expect(open.connectDuration.counts == [1])

        Glibc.close(fd)
        let s = proxy.sample { $0.frontends[0, .currentConnections] == 0 && $0.closeReasons.reduce(0, +) == 1 }
        #expect(s.backends[0, .currentConnections] == 0)
        #expect(s.servers[0, .currentConnections] == 0)
        #expect(s.frontends[0, .bytesIn] == 3000)
        #expect(s.servers[0, .bytesOut] == 3000)
        #expect(Self.reason(s, .clientClosed) == 1)
    }

    /// Rows are re-filed by identity across a swap while requests are in flight: a renamed
    /// service's row is dropped (and the in-flight request's decrement with it), a kept
    /// service and endpoint keep their counts under new indices, and every gauge comes back
    /// to exactly 0.
    @Test func rowsAreRefiledAcrossASwapWithRequestsInFlight() throws {
        let renamed = TestBackend { _ in .hold(TestBackend.ok("late")) }
        defer { renamed.stop() }
        let kept = TestBackend { _ in .hold(TestBackend.ok("kept")) }
        defer { kept.stop() }
        let proxy = try TestProxy {
            Build.http(
                port: $0, services: [("a", [renamed.port]), ("k", [kept.port])],
                hosts: [("a.test", 0), ("k.test", 1)])
        }
        defer { proxy.stop() }
        let port = proxy.port

        let toRenamed = Net.connect(port)
        Net.send(toRenamed, request("a.test"))
        let toKept = Net.connect(port)
        Net.send(toKept, request("k.test"))
        #expect(renamed.waitForRequests(1) && kept.waitForRequests(1))
        let before = proxy.sample {
            $0.backends[0, .currentConnections] == 1 && $0.backends[1, .currentConnections] == 1
        }
        #expect(before.servers[1, .currentConnections] == 1)
        #expect(before.frontends[0, .currentConnections] == 2)

        // "a" is renamed "a2"; "k" moves to index 0, its endpoint too.
        let (services, endpoints) = Build.services([("k", [kept.port]), ("a2", [renamed.port])])
        let next = RoutingSnapshot(
            generation: 2, listeners: proxy.snapshot.listeners, services: services, endpoints: endpoints,
            routeTables: [
                HTTPRouteTable(routes: [
                    try HTTPRoute(host: "a.test", service: 1), try HTTPRoute(host: "k.test", service: 0),
                ])
            ])
        try proxy.apply(next)

        let swapped = proxy.sample()
        #expect(swapped.backends.rows == 2)
        #expect(swapped.backends[0, .httpRequests] == 1)
        #expect(swapped.backends[0, .currentConnections] == 1)
        #expect(swapped.servers[0, .currentConnections] == 1)
        #expect(swapped.servers[0, .connections] == 1)
        #expect(swapped.backends[1, .httpRequests] == 0)
        #expect(swapped.backends[1, .currentConnections] == 0)
        #expect(swapped.servers[1, .currentConnections] == 0)
        #expect(swapped.frontends[0, .connections] == 2)
        #expect(swapped.frontends[0, .currentConnections] == 2)

        renamed.release()
        kept.release()
        #expect(readResponse(toRenamed)?.body == Array("late".utf8))
        #expect(readResponse(toKept)?.body == Array("kept".utf8))
        let answered = proxy.sample { $0.backends[0, .responses2xx] == 1 }
        #expect(answered.backends[0, .currentConnections] == 0)
        #expect(answered.servers[0, .currentConnections] == 0)
        #expect(answered.servers[0, .responses2xx] == 1)
        #expect(answered.requestDuration.counts[0] == 1)
        // The renamed service's request was counted on a row that left: nothing lands on a2.
        #expect(answered.backends[1, .currentConnections] == 0)
        #expect(answered.backends[1, .responses2xx] == 0)
        #expect(answered.servers[1, .currentConnections] == 0)
        #expect(answered.frontends[0, .responses2xx] == 2)

        // The next request to a.test counts on a2 from 0.
        Net.send(toRenamed, request("a.test"))
        #expect(readResponse(toRenamed)?.status == 200)
        Glibc.close(toRenamed)
        Glibc.close(toKept)
        let done = proxy.sample { $0.frontends[0, .currentConnections] == 0 }
        #expect(done.backends[1, .httpRequests] == 1)
        #expect(done.backends[1, .responses2xx] == 1)
        for row in 0..<2 {
            #expect(done.backends[row, .currentConnections] == 0)
            #expect(done.servers[row, .currentConnections] == 0)
        }
        #expect(done.frontends[0, .currentConnections] == 0)
    }
}
