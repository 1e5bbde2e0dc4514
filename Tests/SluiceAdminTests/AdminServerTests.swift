import Logging
import SluiceAdmin
import SluiceReactor
import SluiceRouting
import SluiceSystem
import Synchronization
import Testing

/// A switchboard for the fake source: what the probes and scrapes answer.
final class FakeLoops: Sendable {
    let healthy = Atomic(true)
    let ready = Atomic(true)
    /// Scrapes get nil (a loop did not answer) while set.
    let silent = Atomic(false)
    let collects = Atomic(0)
    let snapshot = Fixtures.snapshot(generation: 4, services: [("api", ["10.0.0.1:80"])])

    var source: AdminSource {
        AdminSource(
            workers: 1, stats: ProcessStats(startTimeMicros: 1_000_000),
            collect: { [self] _ in
                collects.wrappingAdd(1, ordering: .relaxed)
                if silent.load(ordering: .relaxed) { return nil }
                var sample = LoopMetricsSample.empty(snapshot: snapshot)
                sample.backends.add(0, .httpRequests, 42)
                return [sample]
            },
            healthy: { [self] in healthy.load(ordering: .relaxed) },
            ready: { [self] in ready.load(ordering: .relaxed) })
    }
}

@Suite(.serialized) struct AdminServerTests {
    static func server(_ loops: FakeLoops, _ configure: (inout AdminOptions) -> Void = { _ in }) throws -> AdminServer {
        var options = AdminOptions()
        configure(&options)
        let server = try AdminServer(
            address: Fixtures.address("127.0.0.1:0"), source: loops.source, options: options,
            logger: Logger(label: "admin-test"))
        server.start()
        return server
    }

    @Test func probesKeepAliveAndHead() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let client = try TestClient(server.boundAddress)
        try client.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        var r = try client.response()
        #expect(r.status == 200)
        #expect(r.text == "ok\n")
        #expect(r.headers["content-type"] == "text/plain; charset=utf-8")
        #expect(r.headers["connection"] == nil)
        loops.ready.store(false, ordering: .relaxed)
        try client.send("GET /readyz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        r = try client.response()
        #expect(r.status == 503)
        #expect(r.text == "not ready\n")
        loops.healthy.store(false, ordering: .relaxed)
        try client.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        r = try client.response(headOnly: true)
        #expect(r.status == 503)
        #expect(r.headers["content-length"] == "10")
        // The same connection still serves, and nothing followed the HEAD's head.
        try client.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        r = try client.response()
        #expect(r.status == 404)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let client = try TestClient(server.boundAddress)
        try client.send(
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /routes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let metrics = try client.response()
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metrics.text.contains("sluice_backend_http_requests_total{proxy=\"api\"} 42\n"))
        #expect(try client.response().text == "ok\n")
        let routes = try client.response()
        #expect(routes.status == 200)
        #expect(routes.headers["connection"] == "close")
        #expect(routes.headers["content-type"] == "application/json")
        #expect(routes.text.contains("\"generation\":4"))
        #expect(client.waitClosed(timeoutMillis: 5_000))
    }

    @Test func openMetricsOnAccept() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let client = try TestClient(server.boundAddress)
        try client.send(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: application/openmetrics-text; version=1.0.0\r\n\r\n")
        let r = try client.response()
        #expect(r.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8")
        #expect(r.text.hasSuffix("# EOF\n"))
    }

    @Test func errorsByStatus() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops) { $0.maxHeadBytes = 1024 }
        defer { server.close() }
        for (request, status) in [
            ("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
            ("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("GET /healthz HTTP/1.1\r\n\r\n", 400),
            ("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 2000) + "\r\n\r\n", 431),
        ] {
            let client = try TestClient(server.boundAddress)
            try client.send(request)
            let r = try client.response()
            #expect(r.status == status, "\(request.prefix(40))")
            if status == 405 { #expect(r.headers["allow"] == "GET, HEAD") }
            #expect(r.headers["connection"] == "close")
            #expect(client.waitClosed(timeoutMillis: 5_000), "closed after \(status)")
        }
    }

    /// A body the listener does not read (here 4 MiB after a POST) is drained after the answer,
    /// so the close does not reset the connection before the client has read the 405.
    @Test func unreadBodyDoesNotResetTheAnswer() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let client = try TestClient(server.boundAddress)
        let body = [UInt8](repeating: 0x61, count: 4 << 20)
        try client.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n")
        try client.send(body)
        let r = try client.response()
        #expect(r.status == 405)
        #expect(r.text == "method not allowed\n")
        #expect(client.waitClosed(timeoutMillis: 5_000))
    }

    @Test func http10ClosesUnlessKeepAlive() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let plain = try TestClient(server.boundAddress)
        try plain.send("GET /healthz HTTP/1.0\r\n\r\n")
        #expect(try plain.response().headers["connection"] == "close")
        #expect(plain.waitClosed(timeoutMillis: 5_000))
        let kept = try TestClient(server.boundAddress)
        try kept.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try kept.response().headers["connection"] == "keep-alive")
        try kept.send("GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try kept.response().status == 200)
    }

    @Test func scrapeAnswers503WhenALoopIsSilent() throws {
        let loops = FakeLoops()
        loops.silent.store(true, ordering: .relaxed)
        let server = try Self.server(loops)
        defer { server.close() }
        let client = try TestClient(server.boundAddress)
        for path in ["/metrics", "/routes", "/stats", "/stats.json"] {
            try client.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try client.response().status == 503, "\(path)")
        }
        loops.silent.store(false, ordering: .relaxed)
        try client.send("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        let page = try client.response()
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
    }

    /// A probe is answered while a scrape waits on loops that do not answer.
    @Test func probesDoNotQueueBehindAScrape() throws {
        let loops = FakeLoops()
        let gate = Atomic(true)
        let source = AdminSource(
            workers: 1, stats: ProcessStats(startTimeMicros: 0),
            collect: { _ in
                while gate.load(ordering: .relaxed) { Threads.sleep(millis: 5) }
                return nil
            },
            healthy: { true }, ready: { true })
        let server = try AdminServer(
            address: Fixtures.address("127.0.0.1:0"), source: source, logger: Logger(label: "admin-test"))
        server.start()
        defer {
            gate.store(false, ordering: .relaxed)
            server.close()
        }
        _ = loops
        let scraper = try TestClient(server.boundAddress)
        try scraper.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        let prober = try TestClient(server.boundAddress)
        let started = MonotonicClock.nowMillis()
        try prober.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try prober.response(timeoutMillis: 5_000).status == 200)
        try prober.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try prober.response(timeoutMillis: 5_000).status == 200)
        #expect(MonotonicClock.nowMillis() - started < 2_000)
        gate.store(false, ordering: .relaxed)
        #expect(try scraper.response().status == 503)
    }

    @Test func connectionsBeyondTheCapAreRefused() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops) { $0.maxConnections = 4 }
        defer { server.close() }
        var held: [TestClient] = []
        for _ in 0..<4 {
            let c = try TestClient(server.boundAddress)
            try c.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try c.response().status == 200)
            held.append(c)
        }
        let extra = try TestClient(server.boundAddress)
        #expect(extra.waitClosed(timeoutMillis: 5_000), "the fifth connection is closed at once")
        #expect(server.refused == 1)
        // One of the four leaves: a new one is served again.
        held.removeFirst()
        var served = false
        let deadline = MonotonicClock.nowMillis() + 5_000
        while !served && MonotonicClock.nowMillis() < deadline {
            let again = try TestClient(server.boundAddress)
            try? again.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            served = (try? again.response(timeoutMillis: 1_000).status) == 200
        }
        #expect(served)
    }

    @Test func idleAndSlowHeadsAreTimedOut() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops) {
            $0.idleMillis = 300
            $0.headMillis = 300
        }
        defer { server.close() }
        let idle = try TestClient(server.boundAddress)
        let started = MonotonicClock.nowMillis()
        #expect(idle.waitClosed(timeoutMillis: 5_000))
        #expect(MonotonicClock.nowMillis() - started >= 250)
        #expect(idle.bufferText.isEmpty, "an idle connection is closed without an answer")
        let slow = try TestClient(server.boundAddress)
        try slow.send("GET /healthz HTTP/1.1\r\nHo")
        let r = try slow.response()
        #expect(r.status == 408)
        #expect(slow.waitClosed(timeoutMillis: 5_000))
        // After an answer, the idle deadline starts again.
        let kept = try TestClient(server.boundAddress)
        try kept.send("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try kept.response().status == 200)
        #expect(kept.waitClosed(timeoutMillis: 5_000))
    }

    @Test func secondListenerOnTheSameAddressFails() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let port = server.boundAddress.port
        #expect(throws: AdminError.self) {
            _ = try AdminServer(
                address: Fixtures.address("127.0.0.1:\(port)"), source: loops.source,
                logger: Logger(label: "admin-test"))
        }
    }

    @Test func clientFetchesFromTheServer() throws {
        let loops = FakeLoops()
        let server = try Self.server(loops)
        defer { server.close() }
        let address = Fixtures.address("127.0.0.1:\(server.boundAddress.port)")
        let response = try AdminClient.get(address, path: "/stats.json")
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self).contains("\"name\":\"api\""))
        #expect(try AdminClient.get(address, path: "/").status == 200)
    }
}

@Suite struct AdminServerIPv6Tests {
    @Test func servesOnIPv6Loopback() throws {
        let loops = FakeLoops()
        let server: AdminServer
        do {
            server = try AdminServer(
                address: Fixtures.address("[::1]:0"), source: loops.source, logger: Logger(label: "admin-test"))
        } catch {
            // No IPv6 loopback on this machine: nothing to test.
            return
        }
        server.start()
        defer { server.close() }
        let response = try AdminClient.get(Fixtures.address("[::1]:\(server.boundAddress.port)"), path: "/healthz")
        #expect(response.status == 200)
        #expect(response.body == Array("ok\n".utf8))
    }
}
