import SluiceWire

/// The control state of one HTTP/1.1 client connection: which step of the exchange it is in,
/// what the request in flight asked for, what its response allows, and which timer is armed.
/// A value: the loop reports what it observed (`Event`) and executes what it is told
/// (`Action`); buffers, parsing and I/O stay in the loop (`HTTPExchange`, `Loop+HTTP*`).
/// Time comes in with each event, so tests drive it with a hand clock.
///
/// State table (`state` × event → next state, action). "—" keeps the state; an event not
/// listed for a state traps (`preconditionFailure`).
///
/// | state          | event                      | next           | action                                     |
/// | -------------- | -------------------------- | -------------- | ------------------------------------------ |
/// | `.readingHead` | `waiting(tls)`             | —              | arm client idle (TLS: a short idle first)   |
/// |                | `headStarted`              | —              | arm request head                            |
/// |                | `headParsed`               | —              | `route`; CONNECT: `refuse(501)`             |
/// |                | `listenerGone`             | — / `.closing` | in a request: close after it; else close    |
/// |                | `localAnswer`              | —              | `writeAnswer(keep)`                         |
/// |                | `answerQueued`             | `.exchanging` / `.closing` | keep: `proceed`; else `startClosing` |
/// |                | `upstreamAttached(reused)` | —              | reused: `sendRequest`; else `connect`       |
/// |                | `clientEnded`              | —              | `close` (pool the upstream when idle)       |
/// | `.readingHead`, `.exchanging`, `.connecting` | `connectPending` | `.connecting` | arm connect        |
/// |                | `connected`                | —              | `sendRequest`                               |
/// |                | `connectFailed(timedOut, triesLeft)` | —    | `connectNext`, else `refuse(504 / 502)`     |
/// |                | `requestQueued`            | `.exchanging`  | arm server (or the request body's deadline) |
/// | `.exchanging`  | `requestBytesSent`         | —              | `proceed` (a retry is now limited)          |
/// |                | `interim(101)`             | —              | asked for: `startUpgrade`; else `rejectResponse` |
/// |                | `interim(1xx)`             | —              | HTTP/1.0: `dropInterim`; else `forwardInterim` (body clock restarts) |
/// |                | `interimQueued`            | —              | `proceed` (a response has started)          |
/// |                | `upgradeQueued`            | `.upgrading`   | `proceed`                                   |
/// |                | `responseHead`             | —              | `forwardResponse(framing, closeClient, dechunk)` (HEAD, 204, 304: no body) |
/// |                | `responseQueued`           | —              | `proceed`                                   |
/// |                | `strayBytes`               | —              | `proceed` (the upstream is not kept)        |
/// |                | `upstreamEnded(reset)`     | —              | close-delimited end: `endResponse`; started: `abort`; reused and safe: `retry`; else `refuse(502)` |
/// |                | `responseComplete`         | `.readingHead` / `.closing` | `nextRequest(keep)` / `closeAfterResponse(keep)` |
/// |                | `clientEnded`              | —              | `close(abort)`                              |
/// | `.upgrading`   | `upgradeFlushed(tls)`      | `.relaying` / — | TLS: `relay`; else `tunnel`                |
/// | `.closing`     | `answerWritten`            | —              | first time: `linger`; then `proceed`        |
/// |                | `clientEnded`              | —              | `close`                                     |
/// | `.relaying`    | `clientEnded(eof)`         | —              | `shutdownUpstream`                          |
/// |                | `upstreamEnded(eof)`       | —              | `proceed`                                   |
/// |                | `relayRound`               | —              | `notifyClient` / `finishRelay` / `proceed`  |
/// |                | either ended by a reset    | —              | `abort`                                     |
/// | all but `.closing`, `.relaying` | `refused(status)` | `.closing` / — | `respond(status)`; a response started: `abort` |
/// | any            | `timerFired`               | —              | by `timer`: `expired(…)`, or re-arm (server, tunnel), or `releaseTLS` |
/// | any            | `drain(buffered)`          | —              | idle between requests: `close`; else close after the response |
///
/// `refuse(status)` and `expired(…)` name an outcome: the loop counts its cause, then reports
/// `refused(status)` (a connect timeout: `connectFailed`), whose answer is `respond` or `abort`.
///
/// Invariants: `responseStarted` once any byte of an answer is queued for the client (an error
/// can then only reset the connection); `upstreamReusable` only for a response that allows it
/// and ended exactly at its framing; a retry happens at most once per request, only on a
/// reused upstream, and only when nothing of the request reached it or it is idempotent and
/// has no body.
struct HTTPExchangeMachine: BitwiseCopyable {
    enum State: UInt8 {
        case readingHead
        case connecting
        case exchanging
        case upgrading
        case closing
        /// After a 101 on a TLS client: bytes relayed both ways through the exchange's
        /// queues (the byte tunnel cannot carry a TLS session).
        case relaying
    }

    enum TimerKind: UInt8 {
        case clientIdle
        case requestHead
        case connect
        case server
        case closing
        case tunnel
        /// A terminated TLS client idle between requests: its record buffers are freed when
        /// this fires, then the client-idle timer takes over.
        case tlsIdle
    }

    /// A timer to arm: the slot's one deadline.
    struct Timer: BitwiseCopyable, Equatable {
        var kind: TimerKind
        var deadline: Int64
    }

    /// The waits the machine bounds, in milliseconds (the loop's current configuration).
    struct Timeouts: BitwiseCopyable {
        var client: Int64 = 50_000
        var requestHead: Int64 = 5_000
        var connect: Int64 = 5_000
        var server: Int64 = 50_000
        var requestBody: Int64 = 30_000
        var tunnel: Int64 = 3_600_000
        /// Bytes per second a request body must keep up; 0: no rate.
        var requestBodyMinRate: Int64 = 1024
        /// A TLS client's short idle before its record buffers are freed.
        var tlsIdle: Int64 = 1_000
    }

    /// How a body ends, as the machine decides it for a response.
    enum Framing: UInt8 {
        case none
        case length
        case chunked
        case untilClose
    }

    /// What a parsed request head asks for.
    struct RequestHead: BitwiseCopyable {
        var method: HTTPMethod = .get
        var http10 = false
        var connectionClose = false
        var keepAlive = false
        var upgrade = false
        /// Body bytes follow the head (a Content-Length of 0 is none).
        var hasBody = false
        /// No body framing at all (not even a Content-Length of 0).
        var bodyless = true
        /// The loop is draining: this is the connection's last request.
        var draining = false
        /// The request is an HTTP/2 stream: its only request; the stream's framing ends the
        /// body (chunked responses are de-chunked), and 1xx answers are not relayed.
        var stream = false
    }

    /// What a final response head allows.
    struct ResponseHead: BitwiseCopyable {
        var status: UInt16 = 200
        var connectionClose = false
        var keepAlive = false
        var http11 = true
        /// The framing the head declares (`Framing.none` for a Content-Length of 0).
        var framing: Framing = .length
        /// The client must be closed after this response (draining, or its listener left).
        var closeClient = false
    }

    /// Which wait ran out.
    enum Expiry: UInt8 {
        case clientIdle
        case requestHead
        case connect
        case requestBody
        case server
        case closing
        case tunnel
    }

    enum Event: BitwiseCopyable {
        /// Between requests with nothing buffered (`tls`: a terminated client).
        case waiting(tls: Bool)
        /// The first byte of a request head arrived (or a pipelined one is buffered).
        case headStarted
        case headParsed(RequestHead)
        /// The connection cannot take the newest tables (its listener left or changed).
        case listenerGone
        /// The request is answered by the proxy itself (a default backend, a redirect).
        case localAnswer
        /// That answer is queued; `upstreamAttached`: an upstream is attached now.
        case answerQueued(upstreamAttached: Bool)
        case upstreamAttached(reused: Bool)
        case connectPending
        case connected
        case connectFailed(timedOut: Bool, triesLeft: Bool)
        /// The request head is queued for the upstream; `requestBody`: bytes received of a
        /// body still awaited, nil when none is.
        case requestQueued(requestBody: Int64?)
        case requestBytesSent
        /// A 1xx response head (101 included).
        case interim(status: UInt16)
        case interimQueued
        case upgradeQueued
        case responseHead(ResponseHead)
        case responseQueued
        /// Upstream bytes past the end of the response.
        case strayBytes
        /// The upstream closed (`reset`: failed) before the response was complete.
        case upstreamEnded(reset: Bool)
        /// The response is written whole; `requestUnfinished`: the request was not sent whole.
        case responseComplete(requestUnfinished: Bool)
        /// The client closed (`reset`: failed); `idle`: no byte of a request was buffered.
        case clientEnded(reset: Bool, idle: Bool)
        /// The request cannot be served: answer `status`.
        case refused(status: UInt16)
        /// The closing answer is written (and the TLS output flushed).
        case answerWritten
        case upgradeFlushed(tls: Bool)
        /// A relay round ended with the queues for the client and the upstream flushed or not
        /// (reported again after `notifyClient`).
        case relayRound(toClientFlushed: Bool, toUpstreamFlushed: Bool)
        /// `requestBody` as in `requestQueued`.
        case timerFired(lastActivity: Int64, requestBody: Int64?)
        /// The loop drains; `buffered`: request bytes are buffered.
        case drain(buffered: Bool)
    }

    enum Action: BitwiseCopyable, Equatable {
        /// Nothing to do but carry on.
        case proceed
        case armTimer(Timer)
        case route
        /// Answer `status`: the loop counts the cause and reports `refused(status)`.
        case refuse(UInt16)
        /// Write the error answer `status`, close once it is written; arm the timer.
        case respond(status: UInt16, Timer)
        /// Reset the client connection.
        case abort
        /// Write the proxy's own answer, announcing the connection kept or closed.
        case writeAnswer(keep: Bool)
        /// Write what is queued, then close; arm the timer.
        case startClosing(Timer)
        case connect
        case connectNext
        case sendRequest
        /// Close the upstream and connect a new one for the same request.
        case retry
        case dropInterim
        case forwardInterim
        case startUpgrade
        /// Not a response the request allows.
        case rejectResponse
        case forwardResponse(Framing, closeClient: Bool, dechunk: Bool)
        /// The close-delimited body ended with the upstream.
        case endResponse
        case nextRequest(keepUpstream: Bool)
        case closeAfterResponse(keepUpstream: Bool, Timer)
        /// The answer is out: SHUT_WR and read until the client closes.
        case linger
        /// Relay through the exchange's queues; arm the timer.
        case relay(Timer)
        /// Hand the pair to the byte tunnel.
        case tunnel
        case shutdownUpstream
        case notifyClient
        /// Both ways ended and flushed: close.
        case finishRelay
        /// Close the client; `poolUpstream`: its clean upstream goes to the pool.
        case close(abort: Bool, poolUpstream: Bool)
        case expired(Expiry)
        /// Free the TLS record buffers; arm the timer.
        case releaseTLS(Timer)
    }

    private(set) var state: State = .readingHead
    private(set) var timer: TimerKind = .clientIdle
    /// The request in flight (or the last one).
    private(set) var method: HTTPMethod = .get
    private(set) var http10 = false
    /// The request is an HTTP/2 stream (`RequestHead.stream`).
    private(set) var stream = false
    private(set) var upgradeRequested = false
    /// A head was parsed and its response is not complete yet.
    private(set) var inRequest = false
    private var requestHasBody = false
    private var requestBodyless = true
    /// Close the client connection once this response is sent.
    private(set) var clientClose = false
    private(set) var responseHeadDone = false
    /// Bytes of an answer have been queued for the client: an error can no longer be answered.
    private(set) var responseStarted = false
    /// The upstream may be kept for another request when this exchange ends.
    private(set) var upstreamReusable = false
    private(set) var upstreamReused = false
    private var retried = false
    /// Bytes of the request in flight have gone into the upstream socket.
    private(set) var requestSent = false
    private var closeDelimited = false
    /// `.closing`: the answer is written and SHUT_WR sent; reading until the client closes.
    private(set) var lingering = false
    /// `.relaying`: each direction's end seen; the client's write side shut.
    private(set) var relayClientDone = false
    private(set) var relayUpstreamDone = false
    private(set) var relayClientNotified = false
    /// When the request body's clock started (its head went upstream, or a 1xx came back).
    private(set) var bodyStart: Int64 = 0

    init() {}

    /// Applies `event`, observed at `now` (ms), and returns what the loop must do. Traps on an
    /// event the current state does not allow.
    mutating func on(_ event: Event, now: Int64, _ t: Timeouts) -> Action {
        switch event {
        case .waiting(let tls):
            expect(.readingHead, event)
            return arm(tls ? .tlsIdle : .clientIdle, now + (tls ? min(t.tlsIdle, t.client) : t.client))
        case .headStarted:
            expect(.readingHead, event)
            return arm(.requestHead, now + t.requestHead)
        case .headParsed(let head):
            expect(.readingHead, event)
            method = head.method
            http10 = head.http10
            stream = head.stream
            clientClose = head.connectionClose || (head.http10 && !head.keepAlive) || head.draining || head.stream
            upgradeRequested = head.upgrade
            requestHasBody = head.hasBody
            requestBodyless = head.bodyless
            retried = false
            inRequest = true
            return head.method == .connect ? .refuse(501) : .route
        case .listenerGone:
            expect(.readingHead, event)
            if inRequest {
                clientClose = true
                return .proceed
            }
            return startClosing(now + min(t.client, 5_000))
        case .localAnswer:
            expectRequest(.readingHead, event)
            return .writeAnswer(keep: keepsAfterLocalAnswer)
        case .answerQueued(let upstreamAttached):
            expectRequest(.readingHead, event)
            responseStarted = true
            responseHeadDone = true
            if keepsAfterLocalAnswer {
                requestHasBody = false
                upstreamReusable = upstreamReusable && upstreamAttached
                state = .exchanging
                return .proceed
            }
            clientClose = true
            return startClosing(now + t.client)
        case .upstreamAttached(let reused):
            expectRequest(.readingHead, event)
            upstreamReused = reused
            return reused ? .sendRequest : .connect
        case .connectPending:
            expectConnecting(event)
            state = .connecting
            return arm(.connect, now + t.connect)
        case .connected:
            expectConnecting(event)
            return .sendRequest
        case .connectFailed(let timedOut, let triesLeft):
            expectConnecting(event)
            if triesLeft { return .connectNext }
            return .refuse(timedOut ? 504 : 502)
        case .requestQueued(let body):
            expectConnecting(event)
            responseHeadDone = false
            responseStarted = false
            upstreamReusable = false
            requestSent = false
            closeDelimited = false
            bodyStart = now
            state = .exchanging
            return arm(.server, min(now + t.server, requestBodyDeadline(body, t)))
        case .requestBytesSent:
            expect(.exchanging, event)
            requestSent = true
            return .proceed
        case .interim(let status):
            expect(.exchanging, event)
            if status == 101 { return upgradeRequested ? .startUpgrade : .rejectResponse }
            // A 100 Continue starts the body's clock: the client waited for it.
            bodyStart = now
            // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client; the final answer follows.
            // (An HTTP/2 stream sends a 1xx as HEADERS without END_STREAM.)
            return http10 ? .dropInterim : .forwardInterim
        case .interimQueued:
            expect(.exchanging, event)
            responseStarted = true
            return .proceed
        case .upgradeQueued:
            expect(.exchanging, event)
            responseStarted = true
            state = .upgrading
            return .proceed
        case .responseHead(let head):
            expect(.exchanging, event)
            return responseHead(head)
        case .responseQueued:
            expect(.exchanging, event)
            responseHeadDone = true
            responseStarted = true
            return .proceed
        case .strayBytes:
            expect(.exchanging, event)
            upstreamReusable = false
            return .proceed
        case .upstreamEnded(let reset):
            return upstreamEnded(reset: reset, event)
        case .responseComplete(let requestUnfinished):
            expect(.exchanging, event)
            if requestUnfinished {
                // The server answered before the request was sent whole: neither side can be
                // kept in step.
                clientClose = true
                upstreamReusable = false
            }
            inRequest = false
            if clientClose {
                state = .closing
                lingering = false
                timer = .closing
                return .closeAfterResponse(
                    keepUpstream: upstreamReusable, Timer(kind: .closing, deadline: now + min(t.client, 5_000)))
            }
            state = .readingHead
            // Nothing of the next answer is out: an error for the next request is answered.
            responseStarted = false
            responseHeadDone = false
            return .nextRequest(keepUpstream: upstreamReusable)
        case .clientEnded(let reset, let idle):
            return clientEnded(reset: reset, idle: idle, event)
        case .refused(let status):
            guard state != .closing && state != .relaying else { illegal(event) }
            if responseStarted { return .abort }
            responseStarted = true
            clientClose = true
            state = .closing
            lingering = false
            timer = .closing
            return .respond(status: status, Timer(kind: .closing, deadline: now + t.client))
        case .answerWritten:
            expect(.closing, event)
            if lingering { return .proceed }
            lingering = true
            return .linger
        case .upgradeFlushed(let tls):
            expect(.upgrading, event)
            guard tls else { return .tunnel }
            state = .relaying
            relayClientDone = false
            relayUpstreamDone = false
            relayClientNotified = false
            timer = .tunnel
            return .relay(Timer(kind: .tunnel, deadline: now + t.tunnel))
        case .relayRound(let toClientFlushed, let toUpstreamFlushed):
            expect(.relaying, event)
            if relayUpstreamDone && toClientFlushed && !relayClientNotified {
                relayClientNotified = true
                return .notifyClient
            }
            if relayClientDone && relayUpstreamDone && toClientFlushed && toUpstreamFlushed { return .finishRelay }
            return .proceed
        case .timerFired(let lastActivity, let body):
            return timerFired(lastActivity: lastActivity, body: body, now: now, t)
        case .drain(let buffered):
            if state == .readingHead && !buffered { return .close(abort: false, poolUpstream: false) }
            clientClose = true
            return .proceed
        }
    }

    /// A default answer or redirect keeps the connection when nothing of the request remains
    /// to be read and the client did not ask to close.
    private var keepsAfterLocalAnswer: Bool { !requestHasBody && !clientClose }

    private mutating func responseHead(_ head: ResponseHead) -> Action {
        var framing = head.framing
        if method == .head || head.status < 200 || head.status == 204 || head.status == 304 {
            framing = .none
        } else if method == .connect && head.status < 300 {
            framing = .untilClose
        }
        // An HTTP/1.0 client cannot read chunked: strip the framing, end the body by closing.
        // An HTTP/2 stream carries the body in DATA frames and ends it with END_STREAM.
        let dechunk = (http10 || stream) && framing == .chunked
        let untilClose = framing == .untilClose
        clientClose = clientClose || dechunk || untilClose || head.closeClient
        upstreamReusable = !head.connectionClose && !untilClose && (head.http11 || head.keepAlive)
        closeDelimited = untilClose
        return .forwardResponse(framing, closeClient: clientClose, dechunk: dechunk)
    }

    private mutating func upstreamEnded(reset: Bool, _ event: Event) -> Action {
        switch state {
        case .exchanging:
            if responseHeadDone && closeDelimited && !reset {
                upstreamReusable = false
                return .endResponse
            }
            if responseStarted { return .abort }
            // A reused keep-alive connection the server closed as we sent: retry once on a new
            // connection when nothing of the request reached the socket, or when it is
            // idempotent (RFC 9110 §9.2.2) and had no body (nothing of it is lost). A POST
            // that went out is never sent twice.
            if upstreamReused && !retried && (!requestSent || (Self.isIdempotent(method) && requestBodyless)) {
                retried = true
                upstreamReused = false
                return .retry
            }
            return .refuse(502)
        case .relaying:
            if reset { return .abort }
            relayUpstreamDone = true
            return .proceed
        case .readingHead, .connecting, .upgrading, .closing:
            illegal(event)
        }
    }

    private mutating func clientEnded(reset: Bool, idle: Bool, _ event: Event) -> Action {
        switch state {
        case .readingHead:
            // A keep-alive client leaving between requests: its clean upstream goes to the pool.
            return .close(abort: reset, poolUpstream: idle && !reset)
        case .exchanging:
            // The client went away mid-request: it cannot complete.
            return .close(abort: true, poolUpstream: false)
        case .closing:
            return .close(abort: false, poolUpstream: false)
        case .relaying:
            if reset { return .abort }
            relayClientDone = true
            return .shutdownUpstream
        case .connecting, .upgrading:
            illegal(event)
        }
    }

    private mutating func timerFired(lastActivity: Int64, body: Int64?, now: Int64, _ t: Timeouts) -> Action {
        switch timer {
        case .clientIdle: return .expired(.clientIdle)
        case .requestHead: return .expired(.requestHead)
        case .connect: return .expired(.connect)
        case .closing: return .expired(.closing)
        case .server:
            let idleUntil = lastActivity + t.server
            let bodyDue = requestBodyDeadline(body, t)
            // The client trickles its body: 408 while nothing of the response went out.
            if bodyDue <= now { return .expired(.requestBody) }
            if idleUntil > now { return .armTimer(Timer(kind: .server, deadline: min(idleUntil, bodyDue))) }
            return .expired(.server)
        case .tlsIdle:
            timer = .clientIdle
            return .releaseTLS(Timer(kind: .clientIdle, deadline: lastActivity + t.client))
        case .tunnel:
            let idleUntil = lastActivity + t.tunnel
            if idleUntil > now { return .armTimer(Timer(kind: .tunnel, deadline: idleUntil)) }
            return .expired(.tunnel)
        }
    }

    /// When the request body in flight is overdue: its grace after `bodyStart`, plus one
    /// second per `requestBodyMinRate` bytes received. `Int64.max` when no body is awaited.
    @inline(__always)
    func requestBodyDeadline(_ received: Int64?, _ t: Timeouts) -> Int64 {
        guard let received else { return .max }
        var deadline = bodyStart + t.requestBody
        if t.requestBodyMinRate > 0 { deadline += received * 1000 / t.requestBodyMinRate }
        return deadline
    }

    /// GET, HEAD, PUT, DELETE, OPTIONS and TRACE (RFC 9110 §9.2.2).
    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .get, .head, .put, .delete, .options, .trace: return true
        case .post, .patch, .connect, .other: return false
        }
    }

    @inline(__always)
    private mutating func arm(_ kind: TimerKind, _ deadline: Int64) -> Action {
        timer = kind
        return .armTimer(Timer(kind: kind, deadline: deadline))
    }

    @inline(__always)
    private mutating func startClosing(_ deadline: Int64) -> Action {
        state = .closing
        lingering = false
        timer = .closing
        return .startClosing(Timer(kind: .closing, deadline: deadline))
    }

    @inline(__always)
    private func expect(_ wanted: State, _ event: Event) {
        if state != wanted { illegal(event) }
    }

    @inline(__always)
    private func expectRequest(_ wanted: State, _ event: Event) {
        if state != wanted || !inRequest { illegal(event) }
    }

    /// The upstream's connect steps: while a request is routed (`.readingHead`), connecting,
    /// or retried (`.exchanging`).
    @inline(__always)
    private func expectConnecting(_ event: Event) {
        guard inRequest, state == .readingHead || state == .connecting || state == .exchanging else {
            illegal(event)
        }
    }

    private func illegal(_ event: Event) -> Never {
        preconditionFailure("HTTPExchangeMachine: event \(event) in state \(state)")
    }
}
