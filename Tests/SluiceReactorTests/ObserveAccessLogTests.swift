import Glibc
import SluiceReactor
import SluiceRouting
import SluiceWire
import Testing

/// Access-log records and request ids, from a real reactor proxying real requests on
/// loopback; every record is checked field by field against the request that made it.
@Suite(.serialized) struct ObserveAccessLogTests {
    static func isHex32(_ text: String) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    static func requestID(in head: String) -> String? {
        for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("x-request-id:") {
            return String(line.dropFirst("x-request-id:".count).drop { $0 == " " })
        }
        return nil
    }

    static func requestIDFields(in head: String) -> Int {
        head.split(separator: "\r\n").filter { $0.lowercased().hasPrefix("x-request-id:") }.count
    }

    @Test func httpRecordsCarryEveryField() throws {
        let backend = TestBackend { head in
            .respond(head.contains("/fail") ? TestBackend.ok("boom!", status: 500) : TestBackend.ok("hello"))
        }
        defer { backend.stop() }
        let proxy = try TestProxy {
            Build.http(port: $0, services: [("app", [backend.port])], hosts: [("app.test", 0)])
        }
        defer { proxy.stop() }

        let fd = Net.connect(proxy.port)
        let clientPort = Net.localPort(fd)
        let first = request("app.test", "/a?x=1", extra: "X-Request-ID: abc-123\r\n")
        Net.send(fd, first)
        let ok = try #require(readResponse(fd))
        let second = request("app.test", "/fail", method: "POST", extra: "Content-Length: 0\r\n")
        Net.send(fd, second)
        let failed = try #require(readResponse(fd))
        let third = request("app.test", "/bye", extra: "Connection: close\r\n")
        Net.send(fd, third)
        let last = try #require(readResponse(fd))
        #expect(ok.status == 200 && failed.status == 500 && last.status == 200)
        Glibc.close(fd)

        let records = proxy.records(atLeast: 3)
        try #require(records.count == 3)
        let heads = backend.requests
        try #require(heads.count == 3)

        let r = records[0]
        #expect(r.kind == .http)
        #expect(r.text(.listener) == "web")
        #expect(!r.clientV6 && r.clientLo == UInt64(Net.loopback) && r.clientPort == clientPort)
        #expect(r.text(.host) == "app.test")
        #expect(r.method == HTTPMethod.get.rawValue)
        #expect(r.text(.target) == "/a?x=1")
        #expect(r.status == 200)
        #expect(r.bytesIn == Int64(first.utf8.count))
        #expect(r.bytesOut == Int64(ok.size))
        #expect(r.text(.service) == "app")
        #expect(!r.endpointV6 && r.endpointLo == UInt64(Net.loopback) && r.endpointPort == backend.port)
        #expect(r.requestMicros >= 0 && r.connectMicros >= 0 && r.responseMicros >= 0)
        #expect(r.totalMicros >= r.requestMicros && r.totalMicros >= r.responseMicros)
        #expect(r.startMicros > 0)
        #expect(r.reason == .none)
        #expect(r.tlsVersion == 0 && r.text(.sni).isEmpty)
        // A valid incoming id is passed on as it came.
        #expect(r.text(.requestID) == "abc-123")
        #expect(Self.requestID(in: heads[0]) == "abc-123")

        let f = records[1]
        #expect(f.status == 500 && f.method == HTTPMethod.post.rawValue && f.text(.target) == "/fail")
        #expect(f.bytesIn == Int64(second.utf8.count) && f.bytesOut == Int64(failed.size))
        // The upstream parked after the first request was reused: no connect.
        #expect(f.connectMicros == -1)
        #expect(f.startMicros >= r.startMicros)
        #expect(Self.isHex32(f.text(.requestID)))
        #expect(Self.requestID(in: heads[1]) == f.text(.requestID))

        #expect(r.truncated == 0 && f.truncated == 0)

        let l = records[2]
        #expect(l.status == 200 && l.reason == .done)
        #expect(Self.isHex32(l.text(.requestID)) && l.text(.requestID) != f.text(.requestID))
        #expect(Self.requestID(in: heads[2]) == l.text(.requestID))
    }

    @Test func aLongTargetIsCutAndMarked() throws {
        let backend = TestBackend { _ in .respond(TestBackend.ok()) }
        defer { backend.stop() }
        // A ring of two records: the third reuses the first one's slot.
        let proxy = try TestProxy(accessLog: 2) {
            Build.http(port: $0, services: [("app", [backend.port])], hosts: [("app.test", 0)])
        }
        defer { proxy.stop() }
        let path = "/" + String(repeating: "p", count: 400)
        let fd = Net.connect(proxy.port)
        for (k, target) in [path, "/short", "/s2"].enumerated() {
            Net.send(fd, request("app.test", target))
            #expect(readResponse(fd)?.status == 200)
            #expect(proxy.records(atLeast: k + 1).count == k + 1)
        }
        Glibc.close(fd)
        let records = proxy.records(atLeast: 3)
        try #require(records.count == 3)
        let capacity = AccessRecord.Field.target.capacity
        #expect(records[0].text(.target) == String(path.prefix(capacity)))
        #expect(records[0].truncated == UInt8(1) << UInt8(AccessRecord.Field.target.rawValue))
        // A slot's next record does not inherit the mark.
        #expect(records[1].text(.target) == "/short" && records[1].truncated == 0)
        #expect(records[2].text(.target) == "/s2" && records[2].truncated == 0)
        #expect(proxy.reactor.accessLogRings[0].dropped == 0)
    }

    @Test func failuresAreRecordedWithTheirReasons() throws {
        let hold = TestBackend { _ in .hold(TestBackend.ok()) }
        defer { hold.stop() }
        let reset = TestBackend { _ in .reset }
        defer { reset.stop() }
        var timeouts = Timeouts()
        timeouts.serverMillis = 300
        let proxy = try TestProxy {
            Build.http(
                port: $0, services: [("slow", [hold.port]), ("reset", [reset.port])],
                hosts: [("slow.test", 0), ("reset.test", 1)], timeouts: timeouts)
        }
        defer { proxy.stop() }

        for (host, status) in [("slow.test", 504), ("reset.test", 502)] {
            let fd = Net.connect(proxy.port)
            Net.send(fd, request(host))
            #expect(readResponse(fd)?.status == status)
            Glibc.close(fd)
        }
        // A client that resets mid-head.
        let gone = Net.connect(proxy.port)
        Net.send(gone, "GET / HTTP/1.1\r\nHost: slow")
        _ = proxy.sample { $0.frontends[0, .bytesIn] > 0 && $0.frontends[0, .connections] == 3 }
        Net.reset(gone)

        let records = proxy.records(atLeast: 3)
        try #require(records.count == 3)
        let timedOut = records[0]
        #expect(timedOut.status == 504 && timedOut.reason == .serverTimeout)
        #expect(timedOut.text(.service) == "slow" && timedOut.endpointPort == hold.port)
        #expect(timedOut.totalMicros >= 300_000)
        #expect(timedOut.responseMicros == -1)
        let wasReset = records[1]
        #expect(wasReset.status == 502 && wasReset.reason == .upstreamReset)
        #expect(wasReset.text(.service) == "reset" && wasReset.endpointPort == reset.port)
        let cut = records[2]
        #expect(cut.status == 0 && cut.reason == .clientReset)
        #expect(cut.method == AccessRecord.noMethod && cut.text(.host).isEmpty)
        #expect(cut.bytesIn == Int64("GET / HTTP/1.1\r\nHost: slow".utf8.count))
    }

    @Test func tcpAndPassthroughConnectionsAreRecordedWhenTheyClose() throws {
        let echo = TestBackend(echo: true)
        defer { echo.stop() }
        var tlsPort: UInt16 = 0
        let proxy = try TestProxy { port in
            tlsPort = Net.listenerPort()
            let (services, endpoints) = Build.services([("echo", [echo.port])])
            let sni = HTTPRouteTable(routes: [try! HTTPRoute(host: "example.com", service: 0)])
            return RoutingSnapshot(
                generation: 1,
                listeners: [
                    Listener(name: "raw", address: Build.address(port), protocol: .tcp, service: 0),
                    Listener(name: "sni", address: Build.address(tlsPort), protocol: .tls, service: -1, routes: 0),
                ],
                services: services, endpoints: endpoints, routeTables: [sni])
        }
        defer { proxy.stop() }

        let fd = Net.connect(proxy.port)
        let clientPort = Net.localPort(fd)
        Net.send(fd, "ping")
        #expect(Net.receive(fd) == Array("ping".utf8))
        Glibc.close(fd)
        var records = proxy.records(atLeast: 1)
        try #require(records.count == 1)
        let t = records[0]
        #expect(t.kind == .tcp && t.text(.listener) == "raw")
        #expect(t.clientLo == UInt64(Net.loopback) && t.clientPort == clientPort)
        #expect(t.status == 0 && t.bytesIn == 4 && t.bytesOut == 4)
        #expect(t.text(.service) == "echo" && t.endpointPort == echo.port)
        #expect(t.requestMicros >= 0 && t.connectMicros >= 0 && t.responseMicros >= 0)
        #expect(t.totalMicros >= t.requestMicros)
        #expect(t.reason == .clientClosed)
        #expect(t.text(.host).isEmpty && t.text(.requestID).isEmpty)

        let hello = ClientHelloBytes.make(serverName: "example.com")
        let tls = Net.connect(tlsPort)
        Net.send(tls, hello)
        var echoed: [UInt8] = []
        while echoed.count < hello.count, let chunk = Net.receive(tls) { echoed += chunk }
        #expect(echoed == hello)
        Glibc.close(tls)
        records = proxy.records(atLeast: 2)
        try #require(records.count == 2)
        let p = records[1]
        #expect(p.kind == .tlsPassthrough && p.text(.listener) == "sni")
        #expect(p.text(.sni) == "example.com" && p.tlsVersion == 0)
        #expect(p.bytesIn == Int64(hello.count) && p.bytesOut == Int64(hello.count))
        #expect(p.text(.service) == "echo" && p.reason == .clientClosed)
    }

    @Test func samplingKeepsFailuresAndErrorsModeOnlyFailures() throws {
        let backend = TestBackend { head in
            .respond(head.contains("/fail") ? TestBackend.ok("boom!", status: 503) : TestBackend.ok())
        }
        defer { backend.stop() }
        for policy in [AccessLogPolicy(mode: .on, samplePerMillion: 0), AccessLogPolicy(mode: .errors)] {
            let proxy = try TestProxy {
                Build.http(port: $0, services: [("app", [backend.port])], hosts: [("app.test", 0)], log: policy)
            }
            defer { proxy.stop() }
            let fd = Net.connect(proxy.port)
            for path in ["/1", "/2", "/3"] {
                Net.send(fd, request("app.test", path))
                #expect(readResponse(fd)?.status == 200)
            }
            Net.send(fd, request("nowhere.test"))
            #expect(readResponse(fd)?.status == 404)
            Net.send(fd, request("app.test", "/fail"))
            #expect(readResponse(fd)?.status == 503)
            // The 503 is published after every earlier request's record would have been.
            let records = proxy.records(atLeast: 1)
            #expect(records.count == 1, "\(policy.mode)")
            #expect(records.first?.status == 503 && records.first?.text(.target) == "/fail")
            Glibc.close(fd)
        }
    }

    @Test func proxyHeaderSourceIsTheRecordedClient() throws {
        let backend = TestBackend { _ in .respond(TestBackend.ok()) }
        defer { backend.stop() }
        let proxy = try TestProxy { port in
            let base = Build.http(port: port, services: [("app", [backend.port])], hosts: [("app.test", 0)])
            var listener = base.listeners[0]
            listener.acceptProxy = [CIDR(address: .v4(0x7F00_0000), prefixLength: 8)]
            return RoutingSnapshot(
                generation: 1, listeners: [listener], services: base.services, endpoints: base.endpoints,
                routeTables: base.routeTables)
        }
        defer { proxy.stop() }
        let fd = Net.connect(proxy.port)
        Net.send(fd, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" + request("app.test"))
        #expect(readResponse(fd)?.status == 200)
        Glibc.close(fd)
        let records = proxy.records(atLeast: 1)
        try #require(records.count == 1)
        #expect(records[0].clientLo == 0xCB00_7107 && records[0].clientPort == 5555)
        #expect(records[0].status == 200)
    }

    /// Without an access log (or with the listener's log off), the forwarded head is as it
    /// always was: incoming X-Request-ID fields are passed as they are, none is added.
    @Test func requestHeadsAreUntouchedWhenNothingIsLogged() throws {
        let backend = TestBackend { _ in .respond(TestBackend.ok()) }
        defer { backend.stop() }
        let setups: [(Int, AccessLogPolicy)] = [(0, AccessLogPolicy()), (64, AccessLogPolicy(mode: .off))]
        for (capacity, policy) in setups {
            let proxy = try TestProxy(accessLog: capacity) {
                Build.http(port: $0, services: [("app", [backend.port])], hosts: [("app.test", 0)], log: policy)
            }
            defer { proxy.stop() }
            let before = backend.requests.count
            let fd = Net.connect(proxy.port)
            Net.send(fd, request("app.test"))
            #expect(readResponse(fd)?.status == 200)
            Net.send(fd, request("app.test", extra: "X-Request-ID: not valid\r\n"))
            #expect(readResponse(fd)?.status == 200)
            Glibc.close(fd)
            let heads = Array(backend.requests[before...])
            try #require(heads.count == 2)
            #expect(Self.requestID(in: heads[0]) == nil)
            #expect(Self.requestID(in: heads[1]) == "not valid")
            #expect(proxy.records(atLeast: 0).isEmpty)
        }
    }

    /// A logged listener replaces an id that cannot be passed on, and drops repeats.
    @Test func invalidOrRepeatedRequestIDsAreReplaced() throws {
        let backend = TestBackend { _ in .respond(TestBackend.ok()) }
        defer { backend.stop() }
        let proxy = try TestProxy {
            Build.http(port: $0, services: [("app", [backend.port])], hosts: [("app.test", 0)])
        }
        defer { proxy.stop() }
        let fd = Net.connect(proxy.port)
        let long = String(repeating: "a", count: 65)
        for extra in [
            "X-Request-ID: not valid\r\n", "X-Request-ID: \(long)\r\n", "x-request-id: ok-1\r\nX-Request-ID: two\r\n",
        ] {
            Net.send(fd, request("app.test", extra: extra))
            #expect(readResponse(fd)?.status == 200)
        }
        Glibc.close(fd)
        let heads = backend.requests
        try #require(heads.count == 3)
        let records = proxy.records(atLeast: 3)
        try #require(records.count == 3)
        for k in 0..<2 {
            #expect(Self.isHex32(records[k].text(.requestID)))
            #expect(Self.requestID(in: heads[k]) == records[k].text(.requestID))
            #expect(Self.requestIDFields(in: heads[k]) == 1)
        }
        #expect(records[2].text(.requestID) == "ok-1")
        #expect(Self.requestIDFields(in: heads[2]) == 1)
        #expect(Self.requestID(in: heads[2]) == "ok-1")
    }
}

/// A minimal TLS 1.2-style ClientHello record naming `serverName`.
enum ClientHelloBytes {
    static func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    static func make(serverName: String) -> [UInt8] {
        let name = Array(serverName.utf8)
        let entry = [UInt8(0)] + u16(name.count) + name
        let sni = u16(entry.count) + entry
        let ext = u16(0) + u16(sni.count) + sni
        var body: [UInt8] = [3, 3] + [UInt8](repeating: 0xAB, count: 32)
        body += [0] + u16(2) + [0x13, 0x01] + [1, 0]
        body += u16(ext.count) + ext
        let handshake = [UInt8(1), 0] + u16(body.count) + body
        return [22, 3, 1] + u16(handshake.count) + handshake
    }
}
