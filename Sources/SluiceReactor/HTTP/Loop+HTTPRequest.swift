import SluiceRouting
import SluiceSystem
import SluiceWire

/// Reading, routing and sending requests: the head, the upstream, the body.
extension Loop {
    // MARK: - Request head

    func readRequestHead(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.req.buffer < 0 {
            guard c.pointee.toUp.srcReadable else { return .wait }
            e.pointee.req = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.req.buffer)
        if e.pointee.proxyPending && !e.pointee.req.isEmpty {
            // A trusted load balancer in front tells who the client is, before the request.
            let bytes = UnsafeRawBufferPointer(start: base + Int(e.pointee.req.start), count: Int(e.pointee.req.count))
            switch consumeProxyHeader(e, bytes) {
            case .needMore: break
            case .bad:
                countFrontend(c, .requestErrors)
                closeHTTP(slot, abort: true, reason: .badPreface)
                return .closed
            case .consumed:
                // A PROXY header alone (a health check) is no request.
                if e.pointee.req.isEmpty { e.pointee.stats.pending = false }
                return .again
            }
        }
        if let step = detectPreface(slot) { return step }
        if !e.pointee.req.isEmpty && !e.pointee.proxyPending {
            let head = UnsafeRawBufferPointer(start: base + Int(e.pointee.req.start), count: Int(e.pointee.req.count))
            switch e.pointee.reqScan.scan(head, limits: httpLimits) {
            case .complete(let length): return startRequest(slot, headLength: length)
            case .tooLarge:
                countFrontend(c, .httpRequests)
                return respondError(slot, status: 431, reason: .badRequest)
            case .needMore: break
            }
        }
        guard c.pointee.toUp.srcReadable else {
            releaseIfEmpty(&e.pointee.req)
            return .wait
        }
        if e.pointee.req.end == Self.httpBufferSize {
            guard e.pointee.req.start > 0 else {
                countFrontend(c, .httpRequests)
                return respondError(slot, status: 431, reason: .badRequest)
            }
            compact(&e.pointee.req, base)
        }
        let wasEmpty = e.pointee.req.isEmpty
        let room = Self.httpBufferSize - e.pointee.req.end
        switch receive(c, from: .downstream, into: base + Int(e.pointee.req.end), count: room) {
        case .bytes(let n):
            e.pointee.req.end += n
            c.pointee.life.activity(now: now)
            if wasEmpty {
                apply(slot, .headStarted)
                beginRequest(slot)
            }
            return .again
        case .wouldBlock:
            releaseIfEmpty(&e.pointee.req)
            return .wait
        case .eof:
            // A keep-alive client leaving between requests, or one that gave up mid-head.
            return clientEnded(slot, reset: false, idle: wasEmpty, reason: .clientClosed)
        case .failed(let error):
            return clientEnded(slot, reset: true, idle: wasEmpty, reason: Self.failure(error, client: true))
        }
    }

    /// The client closed (`reset`: failed) outside a relay: closes as the machine says,
    /// recording `reason`.
    func clientEnded(_ slot: Int32, reset: Bool, idle: Bool, reason: CloseReason) -> HTTPStep {
        let event = HTTPExchangeMachine.Event.clientEnded(reset: reset, idle: idle)
        switch report(slot, event) {
        case .close(let abort, let poolUpstream):
            if poolUpstream { detachUpstream(slot) }
            closeHTTP(slot, abort: abort, reason: reason)
        case .abort:
            closeHTTP(slot, abort: true, reason: reason)
        default:
            unexpected(event)
        }
        return .closed
    }

    /// A whole request head is at `req.start`: parse, route, pick, then reuse or connect.
    func startRequest(_ slot: Int32, headLength: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let base = httpBuffers.base(e.pointee.req.buffer)
        let headBuf = UnsafeRawBufferPointer(start: base + Int(e.pointee.req.start), count: Int(headLength))
        let head: HTTPRequestHead
        countFrontend(c, .httpRequests)
        e.pointee.stats.headAfter = ConnectionStats.after(e.pointee.stats.startMicros, nowMicros)
        switch HTTPRequestParser.parse(headBuf, fields: fieldStore, limits: httpLimits) {
        case .failure(let error):
            counters.httpBadRequests += 1
            return respondError(slot, status: error.status, reason: .badRequest)
        case .success(let parsed):
            head = parsed
        }
        counters.httpRequests += 1
        if logPolicy(c) != nil { noteRequestHead(e, head, headBuf) }
        e.pointee.headStart = e.pointee.req.start
        e.pointee.headLength = headLength
        e.pointee.reqBody = HTTPExchange.Body(head.bodyKind)
        e.pointee.setCookie = false
        let parsed = HTTPExchangeMachine.RequestHead(
            method: head.method, http10: head.minorVersion == 0, connectionClose: head.connectionClose,
            keepAlive: head.connectionKeepAlive, upgrade: head.connectionUpgrade && head.upgrade != nil,
            hasBody: !e.pointee.reqBody.done, bodyless: head.bodyKind == .none, draining: lastRequests,
            stream: c.pointee.h2 == .stream)
        switch report(slot, .headParsed(parsed)) {
        case .route: break
        case .refuse(let status): return respondError(slot, status: status, reason: .badRequest)
        default: unexpected(.headParsed(parsed))
        }

        // Route with the newest table; a connection whose listener is gone (or changed
        // protocol) finishes this request on the table it was read with, then closes.
        if !rebindToListener(slot) { apply(slot, .listenerGone) }
        let routedWith = routed(c)
        let routeTable = routedWith.routeTables[Int(e.pointee.routes)]
        let host = head.host.map { slice(headBuf, $0) } ?? UnsafeRawBufferPointer(start: base, count: 0)
        let service: Int
        // Routes match the normalised path (dot segments, repeated slashes, unreserved escapes),
        // so `/pub/../admin` or `/pub/%2e%2e/admin` cannot pass a path route or an ACL by.
        guard let path = normalizedPath(headBuf, head: head) else {
            counters.httpBadRequests += 1
            return respondError(slot, status: 400, reason: .badRequest)
        }
        let defaultPort: UInt16 = e.pointee.secure ? 443 : 80
        e.pointee.hstsRoute = -1
        switch routeTable.lookup(host: host, path: path, defaultPort: defaultPort) {
        case .service(let index, let strip):
            service = Int(index)
            e.pointee.stripPrefix = strip
            if e.pointee.secure && routeTable.hasHSTS {
                let route = routeTable.lookupRoute(host: host, path: path, defaultPort: defaultPort)
                if route >= 0 && routeTable.routes[Int(route)].hstsField != nil { e.pointee.hstsRoute = route }
            }
        case .redirect(let route):
            return respondRedirect(
                slot, port: routeTable.routes[Int(route)].httpsPort, host: host, target: slice(headBuf, head.target))
        case .noRoute, .terminate:
            counters.httpNoRoute += 1
            countFrontend(c, .noRoute)
            guard let fallback = routeTable.defaultBackend.service else {
                return respondDefault(slot, routeTable.defaultBackend)
            }
            service = fallback
            e.pointee.stripPrefix = 0
        }

        // The request belongs to the service from here on (its row counts it, its 503).
        c.pointee.service = Int32(service)
        e.pointee.stats.routed = true
        countBackend(c, .httpRequests)

        // Pick an endpoint: a valid stickiness cookie first.
        var endpoint: Int? = nil
        if routedWith.services[service].algorithm == .cookie {
            if let value = findCookie(routedWith.services[service], head: head, headBuf: headBuf),
                let sticky = routedWith.endpoint(forCookie: value, service: service), !isDown(c, sticky)
            {
                endpoint = sticky
            } else {
                e.pointee.setCookie = true
            }
        }
        if endpoint == nil {
            endpoint = pickEndpoint(c, service: service, clientHash: peerHash(e))
        }
        guard let endpoint else {
            counters.noEndpoint += 1
            countBackend(c, .noEndpoint)
            return respondError(slot, status: 503, reason: .noEndpoint)
        }
        return attachUpstream(slot, service: service, endpoint: endpoint, allowReuse: true)
    }

    /// Gets a connection to `endpoint`: the one this client parked after its last response
    /// (no system call), an idle one from the pool, or a new one.
    func attachUpstream(_ slot: Int32, service: Int, endpoint: Int, allowReuse: Bool) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        countClosed(c)
        if c.pointee.h2Upstream { detachStream(slot, abort: true) }
        detachUpstream(slot, keepParked: true)
        c.pointee.service = Int32(service)
        c.pointee.endpoint = Int32(endpoint)
        c.pointee.stats.connectMicros = -1
        e.pointee.stats.attached = true
        countOpened(c)
        if routed(c).services[service].upstreamProtocol != .http1 {
            // A stream on a shared HTTP/2 connection: one already connected is reused
            // (the machine may retry on it, as on a kept connection), else `connectTry`
            // finds or opens one.
            disownParked(c)
            c.pointee.h2Upstream = true
            e.pointee.stats.upstreamH2 = true
            if let session = findUpstreamSession(upstreamKey(routed: c)), exchange(session).pointee.h2.connected {
                linkStream(slot, session)
                counters.pooledReuses += 1
                countUpstream(c, .reuses, .reuses)
                c.pointee.toUp.dstWritable = true
                c.pointee.toDown.srcReadable = false
                c.pointee.toDown.srcHangup = false
                return upstreamAttached(slot, reused: true)
            }
            return upstreamAttached(slot, reused: false)
        }
        if allowReuse, let pooled = currentEndpoint(c) {
            if let fd = reclaimParked(slot, endpoint: pooled) {
                c.pointee.upFD = fd
                counters.pooledReuses += 1
                countUpstream(c, .reuses, .reuses)
                return upstreamAttached(slot, reused: true)
            }
            // Another endpoint (or nothing parked): the parked one goes to the pooled token
            // before this client's token names a second descriptor.
            disownParked(c)
            if let (fd, _) = pool.take(endpoint: pooled) {
                c.pointee.upFD = fd
                guard driver.rewatch(fd, EventToken(kind: .upstream, index: slot, generation: c.pointee.generation))
                else {
                    driver.close(fd)
                    c.pointee.upFD = -1
                    return attachUpstream(slot, service: service, endpoint: endpoint, allowReuse: false)
                }
                counters.pooledReuses += 1
                countUpstream(c, .reuses, .reuses)
                c.pointee.toUp.dstWritable = true
                c.pointee.toDown.srcReadable = false
                c.pointee.toDown.srcHangup = false
                return upstreamAttached(slot, reused: true)
            }
        }
        disownParked(c)
        return upstreamAttached(slot, reused: false)
    }

    /// An upstream is attached for the request (`reused`: a kept one), or one must be opened.
    func upstreamAttached(_ slot: Int32, reused: Bool) -> HTTPStep {
        switch report(slot, .upstreamAttached(reused: reused)) {
        case .sendRequest: return queueRequest(slot)
        case .connect: return connectUpstream(slot)
        default: unexpected(.upstreamAttached(reused: reused))
        }
    }

    /// The upstream's connect completed: the request goes out.
    func upstreamConnected(_ slot: Int32) -> HTTPStep {
        guard case .sendRequest = report(slot, .connected) else { unexpected(.connected) }
        return queueRequest(slot)
    }

    /// Connects the request's endpoint: a first try, as `ConnectionLifecycle` counts them.
    func connectUpstream(_ slot: Int32) -> HTTPStep {
        _ = table.pointer(slot).pointee.life.start(now: now, connectMillis: snapshot.timeouts.connectMillis)
        return connectTry(slot)
    }

    /// One connect of the request's endpoint through the shared connector (`Upstream/`).
    func connectTry(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        if c.pointee.h2Upstream { return connectStream(slot) }
        c.pointee.toDown.srcReadable = false
        c.pointee.toDown.srcHangup = false
        c.pointee.toUp.dstWritable = false
        switch openConnect(slot) {
        case .connected:
            c.pointee.toUp.dstWritable = true
            connectSucceeded(c)
            return upstreamConnected(slot)
        case .inProgress:
            apply(slot, .connectPending)
            return .wait
        case .refused:
            return httpConnectFailed(slot, timedOut: false)
        case .noDescriptors:
            return respondError(slot, status: 503, reason: .overLimit)
        case .unwatched:
            closeHTTP(slot, abort: true, reason: .overLimit)
            return .closed
        }
    }

    /// Connect refused or timed out: the next endpoint while tries remain, else 502 (504 for
    /// a timeout). Does not pump: event and timer callers pump on `.again`.
    func httpConnectFailed(_ slot: Int32, timedOut: Bool) -> HTTPStep {
        let event = HTTPExchangeMachine.Event.connectFailed(
            timedOut: timedOut, triesLeft: retryConnect(slot, timedOut: timedOut) != nil)
        switch report(slot, event) {
        case .connectNext:
            countOpened(table.pointer(slot))
            return connectTry(slot)
        case .refuse(let status):
            return respondError(slot, status: status, reason: timedOut ? .connectTimeout : .connectFailed)
        default:
            unexpected(event)
        }
    }

    /// The upstream is connected: write the rewritten head and what body bytes are here.
    func queueRequest(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let base = httpBuffers.base(e.pointee.req.buffer)
        let headBuf = UnsafeRawBufferPointer(start: base + Int(e.pointee.headStart), count: Int(e.pointee.headLength))
        // The field table is shared by the loop's connections: parse again (tens of ns).
        guard case .success(let head) = HTTPRequestParser.parse(headBuf, fields: fieldStore, limits: httpLimits) else {
            return respondError(slot, status: 400, reason: .badRequest)
        }
        if e.pointee.upq.buffer < 0 { e.pointee.upq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.upq.buffer), count: Int(Self.httpBufferSize))
        guard let path = forwardedPath(headBuf, head: head, strip: e.pointee.stripPrefix) else {
            return respondError(slot, status: 400, reason: .badRequest)
        }
        let clientLength = formatPeer(e, into: scratch)
        let written = HTTPHeadWriter.writeRequest(
            head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
            pathOverride: path, clientAddress: UnsafeRawBufferPointer(start: scratch, count: clientLength),
            proto: e.pointee.secure ? Self.protoHTTPS : Self.protoHTTP, port: e.pointee.listenPort,
            upgrading: e.pointee.machine.upgradeRequested, requestID: forwardedRequestID(e, headBuf: headBuf),
            trailersTE: c.pointee.h2Upstream, into: out
        )
        guard let written else { return respondError(slot, status: 431, reason: .badRequest) }
        if !e.pointee.stats.sent {
            e.pointee.stats.sent = true
            countSent(c, http: true)
        }
        e.pointee.stats.sentAfter = ConnectionStats.after(e.pointee.stats.startMicros, nowMicros)
        e.pointee.upq.start = 0
        e.pointee.upq.end = Int32(written)
        e.pointee.req.start = e.pointee.headStart + e.pointee.headLength
        e.pointee.reqScan.reset()
        e.pointee.respScan.reset()
        c.pointee.life.activity(now: now)
        apply(slot, .requestQueued(requestBody: awaitedBody(e)))
        return .again
    }

    // MARK: - Exchange

    /// One round of the exchange: request body out, response in, response out.
    func exchangeStep(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        var progressed = false

        // Request body into the upstream queue.
        if e.pointee.upq.isEmpty && !e.pointee.reqBody.done {
            let body = shouldSplice(e, toUpstream: true) ? spliceBody(slot, toUpstream: true) : fillRequestBody(slot)
            switch body {
            case .again: progressed = true
            case .closed: return .closed
            case .wait: break
            }
        }
        // Upstream queue out.
        if !e.pointee.upq.isEmpty && c.pointee.toUp.dstWritable {
            switch send(c, &e.pointee.upq, to: .upstream) {
            case .bytes:
                apply(slot, .requestBytesSent)
                progressed = true
            case .wouldBlock: break
            case .failed(let error): return upstreamFailed(slot, reason: Self.failure(error, client: false))
            }
        }
        if e.pointee.upq.isEmpty { releaseIfEmpty(&e.pointee.upq) }

        // Response in.
        if !e.pointee.machine.responseHeadDone {
            switch readResponseHead(slot) {
            case .again: progressed = true
            case .closed: return .closed
            case .wait: break
            }
            if e.pointee.machine.state != .exchanging { return .again }
        } else if !e.pointee.respBody.done && e.pointee.downq.isEmpty {
            let body = shouldSplice(e, toUpstream: false) ? spliceBody(slot, toUpstream: false) : fillResponseBody(slot)
            switch body {
            case .again: progressed = true
            case .closed: return .closed
            case .wait: break
            }
        }
        // Client queue out.
        if !e.pointee.downq.isEmpty && c.pointee.toDown.dstWritable {
            switch send(c, &e.pointee.downq, to: .downstream) {
            case .bytes: progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        if e.pointee.downq.isEmpty { releaseIfEmpty(&e.pointee.downq) }

        if e.pointee.machine.responseHeadDone && e.pointee.respBody.done && e.pointee.downq.isEmpty {
            return finishExchange(slot)
        }
        return progressed ? .again : .wait
    }

    /// Moves request body bytes (already read, or read now) into the empty upstream queue.
    func fillRequestBody(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.upq.buffer < 0 { e.pointee.upq.buffer = httpBuffers.acquire() }
        e.pointee.upq.start = 0
        e.pointee.upq.end = 0
        let out = httpBuffers.base(e.pointee.upq.buffer)
        if !e.pointee.req.isEmpty {
            let src = httpBuffers.base(e.pointee.req.buffer) + Int(e.pointee.req.start)
            let take = takeBody(&e.pointee.reqBody, src, min(e.pointee.req.count, Self.httpBufferSize))
            guard take >= 0 else { return bodyError(slot) }
            out.copyMemory(from: src, byteCount: Int(take))
            e.pointee.upq.end = take
            e.pointee.req.start += take
            return take > 0 ? .again : .wait
        }
        guard c.pointee.toUp.srcReadable else { return .wait }
        var room = Self.httpBufferSize
        if case .length = e.pointee.reqBody.kind { room = Int32(min(Int64(room), e.pointee.reqBody.remaining)) }
        switch receive(c, from: .downstream, into: out, count: room) {
        case .bytes(let n):
            c.pointee.life.activity(now: now)
            let take = takeBody(&e.pointee.reqBody, out, n)
            guard take >= 0 else { return bodyError(slot) }
            e.pointee.upq.end = take
            if take < n {
                // Bytes after the body: the next pipelined request.
                keepPipelined(e, out + Int(take), n - take)
            }
            return .again
        case .wouldBlock:
            return .wait
        case .eof:
            // The client went away mid-body: the request cannot complete.
            return clientEnded(slot, reset: false, idle: false, reason: .clientClosed)
        case .failed(let error):
            return clientEnded(slot, reset: true, idle: false, reason: Self.failure(error, client: true))
        }
    }

    /// Bytes read past a request body: keep them in `req` for the next request.
    func keepPipelined(_ e: UnsafeMutablePointer<HTTPExchange>, _ bytes: UnsafeMutableRawPointer, _ count: Int32) {
        if e.pointee.req.buffer < 0 {
            e.pointee.req = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.req.buffer)
        if e.pointee.req.end + count > Self.httpBufferSize {
            // The head of this request is no longer needed once the body flows.
            compactKeepingHead(e, base)
        }
        let room = min(count, Self.httpBufferSize - e.pointee.req.end)
        (base + Int(e.pointee.req.end)).copyMemory(from: bytes, byteCount: Int(room))
        e.pointee.req.end += room
    }

    /// Bad chunked framing in a request body: 400, or a reset once a response started.
    func bodyError(_ slot: Int32) -> HTTPStep {
        counters.httpBadRequests += 1
        return respondError(slot, status: 400, reason: .badRequest)
    }

    /// How many of `count` bytes at `src` belong to the body; -1 on bad chunked framing.
    @inline(__always)
    func takeBody(_ body: inout HTTPExchange.Body, _ src: UnsafeRawPointer, _ count: Int32) -> Int32 {
        if body.done { return 0 }
        switch body.kind {
        case .none:
            body.done = true
            return 0
        case .length:
            let n = Int32(min(Int64(count), body.remaining))
            body.remaining -= Int64(n)
            body.received += Int64(n)
            if body.remaining == 0 { body.done = true }
            return n
        case .chunked:
            switch body.chunks.scan(UnsafeRawBufferPointer(start: src, count: Int(count))) {
            case .consumed(let n):
                body.received += Int64(n)
                return n
            case .end(let n):
                body.received += Int64(n)
                body.done = true
                return n
            case .error: return -1
            }
        case .untilClose:
            body.received += Int64(count)
            return count
        }
    }
}
