import SluiceWire

/// The HTTP side of a downstream connection: one request/response exchange at a time
/// (pipelined requests wait in `reqBuf` and are taken in order, so responses cannot be
/// attributed to the wrong request). Its control state (phase, what the request and response
/// allow, the timer) is `machine`, whose table says how it moves; the exchange holds the
/// bytes: queues, scanners, bodies, the peer's address and the request's stats.
///
/// Invariants: bytes of a request never reach the upstream before its head was parsed whole
/// and routed; a response is forwarded only for the request in flight; a buffer is held only
/// while it has bytes (or a head is being read into it).
struct HTTPExchange: BitwiseCopyable {
    struct Queue: BitwiseCopyable {
        var buffer: Int32 = -1
        var start: Int32 = 0
        var end: Int32 = 0
        /// `buffer` is a block of the loop's small peek pool (`Loop.peekBuffers`), not of
        /// `httpBuffers`: only a peek's first bytes live there.
        var small = false
        @inline(__always) var isEmpty: Bool { start == end }
        @inline(__always) var count: Int32 { end - start }
    }

    struct Body: BitwiseCopyable {
        var kind: BodyKind = .none
        var remaining: Int64 = 0
        var chunks = ChunkedScanner()
        var done = true
        /// Body bytes taken so far (the request body's minimum rate is judged on them).
        var received: Int64 = 0

        init() {}

        init(_ kind: BodyKind) {
            self.kind = kind
            switch kind {
            case .none:
                done = true
            case .length(let n):
                remaining = n
                done = n == 0
            case .chunked, .untilClose:
                done = false
            }
        }
    }

    var machine = HTTPExchangeMachine()
    /// The listener's route table and port.
    var routes: Int32 = -1
    /// tls listeners that terminate: the server context and the table of terminated routes
    /// (indices into the connection's snapshot, as `routes`); -1 otherwise.
    var tlsContext: Int32 = -1
    var terminatedRoutes: Int32 = -1
    var listenPort: UInt16 = 0
    /// The client's address, for X-Forwarded-For and `source`.
    var peerV6 = false
    var peerHi: UInt64 = 0
    var peerLo: UInt64 = 0
    var peerPort: UInt16 = 0
    /// The destination named by an accepted PROXY header, relayed in ours.
    var relayedDestination = false
    var destV6 = false
    var destHi: UInt64 = 0
    var destLo: UInt64 = 0
    var destPort: UInt16 = 0
    /// A PROXY header is expected before anything else (the client is in `acceptProxy`).
    var proxyPending = false
    /// Peeking for a ClientHello (tls listener).
    var peekTLS = false
    /// The client speaks through a TLS session terminated here (`Connection.tls`): requests
    /// go upstream with `X-Forwarded-Proto: https`, bodies are copied (never spliced).
    var secure = false
    /// The route of the request in flight when it adds `Strict-Transport-Security`; -1 none.
    var hstsRoute: Int32 = -1

    /// Request bytes from the client: the head being read, then what follows it.
    var req = Queue()
    /// Response bytes from the upstream while its head is read.
    var resp = Queue()
    /// Bytes queued for the upstream (rewritten head, body).
    var upq = Queue()
    /// Bytes queued for the client (rewritten head, body, error responses).
    var downq = Queue()
    var reqScan = HeadScanner()
    var respScan = HeadScanner()
    var reqBody = Body()
    var respBody = Body()

    /// The response carries a stickiness cookie for the endpoint picked.
    var setCookie = false
    /// Path bytes to strip from the request target (route `stripPath`).
    var stripPrefix: Int32 = 0
    /// Where the request head in flight sits in `req` (kept for a retry on a new upstream).
    var headStart: Int32 = 0
    var headLength: Int32 = 0
    /// Large Content-Length bodies move through a pipe (splice) instead of a buffer.
    var spliceRequest = false
    var spliceResponse = false
    /// Splice was refused for this connection: bodies are copied.
    var noSplice = false
    /// The response is chunked and the client speaks HTTP/1.0: framing is stripped.
    var dechunk = false
    var decoder = ChunkedDecoder()
    /// Times and status of the request in flight (`Observe/`).
    var stats = ExchangeStats()
    /// An HTTP/2 session's or stream's state (`Connection.h2`).
    var h2 = HTTP2Link()
    /// The upstream stream, when the service speaks HTTP/2 (`Connection.h2Upstream`).
    var up2 = HTTP2UpstreamLink()

    init() {}

    /// A new exchange for a stream of `session`'s client: its listener port, address (and
    /// the one a PROXY header named), whether it speaks TLS; bodies are copied (a stream has
    /// no socket to splice).
    init(clientOf session: HTTPExchange) {
        listenPort = session.listenPort
        peerV6 = session.peerV6
        peerHi = session.peerHi
        peerLo = session.peerLo
        peerPort = session.peerPort
        relayedDestination = session.relayedDestination
        destV6 = session.destV6
        destHi = session.destHi
        destLo = session.destLo
        destPort = session.destPort
        secure = session.secure
        noSplice = true
    }
}
