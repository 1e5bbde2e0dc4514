import CShims
import Testing

@testable import SluiceSystem

/// Records what one side's session reports; serves bodies from `bodies`.
private final class Side: HTTP2SessionHandler {
    var opened: [Int32] = []
    var fields: [Int32: [(String, String, Bool)]] = [:]
    var done: [String] = []
    var data: [Int32: [UInt8]] = [:]
    var closed: [Int32: UInt32] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var offsets: [Int32: Int] = [:]
    var trailers: [Int32: [(String, String)]] = [:]
    var output: [UInt8] = []

    private static func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }

    func h2StreamOpened(_ session: HTTP2Session, stream: Int32) -> Bool {
        opened.append(stream)
        return true
    }

    func h2Field(
        _ session: HTTP2Session, stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        trailer: Bool
    ) -> Bool {
        fields[stream, default: []].append((Self.text(name), Self.text(value), trailer))
        return true
    }

    func h2FieldsDone(_ session: HTTP2Session, stream: Int32, endStream: Bool, trailer: Bool) {
        done.append("\(stream) end=\(endStream) trailer=\(trailer)")
    }

    func h2Data(_ session: HTTP2Session, stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        data[stream, default: []] += Array(bytes)
        session.consume(stream: stream, count: bytes.count)
    }

    func h2DataEnded(_ session: HTTP2Session, stream: Int32) { done.append("\(stream) data-end") }

    func h2StreamClosed(_ session: HTTP2Session, stream: Int32, errorCode: UInt32) { closed[stream] = errorCode }

    func h2FrameReceived(_ session: HTTP2Session, type: UInt8, flags: UInt8, stream: Int32, length: Int) {}

    func h2ReadBody(_ session: HTTP2Session, stream: Int32, into: UnsafeMutableRawBufferPointer)
        -> HTTP2Session.BodyRead
    {
        guard let body = bodies[stream] else { return .deferred }
        let offset = offsets[stream, default: 0]
        let count = min(into.count, body.count - offset)
        body.withUnsafeBytes { into.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count])) }
        offsets[stream] = offset + count
        let end = offset + count == body.count
        if end, let fields = trailers[stream] {
            #expect(withFields(fields) { session.submitTrailers(stream: stream, fields: $0) })
        }
        return .bytes(count, end: end)
    }

    func h2Output(_ session: HTTP2Session, _ bytes: UnsafeRawBufferPointer) -> Int {
        output += Array(bytes)
        return bytes.count
    }
}

/// Runs `body` with `pairs` as session fields (the bytes live during the call).
private func withFields<R>(_ pairs: [(String, String)], _ body: (UnsafeBufferPointer<HTTP2Session.Field>) -> R) -> R {
    let storage = pairs.map { (Array($0.0.utf8), Array($0.1.utf8)) }
    var fields: [HTTP2Session.Field] = []
    var keep: [UnsafeMutableRawBufferPointer] = []
    defer { keep.forEach { $0.deallocate() } }
    for (name, value) in storage {
        let n = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, name.count), alignment: 1)
        let v = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, value.count), alignment: 1)
        n.copyBytes(from: name)
        v.copyBytes(from: value)
        keep += [n, v]
        fields.append(
            HTTP2Session.Field(
                name: UnsafeRawBufferPointer(rebasing: n[0..<name.count]),
                value: UnsafeRawBufferPointer(rebasing: v[0..<value.count])))
    }
    return fields.withUnsafeBufferPointer { body($0) }
}

/// A client session and a server session of this wrapper, talking in memory.
private struct Link {
    let clientSide = Side()
    let serverSide = Side()
    let client: HTTP2Session
    let server: HTTP2Session

    init(serverStreams: UInt32 = 100, pool: OpaquePointer? = nil) throws {
        var settings = HTTP2Session.Settings()
        settings.maxConcurrentStreams = serverStreams
        client = try HTTP2Session(
            handler: clientSide, settings: HTTP2Session.Settings(), tag: 1, tagGeneration: 1, client: true, pool: pool)
        server = try HTTP2Session(handler: serverSide, settings: settings, tag: 2, tagGeneration: 1, pool: pool)
        pump()
    }

    func pump() {
        for _ in 0..<100 {
            #expect(client.flush() == nil)
            let up = clientSide.output
            clientSide.output = []
            if !up.isEmpty { #expect(up.withUnsafeBytes { server.receive($0) } == nil) }
            #expect(server.flush() == nil)
            let down = serverSide.output
            serverSide.output = []
            if !down.isEmpty { #expect(down.withUnsafeBytes { client.receive($0) } == nil) }
            if up.isEmpty && down.isEmpty { return }
        }
        Issue.record("the sessions kept talking")
    }

    func request(_ pairs: [(String, String)], body: Bool, owner: Int32) -> Int32? {
        withFields(pairs) { client.submitRequest(fields: $0, body: body, owner: owner) }
    }
}

private let get = [(":method", "GET"), (":scheme", "http"), (":authority", "a.example.com"), (":path", "/x")]

@Suite struct HTTP2ClientSessionTests {
    @Test func requestBodyResponseAndTrailersCrossBetweenTheTwoSides() throws {
        let link = try Link()
        #expect(link.client.isClient && !link.server.isClient)
        let post = [(":method", "POST"), (":scheme", "http"), (":authority", "a.example.com"), (":path", "/up")]
        let stream = try #require(link.request(post + [("te", "trailers")], body: true, owner: 42))
        #expect(link.client.owner(of: stream) == nil)
        #expect(link.client.openStreams == 1)
        link.clientSide.bodies[stream] = Array(repeating: 7, count: 100_000)
        link.pump()
        #expect(link.client.owner(of: stream) == 42)
        #expect(link.serverSide.opened == [stream])
        #expect(link.serverSide.fields[stream]?.contains { $0.0 == "te" && $0.1 == "trailers" } == true)
        #expect(link.serverSide.data[stream]?.count == 100_000)
        #expect(link.serverSide.done.contains("\(stream) data-end"))
        link.serverSide.bodies[stream] = Array("pong".utf8)
        link.serverSide.trailers[stream] = [("grpc-status", "0")]
        #expect(
            withFields([("content-type", "application/grpc")]) {
                link.server.submitResponse(stream: stream, status: 200, fields: $0, body: true)
            })
        link.pump()
        let seen = link.clientSide.fields[stream] ?? []
        #expect(seen.first.map { $0.0 == ":status" && $0.1 == "200" && !$0.2 } == true)
        #expect(seen.contains { $0.0 == "content-type" && !$0.2 })
        #expect(seen.contains { $0.0 == "grpc-status" && $0.1 == "0" && $0.2 })
        #expect(link.clientSide.data[stream] == Array("pong".utf8))
        #expect(link.clientSide.closed[stream] == 0)
        #expect(link.client.openStreams == 0)
    }

    @Test func forgottenStreamIsResetAndReportsNothingMore() throws {
        let link = try Link()
        let stream = try #require(link.request(get, body: false, owner: 3))
        link.pump()
        link.client.forget(stream: stream, errorCode: 0x8)
        #expect(link.client.owner(of: stream) == nil)
        #expect(link.client.openStreams == 0)
        link.pump()
        #expect(link.serverSide.closed[stream] == 0x8)
        #expect(link.clientSide.closed[stream] == nil)
    }

    @Test func requestForgottenBeforeItsHeadersWentOutIsNeverSent() throws {
        let link = try Link()
        let stream = try #require(link.request(get, body: false, owner: 5))
        link.client.forget(stream: stream, errorCode: 0x8)
        #expect(link.client.openStreams == 0)
        link.pump()
        #expect(link.serverSide.opened.isEmpty)
        let next = try #require(link.request(get, body: false, owner: 6))
        link.pump()
        #expect(link.serverSide.opened == [next])
    }

    @Test func interimThenFinalHeadAreBothReported() throws {
        let link = try Link()
        let stream = try #require(link.request(get, body: false, owner: 0))
        link.pump()
        #expect(withFields([]) { link.server.submitInterim(stream: stream, status: 103, fields: $0) })
        #expect(withFields([]) { link.server.submitResponse(stream: stream, status: 204, fields: $0, body: false) })
        link.pump()
        let statuses = (link.clientSide.fields[stream] ?? []).filter { $0.0 == ":status" }.map(\.1)
        #expect(statuses == ["103", "204"])
        #expect(link.clientSide.done.last == "\(stream) end=true trailer=true")
    }

    /// With a pool, a steady stream of requests costs nghttp2 no call to malloc on either side.
    @Test func pooledBlocksMakeStreamsFreeOfMalloc() throws {
        let pool = HTTP2Session.makePool()
        defer { HTTP2Session.freePool(pool) }
        do {
            let link = try Link(pool: pool)
            func exchange() throws {
                let stream = try #require(link.request(get, body: false, owner: 1))
                link.pump()
                link.serverSide.bodies[stream] = Array("hello".utf8)
                #expect(
                    withFields([("content-type", "text/plain")]) {
                        link.server.submitResponse(stream: stream, status: 200, fields: $0, body: true)
                    })
                link.pump()
                #expect(link.clientSide.closed[stream] == 0)
            }
            for _ in 0..<5 { try exchange() }
            let before = link.client.allocations + link.server.allocations
            let calls = link.client.requests + link.server.requests
            for _ in 0..<50 { try exchange() }
            #expect(link.client.requests + link.server.requests - calls >= 100)
            #expect(link.client.allocations + link.server.allocations - before == 0)
        }
    }

    @Test func peerConcurrencyLimitIsKnownAfterItsSettings() throws {
        let link = try Link(serverStreams: 7)
        #expect(link.client.peerMaxConcurrentStreams == 7)
        #expect(link.request(get, body: false, owner: -1) == nil)
    }
}
