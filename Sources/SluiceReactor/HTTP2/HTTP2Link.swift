import SluiceWire

/// The HTTP/2 state a slot keeps in its `HTTPExchange` (`Connection.h2` says which half).
///
/// A **session** slot holds the client socket (and its TLS session), the nghttp2 session and
/// the encoded frames waiting for the socket (`HTTPExchange.downq`); it runs no exchange of
/// its own. Each **stream** the client opens takes a slot of its own: an ordinary HTTP
/// exchange (`HTTPExchangeMachine`, routing, the upstream pool, timers, the access log)
/// whose downstream transport is the stream instead of a socket (`Loop+HTTP2Stream`):
///
/// | stream event (from nghttp2)   | what the stream slot sees                               |
/// | ----------------------------- | ------------------------------------------------------- |
/// | HEADERS                       | an HTTP/1.1 request head in `inbound`, built from the fields |
/// | DATA                          | body bytes in `inbound` (chunk-framed as they are read when the request has no content-length) |
/// | END_STREAM                    | the body's end (`requestEnded`); then reads would block  |
/// | the response head it sends    | HEADERS (`:status`, fields without connection-specific ones) |
/// | the body bytes it sends       | `outbound`, taken by nghttp2's data source as DATA       |
/// | its SHUT_WR                   | END_STREAM after `outbound` (`responseEnded`)            |
/// | RST_STREAM, or the stream closed | the stream slot closes (an upstream still busy is reset) |
///
/// Invariants: a stream slot lives while nghttp2 knows its stream (`closed` only in the
/// callback that frees it); nghttp2 is called from session code only (receive, flush),
/// never from a stream's pump, so no callback frees a slot whose pump is on the stack;
/// `inbound` holds at most the head and the stream's receive window (the window is returned
/// as the exchange reads, `consume`); buffers are held only while they hold bytes.
struct HTTP2Link: BitwiseCopyable {
    /// An HTTP/1.1 client on an http listener with `http2: true`: its first bytes were
    /// checked for the HTTP/2 preface (`Loop.detectPreface`).
    var prefaceChecked = false

    // MARK: Session slots

    /// The nghttp2 session: a retained `HTTP2Session`; nil when none.
    var session: UnsafeMutableRawPointer? = nil
    /// Stream slots open, and the first of their list (`next`, `prev`).
    var streams: Int32 = 0
    var firstStream: Int32 = -1
    /// Queued in `Loop.h2Dirty` for a flush at the end of the batch.
    var dirty = false
    /// A GOAWAY went out: the session closes once its streams are done and its output sent.
    var goingAway = false
    /// The GOAWAY is for a protocol error or a flood: no stream is served any more.
    var failed = false
    /// Flood accounting: the start of the current window (ms) and what it counted.
    var floodWindowStart: Int64 = 0
    var resets: Int32 = 0
    var controlFrames: Int32 = 0
    var emptyFrames: Int32 = 0

    // MARK: Upstream session slots (`HTTP2Role.upstream`)

    /// The session is ready: connected, and for TLS the handshake done with ALPN h2
    /// (requests may be submitted).
    var connected = false
    /// The TCP connect completed (a TLS session's handshake may run).
    var tcpConnected = false
    /// `UpstreamTLS.key` of the services whose streams it carries; 0: h2c.
    var tlsKey: UInt64 = 0
    /// A GOAWAY went to the endpoint (a drain).
    var sentGoAway = false
    /// The endpoint's address the session is filed under in `Loop.h2Upstreams` (`next`,
    /// `prev` link the sessions of one address; `firstStream` lists the exchanges on it).
    var addressV6 = false
    var addressHi: UInt64 = 0
    var addressLo: UInt64 = 0
    var addressPort: UInt16 = 0

    // MARK: Stream slots

    /// The session's slot and generation, and the stream's id.
    var parent: Int32 = -1
    var parentGeneration: UInt32 = 0
    var stream: Int32 = 0
    var next: Int32 = -1
    var prev: Int32 = -1
    /// The synthesized request: its head (the first `headLeft` bytes), then raw body bytes.
    var inbound = HTTPExchange.Queue()
    var headLeft: Int32 = 0
    /// Where the fields are being written: the request line is written at the first regular
    /// field; pseudo-header values and cookie crumbs wait at the buffer's end from `tail`.
    var headWritten = false
    /// The head is whole (`headLeft` counts it): what follows in `inbound` is body.
    var headDone = false
    var tail: Int32 = 0
    var method = Span()
    var path = Span()
    var authority = Span()
    var cookie = Span()
    var hasLength = false
    /// The head did not fit, or was malformed: answered with this status (0: none).
    var refuse: UInt16 = 0
    /// The body goes upstream chunk-framed (no content-length came with the head).
    var chunked = false
    var requestEnded = false
    var terminatorSent = false
    /// Response bytes for DATA frames.
    var outbound = HTTPExchange.Queue()
    /// The response's trailer section (field lines from a chunked body), sent as trailers
    /// after the last DATA frame; httpBuffers, -1: none.
    var trailers = HTTPExchange.Queue()
    var headSubmitted = false
    /// The response head said END_STREAM already (no body).
    var bodyless = false
    var responseEnded = false
    /// nghttp2's data source was told "deferred": `resumeData` when bytes come.
    var deferred = false
    /// A send found `outbound` full: the stream waits for a writable wake-up.
    var blocked = false
    /// Queued in `Loop.h2Wake`.
    var woken = false

    /// A range of the inbound buffer.
    struct Span: BitwiseCopyable {
        var start: Int32 = 0
        var count: Int32 = -1
        var isSet: Bool { count >= 0 }
    }
}

/// An exchange's upstream when its service speaks HTTP/2 (`protocol: h2c`): a stream on an
/// upstream session slot (`Loop+HTTP2Upstream`). The exchange writes and reads HTTP/1.1 as it
/// does with a socket (`Loop+HTTP2UpstreamStream`):
///
/// | exchange side                      | stream side                                          |
/// | ---------------------------------- | ---------------------------------------------------- |
/// | the request head it sends          | HEADERS (`:method`, `:scheme`, `:authority`, `:path`, lowercase fields without connection-specific ones) |
/// | body bytes it sends                | `outbound` (de-chunked), taken by the data source as DATA; END_STREAM after the body's end |
/// | the response head it reads         | written into `inbound` from the response HEADERS (`transfer-encoding: chunked` when no content-length came and a body follows) |
/// | body bytes it reads                | DATA from `inbound`, chunk-framed as they are read when chunked |
/// | the chunked body's end             | END_STREAM: the last chunk, with the trailers (`trailers`) as its trailer section |
/// | a read once nothing is left        | would block; the end of the stream after END_STREAM; a reset after RST_STREAM or a lost connection |
///
/// Invariants: the exchange is in its session's list (`linked`) while nghttp2 has its
/// stream open (or it waits for the connect); `session` with `sessionGeneration` names the
/// slot even after the stream closed, so what is read later still returns the connection's
/// window; buffers are held only while they hold bytes.
struct HTTP2UpstreamLink: BitwiseCopyable {
    var session: Int32 = -1
    var sessionGeneration: UInt32 = 0
    /// The stream's id; 0 until the request head was submitted.
    var stream: Int32 = 0
    var linked = false
    var next: Int32 = -1
    var prev: Int32 = -1
    /// The response for the exchange: heads (the first `headLeft` bytes), then body bytes.
    var inbound = HTTPExchange.Queue()
    var headLeft: Int32 = 0
    /// The final (non-1xx) head was written; a header block after it is the trailers.
    var finalHead = false
    /// A header block is being written (its status line is in `inbound`).
    var writingHead = false
    var status: UInt16 = 0
    var hasLength = false
    /// The response head did not fit (`h2HeadLimit`): the stream fails.
    var tooLarge = false
    /// The response body is chunk-framed for the exchange (no content-length came).
    var chunked = false
    /// The trailer section, written after the last chunk (httpBuffers, -1: none).
    var trailers = HTTPExchange.Queue()
    /// How far the end was written: 0 nothing, 1 `0\r\n` out, 2 the trailers out, 3 done.
    var endStage: UInt8 = 0
    /// END_STREAM came from the endpoint: `inbound` holds the rest of the response.
    var ended = false
    /// The stream (or its connection) failed before the response ended; `timedOut` when it
    /// was the connect that timed out.
    var failed = false
    var timedOut = false
    /// Request body bytes for DATA frames, and how the request body is framed upstream.
    var outbound = HTTPExchange.Queue()
    var requestChunked = false
    var decoder = ChunkedDecoder()
    var requestEnded = false
    /// nghttp2's data source was told "deferred": `resumeData` when bytes come.
    var deferred = false
    /// A send found `outbound` full: the exchange waits for the data source to take it.
    var blocked = false
    /// Queued in `Loop.h2UpWake`.
    var woken = false
}
