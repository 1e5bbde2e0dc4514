import CShims

/// What a session reports while it reads frames or builds its output. Called on the loop
/// thread, only from inside `HTTP2Session`'s own methods (`receive`, `flush`). Implemented by
/// the loop (a final class).
public protocol HTTP2SessionHandler: AnyObject {
    /// The client opened stream `stream` (its HEADERS begin). false: the stream is refused
    /// (RST_STREAM REFUSED_STREAM), nothing more is reported for it.
    func h2StreamOpened(_ session: HTTP2Session, stream: Int32) -> Bool
    /// One field of the stream's header block, pseudo-headers included, as nghttp2 validated
    /// it (names lowercase). `trailer`: the block is a trailer section. false: the stream is
    /// reset (RST_STREAM INTERNAL_ERROR, nghttp2's answer to a temporal callback failure).
    func h2Field(
        _ session: HTTP2Session, stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        trailer: Bool
    ) -> Bool
    /// The header block ended (HEADERS + CONTINUATION complete). `endStream`: END_STREAM was
    /// set (no body follows).
    func h2FieldsDone(_ session: HTTP2Session, stream: Int32, endStream: Bool, trailer: Bool)
    /// Request body bytes of a DATA frame (padding excluded). They count against the
    /// flow-control windows until `consume` is called.
    func h2Data(_ session: HTTP2Session, stream: Int32, _ bytes: UnsafeRawBufferPointer)
    /// A DATA frame with END_STREAM arrived (after its bytes were given to h2Data).
    func h2DataEnded(_ session: HTTP2Session, stream: Int32)
    /// The stream is closed (both directions done, or reset by either side). `errorCode` 0 =
    /// NO_ERROR. Called once per stream `h2StreamOpened` accepted, as nghttp2 reports it; not
    /// at the session's deinit.
    func h2StreamClosed(_ session: HTTP2Session, stream: Int32, errorCode: UInt32)
    /// A frame arrived (every frame nghttp2 processed, after the calls above for it): for
    /// flood accounting. `type` is the frame type (0 DATA ... 9 CONTINUATION), `length` the
    /// payload length.
    func h2FrameReceived(_ session: HTTP2Session, type: UInt8, flags: UInt8, stream: Int32, length: Int)
    /// The response body of `stream`: copy up to `into.count` bytes. `.bytes(n, end:)` (end:
    /// that was the last of the body; END_STREAM goes with it unless `submitTrailers` was
    /// called for the stream), `.deferred` (nothing yet: asked again after `resumeData`), or
    /// `.failed` (the stream is reset INTERNAL_ERROR).
    func h2ReadBody(_ session: HTTP2Session, stream: Int32, into: UnsafeMutableRawBufferPointer)
        -> HTTP2Session.BodyRead
    /// Encoded output (frames) for the socket: take up to `bytes.count`; return how many were
    /// taken. 0: the output queue is full (the session keeps the rest and stops until the
    /// next `flush`).
    func h2Output(_ session: HTTP2Session, _ bytes: UnsafeRawBufferPointer) -> Int
}

/// A server-side HTTP/2 session (libnghttp2) driven by one loop with memory buffers: no socket
/// I/O inside. The loop feeds received bytes to `receive`, pushes output with `flush` (the
/// frames go to `h2Output`), and submits responses; everything else reaches the handler.
/// Not thread-safe: one loop thread owns it. Allocates per connection (the nghttp2 session, its
/// field array), not per frame of its own; nghttp2's allocations are counted (`allocations`).
public final class HTTP2Session {
    /// The SETTINGS the server announces, and the connection receive window it opens.
    public struct Settings: Sendable {
        public var maxConcurrentStreams: UInt32 = 100
        public var initialWindowSize: UInt32 = 65_535
        public var maxHeaderListSize: UInt32 = 65_536
        public var maxFrameSize: UInt32 = 16_384
        public var connectionWindow: UInt32 = 1 << 20

        /// The defaults above.
        public init() {}
    }

    /// What `h2ReadBody` produced.
    public enum BodyRead: Sendable {
        case bytes(Int, end: Bool)
        case deferred
        case failed
    }

    /// The session cannot go on: nghttp2's error code (a negative `nghttp2_error`) and its text.
    public enum Failure: Error, Equatable {
        case protocolError(code: Int32, message: String)

        /// The failure for nghttp2's return value `code` (built on the error path only).
        static func nghttp2(_ code: Int) -> Failure {
            let value = Int32(truncatingIfNeeded: code)
            return .protocolError(code: value, message: String(cString: nghttp2_strerror(value)))
        }
    }

    /// One response field: name (lowercase) and value, read only during the submit call.
    public struct Field {
        public var name: UnsafeRawBufferPointer
        public var value: UnsafeRawBufferPointer

        /// A field of `name` and `value`.
        public init(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
            self.name = name
            self.value = value
        }
    }

    /// Most fields `submitResponse`, `submitInterim` and `submitTrailers` accept.
    public static let maxFields = 256

    /// The loop's slot for the session; read back by the handler.
    public let tag: Int32
    public let tagGeneration: UInt32
    /// A client session (to an endpoint): its streams are requests this side submits.
    public let isClient: Bool

    unowned(unsafe) let handler: HTTP2SessionHandler
    let session: OpaquePointer
    private let counts: UnsafeMutablePointer<sluice_h2_counts>
    /// `:status` plus `maxFields` entries, reused by every submit.
    private let fieldArray: UnsafeMutablePointer<nghttp2_nv>
    /// ":status" then three digits.
    private let statusBytes: UnsafeMutablePointer<UInt8>
    /// Streams `h2StreamOpened` accepted that are not closed yet.
    // SAFETY (@exclusivity(unchecked)): the session's thread alone touches it, each access one
    // load or one store, none held across a call.
    @exclusivity(unchecked) public private(set) var openStreams = 0

    /// Blocks this session's nghttp2 took from malloc (its pool had none of the size).
    public var allocations: Int { Int(counts.pointee.allocations) }
    /// Blocks it gave back to free (its pool kept enough of that size).
    public var frees: Int { Int(counts.pointee.frees) }
    /// Calls to malloc, calloc and realloc nghttp2 made for this session (from the pool or not).
    public var requests: Int { Int(counts.pointee.requests) }
    /// Blocks nghttp2 took from malloc over every session of the process.
    public static var totalAllocations: Int { Int(sluice_h2_total_allocations()) }
    /// Blocks given back to free over every session of the process.
    public static var totalFrees: Int { Int(sluice_h2_total_frees()) }
    /// nghttp2's allocation calls over every session of the process.
    public static var totalRequests: Int { Int(sluice_h2_total_requests()) }

    /// A pool of nghttp2's blocks for the sessions of one thread (`init(pool:)`); freed
    /// with `freePool` once none of those sessions is left.
    public static func makePool() -> OpaquePointer? { sluice_h2_pool_new() }
    public static func freePool(_ pool: OpaquePointer?) { sluice_h2_pool_free(pool) }

    /// A server session for `handler` (held unowned: the loop keeps both alive together).
    /// Queues the server connection preface (SETTINGS with `settings`, a WINDOW_UPDATE raising
    /// the connection window to `connectionWindow`), sent at the first `flush`. Automatic
    /// WINDOW_UPDATE is off: the caller calls `consume` as it forwards body bytes. Throws when
    /// nghttp2 cannot create the session.
    ///
    /// `pool`: where nghttp2's blocks come from and go back to (`makePool`; nil: malloc and
    /// free), used by this thread only.
    ///
    /// `client`: a client session instead (to an endpoint, HTTP/2 with prior knowledge): the
    /// connection preface (the magic, then SETTINGS with push disabled) goes out at the first
    /// `flush`, and requests are submitted with `submitRequest`.
    public init(
        handler: HTTP2SessionHandler, settings: Settings, tag: Int32, tagGeneration: UInt32, client: Bool = false,
        pool: OpaquePointer? = nil
    )
        throws(HTTP2Session.Failure)
    {
        self.handler = handler
        self.tag = tag
        self.tagGeneration = tagGeneration
        isClient = client
        counts = .allocate(capacity: 1)
        counts.initialize(to: sluice_h2_counts(allocations: 0, frees: 0, requests: 0, pool: pool))
        var mem = nghttp2_mem()
        sluice_h2_mem_init(&mem, counts)
        var created: OpaquePointer?
        let rv =
            client
            ? nghttp2_session_client_new3(&created, Self.callbacks, nil, Self.options, &mem)
            : nghttp2_session_server_new3(&created, Self.callbacks, nil, Self.options, &mem)
        guard rv == 0, let created else {
            counts.deallocate()
            throw .nghttp2(Int(rv))
        }
        session = created
        fieldArray = .allocate(capacity: Self.maxFields + 1)
        statusBytes = .allocate(capacity: 10)
        // SAFETY: statusBytes holds 10 bytes; ":status" takes 7, the digits the last 3.
        for (index, byte) in ":status000".utf8.enumerated() { statusBytes[index] = byte }
        // SAFETY: the session lives until deinit, which deletes it before self goes away, so
        // the unretained pointer nghttp2 passes back to the callbacks is always valid.
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())

        var entries: [(Int32, UInt32)] = [
            (Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), settings.maxConcurrentStreams),
            (Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), settings.initialWindowSize),
            (Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), settings.maxHeaderListSize),
            (Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), settings.maxFrameSize),
        ]
        if client { entries.append((Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), 0)) }
        var iv = entries.map { nghttp2_settings_entry(settings_id: $0.0, value: $0.1) }
        var status = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
        if status == 0, settings.connectionWindow > 65_535 {
            status = nghttp2_session_set_local_window_size(
                session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                Int32(clamping: settings.connectionWindow))
        }
        if status != 0 {
            // deinit runs for a fully initialised instance and frees everything.
            throw .nghttp2(Int(status))
        }
    }

    deinit {
        nghttp2_session_del(session)
        counts.deallocate()
        fieldArray.deallocate()
        statusBytes.deallocate()
    }

    /// Feeds received bytes (nghttp2_session_mem_recv); the handler's callbacks run inside.
    /// nil, or the failure when the session must end (then call `flush` once to push the
    /// GOAWAY nghttp2 queued, and close).
    public func receive(_ bytes: UnsafeRawBufferPointer) -> Failure? {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return nil }
        let rv = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        return rv < 0 ? .nghttp2(rv) : nil
    }

    /// Builds output while `h2Output` takes it (stops at the first 0). nil, or the failure
    /// when the session must end.
    public func flush() -> Failure? {
        let rv = nghttp2_session_send(session)
        return rv < 0 ? .nghttp2(Int(rv)) : nil
    }

    /// nghttp2 expects more input (false: after GOAWAY both ways and no stream left).
    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    /// nghttp2 has output to build (frames queued, or a data provider not deferred).
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    /// Submits a response's HEADERS: `:status`, then `fields` (lowercase names, no
    /// connection-specific fields). `body` false: END_STREAM on HEADERS; true: the body comes
    /// from `h2ReadBody`. At most `maxFields` fields; nghttp2 copies them. false when nghttp2
    /// refuses (stream gone, response already submitted) or the status is not 100...999.
    public func submitResponse(stream: Int32, status: UInt16, fields: UnsafeBufferPointer<Field>, body: Bool) -> Bool {
        guard let count = fill(status: status, fields: fields) else { return false }
        if body {
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readBody)
            return nghttp2_submit_response(session, stream, fieldArray, count, &provider) == 0
        }
        return nghttp2_submit_response(session, stream, fieldArray, count, nil) == 0
    }

    /// Submits a request's HEADERS on a client session: `fields` are the pseudo-headers
    /// (`:method`, `:scheme`, `:authority`, `:path`) then the regular fields, lowercase.
    /// `body` false: END_STREAM on HEADERS; true: the body comes from `h2ReadBody`. `owner`
    /// (>= 0) is kept on the stream and given back by `owner(of:)`. The new stream's id, or
    /// nil when nghttp2 refuses (no stream id left, the session going away, bad fields).
    public func submitRequest(fields: UnsafeBufferPointer<Field>, body: Bool, owner: Int32) -> Int32? {
        guard isClient, owner >= 0, fields.count <= Self.maxFields + 1 else { return nil }
        for index in 0..<fields.count { fieldArray[index] = Self.entry(fields[index]) }
        let mark = StreamMark.opened.tagged(owner)
        let rv: Int32
        if body {
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: Self.readBody)
            rv = nghttp2_submit_request(session, nil, fieldArray, fields.count, &provider, mark)
        } else {
            rv = nghttp2_submit_request(session, nil, fieldArray, fields.count, nil, mark)
        }
        guard rv > 0 else { return nil }
        openStreams += 1
        return rv
    }

    /// Server side, from inside `h2StreamOpened`: `owner` (>= 0) is kept on the new stream
    /// and given back by `owner(of:)`.
    public func adopt(stream: Int32, owner: Int32) {
        guard owner >= 0 else { return }
        nghttp2_session_set_stream_user_data(session, stream, StreamMark.none.tagged(owner))
    }

    /// The `owner` a stream carries: a client stream's from `submitRequest`, once its HEADERS
    /// went out (nghttp2 opens the stream then), a server stream's from `adopt`; nil when
    /// unknown, refused or forgotten.
    @inline(__always)
    public func owner(of stream: Int32) -> Int32? {
        StreamMark.owner(session, stream)
    }

    /// The owner of a client stream that is still open (not reported closed) goes away:
    /// RST_STREAM with `errorCode`, and nothing more is reported for it. A request whose
    /// HEADERS have not gone out yet is cancelled instead (nghttp2 drops it from its queue).
    public func forget(stream: Int32, errorCode: UInt32) {
        let mark = StreamMark.of(session, stream)
        guard mark != .refused, stream > 0 else { return }
        if mark != .none { StreamMark.refused.set(session, stream) }
        openStreams -= 1
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// What the peer allows at once (its SETTINGS_MAX_CONCURRENT_STREAMS; 100 until it said).
    public var peerMaxConcurrentStreams: Int {
        let value = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
        return value == UInt32.max ? 100 : Int(value)
    }

    /// A 1xx interim response (HEADERS without END_STREAM), e.g. 100 Continue or 103. false
    /// when nghttp2 refuses or `status` is not 100...199.
    public func submitInterim(stream: Int32, status: UInt16, fields: UnsafeBufferPointer<Field>) -> Bool {
        guard status < 200, let count = fill(status: status, fields: fields) else { return false }
        return nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, nil, fieldArray, count, nil)
            == 0
    }

    /// Trailers (HEADERS with END_STREAM) after the body. Call it from inside `h2ReadBody`,
    /// in the call that returns `.bytes(n, end: true)`: then that DATA frame goes without
    /// END_STREAM and these HEADERS carry it. (Called earlier, with body still to come,
    /// nghttp2 would send the HEADERS before the rest of the DATA.) false when nghttp2 refuses.
    public func submitTrailers(stream: Int32, fields: UnsafeBufferPointer<Field>) -> Bool {
        guard fields.count <= Self.maxFields else { return false }
        for index in 0..<fields.count { fieldArray[index] = Self.entry(fields[index]) }
        let rv = nghttp2_submit_trailer(session, stream, fieldArray, fields.count)
        if rv == 0, StreamMark.of(session, stream) == .opened {
            StreamMark.trailers.set(session, stream)
        }
        return rv == 0
    }

    /// Asks `h2ReadBody` again for a stream whose last read was `.deferred`.
    public func resumeData(stream: Int32) {
        nghttp2_session_resume_data(session, stream)
    }

    /// Returns `count` bytes of the stream's received DATA to the flow-control windows (the
    /// stream's and the connection's; the connection's also when the stream is closed).
    /// WINDOW_UPDATE frames go out at the next `flush`.
    public func consume(stream: Int32, count: Int) {
        guard count > 0 else { return }
        nghttp2_session_consume(session, stream, count)
    }

    /// RST_STREAM with `errorCode` (0x2 INTERNAL_ERROR, 0x8 CANCEL, 0x7 REFUSED_STREAM...).
    public func reset(stream: Int32, errorCode: UInt32) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// Graceful shutdown step 1: GOAWAY with last stream id 2^31-1 (streams keep opening).
    public func noticeShutdown() {
        nghttp2_submit_shutdown_notice(session)
    }

    /// GOAWAY with the last stream id nghttp2 processed and `errorCode` (0 NO_ERROR to drain,
    /// 0xb ENHANCE_YOUR_CALM, 0x1 PROTOCOL_ERROR). No new stream is accepted after it.
    public func goAway(errorCode: UInt32) {
        nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            errorCode, nil, 0)
    }

    /// The stream's remaining send window (what the client lets the server send on it), or
    /// -1 when the stream is unknown.
    public func sendWindow(stream: Int32) -> Int {
        Int(nghttp2_session_get_stream_remote_window_size(session, stream))
    }

    /// Fills the field array with `:status` and `fields`; the entry count, or nil.
    private func fill(status: UInt16, fields: UnsafeBufferPointer<Field>) -> Int? {
        guard status >= 100, status <= 999, fields.count <= Self.maxFields else { return nil }
        // SAFETY: statusBytes holds ":status" and three digits at 7...9.
        statusBytes[7] = UInt8(48 + status / 100)
        statusBytes[8] = UInt8(48 + status / 10 % 10)
        statusBytes[9] = UInt8(48 + status % 10)
        fieldArray[0] = nghttp2_nv(
            name: statusBytes, value: statusBytes + 7, namelen: 7, valuelen: 3,
            flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        // SAFETY: fieldArray holds maxFields + 1 entries; fields.count <= maxFields.
        for index in 0..<fields.count { fieldArray[index + 1] = Self.entry(fields[index]) }
        return fields.count + 1
    }

    /// One nghttp2 name/value entry for `field` (nghttp2 copies the bytes; never writes).
    @inline(__always)
    private static func entry(_ field: Field) -> nghttp2_nv {
        nghttp2_nv(
            name: Self.bytes(field.name), value: Self.bytes(field.value), namelen: field.name.count,
            valuelen: field.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
    }

    nonisolated(unsafe) private static let empty: UnsafeMutablePointer<UInt8> = {
        let byte = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        byte.initialize(to: 0)
        return byte
    }()

    /// A mutable-typed pointer to `buffer` for nghttp2_nv (nghttp2 only reads it).
    @inline(__always)
    private static func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafeMutablePointer<UInt8> {
        // SAFETY: nghttp2 reads namelen/valuelen bytes and never writes through the pointer;
        // an empty buffer gets a valid one-byte address instead of NULL.
        guard let base = buffer.baseAddress else { return empty }
        return UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self))
    }
}

/// What the wrapper keeps on an nghttp2 stream (its stream user data, a tag, never a real
/// pointer): whether the handler accepted it and whether trailers follow its body.
enum StreamMark: UInt {
    case none = 0
    case opened = 1
    case refused = 2
    case trailers = 3

    /// The mark of `stream` (none when unknown).
    @inline(__always)
    static func of(_ session: OpaquePointer?, _ stream: Int32) -> StreamMark {
        StreamMark(rawValue: raw(session, stream) & 3) ?? .none
    }

    /// The owner a client stream carries above the mark's two bits (owner + 1; 0: none).
    @inline(__always)
    static func owner(_ session: OpaquePointer?, _ stream: Int32) -> Int32? {
        let value = raw(session, stream)
        let mark = StreamMark(rawValue: value & 3) ?? .none
        guard mark == .opened || mark == .trailers, value >> 2 > 0 else { return nil }
        return Int32(truncatingIfNeeded: (value >> 2) - 1)
    }

    @inline(__always)
    private static func raw(_ session: OpaquePointer?, _ stream: Int32) -> UInt {
        UInt(bitPattern: nghttp2_session_get_stream_user_data(session, stream).map { Int(bitPattern: $0) } ?? 0)
    }

    /// The user data value of this mark with `owner` above it.
    @inline(__always)
    func tagged(_ owner: Int32) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: (UInt(owner) + 1) << 2 | rawValue)
    }

    /// Marks `stream`, keeping the owner it carries.
    @inline(__always)
    func set(_ session: OpaquePointer?, _ stream: Int32) {
        let owner = StreamMark.raw(session, stream) >> 2
        nghttp2_session_set_stream_user_data(
            session, stream, UnsafeMutableRawPointer(bitPattern: owner << 2 | rawValue))
    }
}

extension HTTP2Session {
    /// The session behind nghttp2's user data pointer.
    @inline(__always)
    fileprivate static func with<R>(_ userData: UnsafeMutableRawPointer?, _ body: (HTTP2Session) -> R) -> R {
        // SAFETY: user data is set in init to this session, unretained; the nghttp2 session
        // (and so every callback) ends in deinit, so the session outlives the call without a
        // retain of its own.
        Unmanaged<HTTP2Session>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
    }

    /// The options every session shares (nghttp2 copies them at creation).
    nonisolated(unsafe) fileprivate static let options: OpaquePointer = {
        var option: OpaquePointer?
        precondition(nghttp2_option_new(&option) == 0, "nghttp2_option_new")
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_max_outbound_ack(option, 1000)
        nghttp2_option_set_max_settings(option, 32)
        nghttp2_option_set_no_closed_streams(option, 1)
        nghttp2_option_set_no_rfc9113_leading_and_trailing_ws_validation(option, 0)
        return option!
    }()

    /// The callbacks every session shares (nghttp2 copies them at creation).
    nonisolated(unsafe) fileprivate static let callbacks: OpaquePointer = {
        var callbacks: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&callbacks) == 0, "nghttp2_session_callbacks_new")
        nghttp2_session_callbacks_set_send_callback(callbacks, sendCallback)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, beginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, dataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, streamClosed)
        return callbacks!
    }()

    /// nghttp2_send_callback: hands output to h2Output; WOULDBLOCK when it took nothing.
    private static let sendCallback: nghttp2_send_callback = { _, data, length, _, userData in
        // SAFETY: nghttp2 passes `length` readable bytes at `data`, valid during the call.
        let taken = with(userData) { $0.handler.h2Output($0, UnsafeRawBufferPointer(start: data, count: length)) }
        return taken > 0 ? min(taken, length) : Int(NGHTTP2_ERR_WOULDBLOCK.rawValue)
    }

    /// nghttp2_on_begin_headers_callback: a request's HEADERS begin (a new stream).
    private static let beginHeaders: nghttp2_on_begin_headers_callback = { raw, frame, userData in
        // SAFETY: nghttp2 passes a valid frame for the duration of the call.
        let header = frame!.pointee.hd
        guard header.type == UInt8(NGHTTP2_HEADERS.rawValue),
            frame!.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
        else { return 0 }
        with(userData) { session in
            if session.handler.h2StreamOpened(session, stream: header.stream_id) {
                StreamMark.opened.set(raw, header.stream_id)
                session.openStreams += 1
            } else {
                StreamMark.refused.set(raw, header.stream_id)
                nghttp2_submit_rst_stream(
                    raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), header.stream_id, NGHTTP2_REFUSED_STREAM.rawValue)
            }
        }
        return 0
    }

    /// nghttp2_on_header_callback: one validated field of a header block.
    private static let onHeader: nghttp2_on_header_callback = {
        raw, frame, name, nameLength, value, valueLength, _, userData in
        // SAFETY: nghttp2 passes a valid frame and name/value bytes for the duration of the call.
        let stream = frame!.pointee.hd.stream_id
        let mark = StreamMark.of(raw, stream)
        guard mark == .opened || mark == .trailers else { return 0 }
        let accepted = with(userData) { session in
            session.handler.h2Field(
                session, stream: stream, name: UnsafeRawBufferPointer(start: name, count: nameLength),
                value: UnsafeRawBufferPointer(start: value, count: valueLength),
                trailer: frame!.pointee.headers.cat == NGHTTP2_HCAT_HEADERS)
        }
        return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
    }

    /// nghttp2_on_frame_recv_callback: a frame was processed.
    private static let frameReceived: nghttp2_on_frame_recv_callback = { raw, frame, userData in
        // SAFETY: nghttp2 passes a valid frame for the duration of the call.
        let header = frame!.pointee.hd
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        with(userData) { session in
            if header.stream_id != 0 {
                let mark = StreamMark.of(raw, header.stream_id)
                if mark == .opened || mark == .trailers {
                    if header.type == UInt8(NGHTTP2_HEADERS.rawValue) {
                        session.handler.h2FieldsDone(
                            session, stream: header.stream_id, endStream: endStream,
                            trailer: frame!.pointee.headers.cat == NGHTTP2_HCAT_HEADERS)
                    } else if header.type == UInt8(NGHTTP2_DATA.rawValue), endStream {
                        session.handler.h2DataEnded(session, stream: header.stream_id)
                    }
                }
            }
            session.handler.h2FrameReceived(
                session, type: header.type, flags: header.flags, stream: header.stream_id, length: header.length)
        }
        return 0
    }

    /// nghttp2_on_data_chunk_recv_callback: request body bytes.
    private static let dataChunk: nghttp2_on_data_chunk_recv_callback = {
        raw, _, stream, data, length, userData in
        let mark = StreamMark.of(raw, stream)
        guard mark == .opened || mark == .trailers else {
            // A refused stream's bytes go back to the connection window at once.
            nghttp2_session_consume(raw, stream, length)
            return 0
        }
        // SAFETY: nghttp2 passes `length` readable bytes at `data`, valid during the call.
        with(userData) { $0.handler.h2Data($0, stream: stream, UnsafeRawBufferPointer(start: data, count: length)) }
        return 0
    }

    /// nghttp2_on_stream_close_callback: a stream ended.
    private static let streamClosed: nghttp2_on_stream_close_callback = { raw, stream, errorCode, userData in
        let mark = StreamMark.of(raw, stream)
        guard mark == .opened || mark == .trailers else { return 0 }
        with(userData) { session in
            session.openStreams -= 1
            session.handler.h2StreamClosed(session, stream: stream, errorCode: errorCode)
        }
        return 0
    }

    /// nghttp2_data_source_read_callback: the response body from h2ReadBody.
    fileprivate static let readBody: nghttp2_data_source_read_callback = {
        raw, stream, buffer, length, dataFlags, _, userData in
        // SAFETY: nghttp2 passes `length` writable bytes at `buffer` and a valid flags pointer.
        let read = with(userData) {
            $0.handler.h2ReadBody($0, stream: stream, into: UnsafeMutableRawBufferPointer(start: buffer, count: length))
        }
        switch read {
        case .bytes(let count, let end):
            if end {
                dataFlags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                if StreamMark.of(raw, stream) == .trailers {
                    dataFlags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                }
            }
            return max(0, min(count, length))
        case .deferred:
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        case .failed:
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
    }
}
