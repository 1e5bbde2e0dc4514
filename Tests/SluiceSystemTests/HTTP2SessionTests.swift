import CShims
import Testing

@testable import SluiceSystem

/// Runs `body` with `pairs` as session fields (the bytes live during the call).
private func withFields<R>(_ pairs: [(String, String)], _ body: (UnsafeBufferPointer<HTTP2Session.Field>) -> R) -> R {
    var storage: [UInt8] = []
    var ranges: [(Range<Int>, Range<Int>)] = []
    for (name, value) in pairs {
        let nameStart = storage.count
        storage += Array(name.utf8)
        let valueStart = storage.count
        storage += Array(value.utf8)
        ranges.append((nameStart..<valueStart, valueStart..<storage.count))
    }
    return storage.withUnsafeBytes { raw in
        let fields = ranges.map { name, value in
            HTTP2Session.Field(
                name: UnsafeRawBufferPointer(rebasing: raw[name]), value: UnsafeRawBufferPointer(rebasing: raw[value]))
        }
        return fields.withUnsafeBufferPointer { body($0) }
    }
}

private func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }

/// The server side's handler: records what the session reports, serves response bodies.
private final class Recorder: HTTP2SessionHandler {
    var events: [String] = []
    var fields: [Int32: [(String, String)]] = [:]
    var trailerFields: [Int32: [(String, String)]] = [:]
    var received: [Int32: [UInt8]] = [:]
    var dataCalls = 0
    var closed: [Int32: UInt32] = [:]
    var frames: [(type: UInt8, flags: UInt8, stream: Int32, length: Int)] = []
    var refuse = false
    var rejectField: String?
    /// Response bodies; a stream without one answers `.deferred`.
    var bodies: [Int32: [UInt8]] = [:]
    var bodyOffsets: [Int32: Int] = [:]
    var responseTrailers: [Int32: [(String, String)]] = [:]
    var failBody = false
    var output: [UInt8] = []
    /// Bytes h2Output takes until the next reset (nil: no limit).
    var outputBudget: Int?

    func h2StreamOpened(_ session: HTTP2Session, stream: Int32) -> Bool {
        events.append("open \(stream)")
        return !refuse
    }

    func h2Field(
        _ session: HTTP2Session, stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        trailer: Bool
    ) -> Bool {
        if text(name) == rejectField { return false }
        if trailer {
            trailerFields[stream, default: []].append((text(name), text(value)))
        } else {
            fields[stream, default: []].append((text(name), text(value)))
        }
        return true
    }

    func h2FieldsDone(_ session: HTTP2Session, stream: Int32, endStream: Bool, trailer: Bool) {
        events.append("fields \(stream) end=\(endStream) trailer=\(trailer)")
    }

    func h2Data(_ session: HTTP2Session, stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        dataCalls += 1
        received[stream, default: []] += Array(bytes)
    }

    func h2DataEnded(_ session: HTTP2Session, stream: Int32) { events.append("data-end \(stream)") }

    func h2StreamClosed(_ session: HTTP2Session, stream: Int32, errorCode: UInt32) {
        events.append("closed \(stream) \(errorCode)")
        closed[stream] = errorCode
    }

    func h2FrameReceived(_ session: HTTP2Session, type: UInt8, flags: UInt8, stream: Int32, length: Int) {
        frames.append((type, flags, stream, length))
    }

    func h2ReadBody(_ session: HTTP2Session, stream: Int32, into: UnsafeMutableRawBufferPointer)
        -> HTTP2Session.BodyRead
    {
        if failBody { return .failed }
        guard let body = bodies[stream] else { return .deferred }
        let offset = bodyOffsets[stream, default: 0]
        let count = min(into.count, body.count - offset)
        body.withUnsafeBytes { into.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count])) }
        bodyOffsets[stream] = offset + count
        let end = offset + count == body.count
        if end, let trailers = responseTrailers[stream] {
            let submitted = withFields(trailers) { session.submitTrailers(stream: stream, fields: $0) }
            #expect(submitted)
        }
        return .bytes(count, end: end)
    }

    func h2Output(_ session: HTTP2Session, _ bytes: UnsafeRawBufferPointer) -> Int {
        let count = min(bytes.count, outputBudget ?? bytes.count)
        outputBudget = outputBudget.map { $0 - count }
        output += Array(UnsafeRawBufferPointer(rebasing: bytes[0..<count]))
        return count
    }

    func takeOutput() -> [UInt8] {
        defer { output = [] }
        return output
    }
}

/// A client session built with nghttp2's client API, exchanging bytes in memory.
private final class Client {
    var session: OpaquePointer!
    var out: [UInt8] = []
    var frames: [(type: UInt8, flags: UInt8, stream: Int32)] = []
    var windowUpdates: [(stream: Int32, increment: Int32)] = []
    var goAways: [(lastStream: Int32, errorCode: UInt32)] = []
    var headers: [Int32: [(String, String)]] = [:]
    var trailers: [Int32: [(String, String)]] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var closed: [Int32: UInt32] = [:]
    var uploads: [Int32: ([UInt8], Int)] = [:]
    private var responded: Set<Int32> = []

    init(window: UInt32 = 65_535, autoWindowUpdate: Bool = true) {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_send_callback(callbacks) { _, data, length, _, user in
            Client.from(user).out += Array(UnsafeRawBufferPointer(start: data, count: length))
            return length
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            let client = Client.from(user)
            let hd = frame!.pointee.hd
            client.frames.append((hd.type, hd.flags, hd.stream_id))
            if hd.type == UInt8(NGHTTP2_WINDOW_UPDATE.rawValue) {
                client.windowUpdates.append((hd.stream_id, frame!.pointee.window_update.window_size_increment))
            }
            if hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
                client.goAways.append((frame!.pointee.goaway.last_stream_id, frame!.pointee.goaway.error_code))
            }
            if hd.type == UInt8(NGHTTP2_HEADERS.rawValue) { client.responded.insert(hd.stream_id) }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) {
            _, frame, name, nameLength, value, valueLength, _, user in
            let client = Client.from(user)
            let stream = frame!.pointee.hd.stream_id
            let pair = (
                text(UnsafeRawBufferPointer(start: name, count: nameLength)),
                text(UnsafeRawBufferPointer(start: value, count: valueLength))
            )
            if client.responded.contains(stream) {
                client.trailers[stream, default: []].append(pair)
            } else {
                client.headers[stream, default: []].append(pair)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, stream, data, length, user in
            Client.from(user).bodies[stream, default: []] += Array(UnsafeRawBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, stream, code, user in
            Client.from(user).closed[stream] = code
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        if !autoWindowUpdate { nghttp2_option_set_no_auto_window_update(option, 1) }
        nghttp2_session_client_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        var iv = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: window)
        ]
        nghttp2_submit_settings(session, 0, &iv, 1)
    }

    deinit { nghttp2_session_del(session) }

    static func from(_ user: UnsafeMutableRawPointer?) -> Client {
        Unmanaged<Client>.fromOpaque(user!).takeUnretainedValue()
    }

    /// Submits a request; `body` (nil: END_STREAM on HEADERS; empty array: HEADERS only, the
    /// stream left open) goes out through a data provider.
    func request(method: String = "GET", path: String = "/", extra: [(String, String)] = [], body: [UInt8]? = nil)
        -> Int32
    {
        let pairs = [(":method", method), (":scheme", "https"), (":authority", "example.com"), (":path", path)] + extra
        var storage: [[UInt8]] = pairs.flatMap { [Array($0.0.utf8), Array($0.1.utf8)] }
        return storage.withUnsafeMutableBufferPointer { buffers in
            var nva: [nghttp2_nv] = []
            for index in stride(from: 0, to: buffers.count, by: 2) {
                nva.append(
                    nghttp2_nv(
                        name: buffers[index].withUnsafeMutableBufferPointer { $0.baseAddress! },
                        value: buffers[index + 1].withUnsafeMutableBufferPointer { $0.baseAddress! },
                        namelen: buffers[index].count, valuelen: buffers[index + 1].count, flags: 0))
            }
            guard let body else { return nghttp2_submit_request(session, nil, nva, nva.count, nil, nil) }
            if body.isEmpty {
                return nghttp2_submit_headers(session, 0, -1, nil, nva, nva.count, nil)
            }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil)) {
                _, stream, buffer, length, flags, _, user in
                let client = Client.from(user)
                guard let (bytes, offset) = client.uploads[stream] else { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
                let count = min(length, bytes.count - offset)
                bytes.withUnsafeBytes {
                    UnsafeMutableRawBufferPointer(start: buffer, count: length).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count]))
                }
                client.uploads[stream] = (bytes, offset + count)
                if offset + count == bytes.count { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
                return count
            }
            let stream = nghttp2_submit_request(session, nil, nva, nva.count, &provider, nil)
            uploads[stream] = (body, 0)
            return stream
        }
    }

    func receive(_ bytes: [UInt8]) {
        let rv = bytes.withUnsafeBytes {
            nghttp2_session_mem_recv(session, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count)
        }
        #expect(rv == bytes.count)
    }

    func drain() -> [UInt8] {
        #expect(nghttp2_session_send(session) == 0)
        defer { out = [] }
        return out
    }
}

/// A server session with its recorder and a client, connected (prefaces exchanged).
private struct Pair {
    let recorder = Recorder()
    let client: Client
    let server: HTTP2Session

    init(settings: HTTP2Session.Settings = .init(), client: Client = Client()) throws {
        self.client = client
        server = try HTTP2Session(handler: recorder, settings: settings, tag: 7, tagGeneration: 3)
        pump()
    }

    /// Moves bytes both ways until neither side has more.
    func pump() {
        for _ in 0..<100 {
            let request = client.drain()
            if !request.isEmpty {
                let failure = request.withUnsafeBytes { server.receive($0) }
                #expect(failure == nil)
            }
            #expect(server.flush() == nil)
            let response = recorder.takeOutput()
            if !response.isEmpty { client.receive(response) }
            if request.isEmpty && response.isEmpty { return }
        }
        Issue.record("the sessions kept talking")
    }

    func respond(_ stream: Int32, status: UInt16 = 200, fields: [(String, String)] = [], body: Bool = false) {
        let submitted = withFields(fields) {
            server.submitResponse(stream: stream, status: status, fields: $0, body: body)
        }
        #expect(submitted)
    }
}

@Suite struct HTTP2SessionTests {
    @Test func getReportsTheRequestAndTheResponseArrives() throws {
        let pair = try Pair()
        #expect(pair.server.tag == 7 && pair.server.tagGeneration == 3)
        #expect(pair.client.windowUpdates.contains { $0.stream == 0 && $0.increment == (1 << 20) - 65_535 })
        let stream = pair.client.request(path: "/hello")
        pair.pump()
        #expect(pair.recorder.events == ["open \(stream)", "fields \(stream) end=true trailer=false"])
        let fields = pair.recorder.fields[stream] ?? []
        #expect(fields.contains { $0 == (":method", "GET") })
        #expect(fields.contains { $0 == (":path", "/hello") })
        #expect(fields.contains { $0 == (":authority", "example.com") })
        #expect(pair.server.openStreams == 1)
        pair.respond(stream, status: 204, fields: [("x-served-by", "sluice")])
        pair.pump()
        let headers = pair.client.headers[stream] ?? []
        #expect(headers.count == 2)
        #expect(headers.first.map { $0 == (":status", "204") } == true)
        #expect(headers.last.map { $0 == ("x-served-by", "sluice") } == true)
        #expect(pair.client.closed[stream] == 0)
        #expect(pair.recorder.closed[stream] == 0)
        #expect(pair.server.openStreams == 0)
        #expect(pair.recorder.frames.contains { $0.type == 1 && $0.stream == stream })
        #expect(pair.server.allocations > 0)
        #expect(HTTP2Session.totalAllocations >= pair.server.allocations)
    }

    @Test func postBodyArrivesOverSeveralDataFrames() throws {
        let pair = try Pair()
        let body = (0..<40_000).map { UInt8(truncatingIfNeeded: $0) }
        let stream = pair.client.request(method: "POST", path: "/upload", body: body)
        pair.pump()
        #expect(pair.recorder.received[stream] == body)
        #expect(pair.recorder.dataCalls >= 3)
        #expect(pair.recorder.frames.filter { $0.type == 0 && $0.stream == stream }.count >= 3)
        #expect(pair.recorder.events.last == "data-end \(stream)")
        #expect(pair.recorder.events.contains("fields \(stream) end=false trailer=false"))
        pair.server.consume(stream: stream, count: body.count)
        pair.respond(stream)
        pair.pump()
        #expect(pair.client.closed[stream] == 0)
    }

    @Test func requestTrailersAreReportedAsTrailers() throws {
        let pair = try Pair()
        let stream = pair.client.request(method: "POST", body: [])
        pair.pump()
        let trailer = [("grpc-timeout", "1S")]
        var storage = trailer.flatMap { [Array($0.0.utf8), Array($0.1.utf8)] }
        storage.withUnsafeMutableBufferPointer { buffers in
            var nv = nghttp2_nv(
                name: buffers[0].withUnsafeMutableBufferPointer { $0.baseAddress! },
                value: buffers[1].withUnsafeMutableBufferPointer { $0.baseAddress! }, namelen: buffers[0].count,
                valuelen: buffers[1].count, flags: 0)
            #expect(nghttp2_submit_trailer(pair.client.session, stream, &nv, 1) == 0)
        }
        pair.pump()
        #expect(pair.recorder.trailerFields[stream]?.first.map { $0 == ("grpc-timeout", "1S") } == true)
        #expect(pair.recorder.events.last == "fields \(stream) end=true trailer=true")
    }

    @Test func deferredBodyResumes() throws {
        let pair = try Pair()
        let stream = pair.client.request()
        pair.pump()
        pair.respond(stream, fields: [("content-type", "application/octet-stream")], body: true)
        pair.pump()
        #expect(pair.client.headers[stream]?.first.map { $0 == (":status", "200") } == true)
        #expect(pair.client.bodies[stream] == nil)
        #expect(pair.server.wantsWrite == false)
        let body = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        pair.recorder.bodies[stream] = body
        pair.server.resumeData(stream: stream)
        #expect(pair.server.wantsWrite)
        pair.pump()
        #expect(pair.client.bodies[stream] == body)
        #expect(pair.client.closed[stream] == 0)
        let dataFrames = pair.client.frames.filter { $0.type == 0 && $0.stream == stream }
        #expect(dataFrames.count >= 4)
        #expect(dataFrames.last.map { $0.flags & 1 == 1 } == true)
    }

    @Test func trailersFollowTheBodyWithEndStream() throws {
        let pair = try Pair()
        let stream = pair.client.request()
        pair.pump()
        pair.recorder.bodies[stream] = Array("abc".utf8)
        pair.recorder.responseTrailers[stream] = [("grpc-status", "0"), ("grpc-message", "")]
        pair.respond(stream, fields: [("content-type", "application/grpc")], body: true)
        pair.pump()
        #expect(pair.client.bodies[stream] == Array("abc".utf8))
        #expect(pair.client.trailers[stream]?.count == 2)
        #expect(pair.client.trailers[stream]?.first.map { $0 == ("grpc-status", "0") } == true)
        let frames = pair.client.frames.filter { $0.stream == stream }
        #expect(frames.map(\.type) == [1, 0, 1])
        #expect(frames.map { $0.flags & 1 } == [0, 0, 1])
        #expect(pair.client.closed[stream] == 0)
    }

    @Test func failedBodyResetsTheStream() throws {
        let pair = try Pair()
        let stream = pair.client.request()
        pair.pump()
        pair.recorder.failBody = true
        pair.respond(stream, body: true)
        pair.pump()
        #expect(pair.client.closed[stream] == 2)
        #expect(pair.recorder.closed[stream] == 2)
    }

    @Test func smallClientWindowStopsTheBodyUntilTheClientConsumes() throws {
        let pair = try Pair(client: Client(window: 100, autoWindowUpdate: false))
        let stream = pair.client.request()
        pair.pump()
        pair.recorder.bodies[stream] = [UInt8](repeating: 0x61, count: 1000)
        pair.respond(stream, body: true)
        pair.pump()
        #expect(pair.client.bodies[stream]?.count == 100)
        #expect(pair.server.sendWindow(stream: stream) == 0)
        #expect(pair.server.wantsWrite == false)
        nghttp2_session_consume(pair.client.session, stream, 100)
        pair.pump()
        #expect(pair.client.bodies[stream]?.count == 200)
        #expect(pair.server.sendWindow(stream: stream) == 0)
    }

    @Test func receiveWindowReopensOnlyAfterConsume() throws {
        var settings = HTTP2Session.Settings()
        settings.initialWindowSize = 1000
        let pair = try Pair(settings: settings)
        let body = [UInt8](repeating: 0x62, count: 3000)
        let stream = pair.client.request(method: "POST", body: body)
        pair.pump()
        #expect(pair.recorder.received[stream]?.count == 1000)
        #expect(!pair.client.windowUpdates.contains { $0.stream == stream })
        pair.server.consume(stream: stream, count: 1000)
        pair.pump()
        #expect(pair.client.windowUpdates.contains { $0.stream == stream && $0.increment == 1000 })
        #expect(pair.recorder.received[stream]?.count == 2000)
        pair.server.consume(stream: stream, count: 1000)
        pair.pump()
        pair.server.consume(stream: stream, count: 1000)
        pair.pump()
        #expect(pair.recorder.received[stream] == body)
        #expect(pair.recorder.events.last == "data-end \(stream)")
    }

    @Test func fullOutputQueueStopsAndFlushContinues() throws {
        let pair = try Pair()
        let stream = pair.client.request()
        pair.pump()
        pair.recorder.bodies[stream] = [UInt8](repeating: 0x63, count: 5000)
        pair.respond(stream, body: true)
        pair.recorder.outputBudget = 0
        #expect(pair.server.flush() == nil)
        #expect(pair.recorder.output.isEmpty)
        #expect(pair.server.wantsWrite)
        pair.recorder.outputBudget = 5
        #expect(pair.server.flush() == nil)
        #expect(pair.recorder.output.count == 5)
        #expect(pair.server.wantsWrite)
        pair.recorder.outputBudget = nil
        pair.pump()
        #expect(pair.client.bodies[stream]?.count == 5000)
        #expect(pair.client.closed[stream] == 0)
    }

    @Test func clientResetClosesTheStreamWithCancel() throws {
        let pair = try Pair()
        let stream = pair.client.request(method: "POST", body: [])
        pair.pump()
        #expect(pair.server.openStreams == 1)
        #expect(nghttp2_submit_rst_stream(pair.client.session, 0, stream, NGHTTP2_CANCEL.rawValue) == 0)
        pair.pump()
        #expect(pair.recorder.closed[stream] == 8)
        #expect(pair.recorder.frames.contains { $0.type == 3 && $0.stream == stream })
        #expect(pair.server.openStreams == 0)
    }

    @Test func serverResetReachesTheClient() throws {
        let pair = try Pair()
        let stream = pair.client.request(method: "POST", body: [])
        pair.pump()
        pair.server.reset(stream: stream, errorCode: 8)
        pair.pump()
        #expect(pair.client.closed[stream] == 8)
        #expect(pair.recorder.closed[stream] == 8)
    }

    @Test func refusedStreamIsResetAndNotReported() throws {
        let pair = try Pair()
        pair.recorder.refuse = true
        let stream = pair.client.request(method: "POST", body: [UInt8](repeating: 1, count: 100))
        pair.pump()
        #expect(pair.client.closed[stream] == 7)
        #expect(pair.recorder.events == ["open \(stream)"])
        #expect(pair.recorder.fields.isEmpty && pair.recorder.received.isEmpty && pair.recorder.closed.isEmpty)
        #expect(pair.server.openStreams == 0)
        pair.recorder.refuse = false
        let next = pair.client.request()
        pair.pump()
        pair.respond(next)
        pair.pump()
        #expect(pair.client.closed[next] == 0)
    }

    @Test func rejectedFieldResetsTheStream() throws {
        let pair = try Pair()
        pair.recorder.rejectField = "x-bad"
        let stream = pair.client.request(extra: [("x-bad", "1")])
        pair.pump()
        #expect(pair.client.closed[stream] == 2)
        #expect(pair.recorder.closed[stream] == 2)
        #expect(!pair.recorder.events.contains { $0.hasPrefix("fields") })
    }

    @Test func shutdownNoticeThenGoAway() throws {
        let pair = try Pair()
        let stream = pair.client.request()
        pair.pump()
        pair.server.noticeShutdown()
        pair.pump()
        #expect(pair.client.goAways.count == 1)
        #expect(pair.client.goAways.first.map { $0.lastStream == Int32.max && $0.errorCode == 0 } == true)
        pair.server.goAway(errorCode: 0)
        pair.pump()
        #expect(pair.client.goAways.count == 2)
        #expect(pair.client.goAways.last.map { $0.lastStream == stream && $0.errorCode == 0 } == true)
        pair.respond(stream)
        pair.pump()
        #expect(pair.client.closed[stream] == 0)
        #expect(pair.server.wantsRead == false || pair.server.openStreams == 0)
    }

    @Test func enhanceYourCalmGoAwayCarriesTheCode() throws {
        let pair = try Pair()
        pair.server.goAway(errorCode: 0xb)
        pair.pump()
        #expect(pair.client.goAways.last.map { $0.lastStream == 0 && $0.errorCode == 0xb } == true)
    }

    @Test func malformedPrefaceFailsTheSession() throws {
        let recorder = Recorder()
        let server = try HTTP2Session(handler: recorder, settings: .init(), tag: 0, tagGeneration: 0)
        let bytes = Array("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".utf8)
        let failure = bytes.withUnsafeBytes { server.receive($0) }
        guard case .protocolError(let code, let message) = failure else {
            Issue.record("no failure: \(String(describing: failure))")
            return
        }
        #expect(code == NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue)
        #expect(!message.isEmpty)
    }

    @Test func allocationsPerRequestAreBounded() throws {
        let pair = try Pair()
        #expect(pair.server.allocations > 0)
        func exchange() {
            let stream = pair.client.request(path: "/a")
            pair.pump()
            pair.recorder.bodies[stream] = Array("hello".utf8)
            pair.respond(stream, fields: [("content-type", "text/plain")], body: true)
            pair.pump()
            #expect(pair.client.closed[stream] == 0)
        }
        exchange()
        let before = pair.server.allocations
        let liveBefore = pair.server.allocations - pair.server.frees
        let rounds = 50
        for _ in 0..<rounds { exchange() }
        let perRequest = Double(pair.server.allocations - before) / Double(rounds)
        let liveAfter = pair.server.allocations - pair.server.frees
        print("nghttp2 allocations per request: \(perRequest), live before \(liveBefore) after \(liveAfter)")
        #expect(perRequest > 0 && perRequest < 40)
        #expect(liveAfter - liveBefore < 8)
    }
}
