import SluiceRouting
import SluiceSystem
import SluiceWire

/// The `http` listener's data path: read a request head, route it by Host and path, pick an
/// endpoint, reuse or open an upstream connection, forward the rewritten head and the body,
/// read the response head, forward it and its body, then take the next request. See
/// `HTTPExchange` for the state table. Runs on the loop thread; allocates nothing per
/// request (buffers and upstream connections come from per-loop pools).
extension Loop {
    enum HTTPStep {
        case again
        case wait
        case closed
    }

    static let httpBufferSize: Int32 = 32 * 1024

    @inline(__always)
    func exchange(_ slot: Int32) -> UnsafeMutablePointer<HTTPExchange> { table.exchanges + Int(slot) }

    /// A new client connection on an http listener (already registered with epoll).
    func openHTTP(_ slot: Int32, peer: SystemAddress?, listener: LoopListener) {
        let c = table.pointer(slot)
        c.pointee.isHTTP = true
        let e = exchange(slot)
        e.initialize(to: HTTPExchange())
        e.pointee.routes = listener.routes
        e.pointee.listenPort = listener.key.address.port
        if let peer {
            switch peer.ip {
            case .v4(let a):
                e.pointee.peerLo = UInt64(a)
            case .v6(let hi, let lo):
                e.pointee.peerV6 = true
                e.pointee.peerHi = hi
                e.pointee.peerLo = lo
            }
        }
        c.pointee.life.activity(now: now)
        armHTTPTimer(slot, .clientIdle, at: now + snapshot.timeouts.clientMillis)
        httpPump(slot)
    }

    @inline(__always)
    func armHTTPTimer(_ slot: Int32, _ kind: HTTPExchange.TimerKind, at deadline: Int64) {
        exchange(slot).pointee.timer = kind
        timers.schedule(slot, at: deadline)
    }

    // MARK: - Events

    @inline(__always)
    func onHTTPDownstream(_ slot: Int32, _ mask: UInt32) {
        let c = table.pointer(slot)
        if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 {
            c.pointee.toUp.srcReadable = true
            if mask & (Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 { c.pointee.toUp.srcHangup = true }
        }
        if mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 { c.pointee.toDown.dstWritable = true }
        httpPump(slot)
    }

    @inline(__always)
    func onHTTPUpstream(_ slot: Int32, _ mask: UInt32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 {
            c.pointee.toDown.srcReadable = true
            if mask & (Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 { c.pointee.toDown.srcHangup = true }
        }
        if mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 { c.pointee.toUp.dstWritable = true }
        if e.pointee.phase == .readingHead {
            // The kept upstream between requests: any input means the server closed it or
            // sent bytes nobody asked for. Drop it; the next request takes another.
            if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup | Epoll.error) != 0 && c.pointee.upFD >= 0 {
                Syscall.close(c.pointee.upFD)
                c.pointee.upFD = -1
                c.pointee.toDown.srcReadable = false
                c.pointee.toDown.srcHangup = false
            }
            return
        }
        if e.pointee.phase == .connecting {
            guard mask & (Epoll.writable | Epoll.hangup | Epoll.error) != 0 else { return }
            let step: HTTPStep
            if Socket.pendingError(c.pointee.upFD) == nil {
                picker.markUp(Int(c.pointee.endpoint))
                step = queueRequest(slot)
            } else {
                step = httpConnectFailed(slot, timedOut: false)
            }
            if step != .again { return }
        }
        httpPump(slot)
    }

    /// The slot's timer fired.
    func onHTTPTimer(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        switch e.pointee.timer {
        case .clientIdle:
            closeHTTP(slot, abort: false)
        case .requestHead:
            counters.httpTimeouts += 1
            if respondError(slot, status: 408) == .again { httpPump(slot) }
        case .connect:
            if httpConnectFailed(slot, timedOut: true) == .again { httpPump(slot) }
        case .server:
            let idleUntil = c.pointee.life.lastActivity + snapshot.timeouts.serverMillis
            if idleUntil > now {
                timers.schedule(slot, at: idleUntil)
            } else if !e.pointee.responseStarted {
                counters.httpTimeouts += 1
                if respondError(slot, status: 504) == .again { httpPump(slot) }
            } else {
                counters.httpTimeouts += 1
                closeHTTP(slot, abort: true)
            }
        case .closing:
            closeHTTP(slot, abort: false)
        }
    }

    // MARK: - Pump

    /// Runs the exchange until it waits for an event or the connection closed.
    func httpPump(_ slot: Int32) {
        let e = exchange(slot)
        while true {
            let step: HTTPStep
            switch e.pointee.phase {
            case .readingHead: step = readRequestHead(slot)
            case .connecting: return
            case .exchanging: step = exchangeStep(slot)
            case .upgrading: step = upgradeStep(slot)
            case .closing: step = closingStep(slot)
            }
            if step != .again { return }
        }
    }

    // MARK: - Request head

    func readRequestHead(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.req.buffer < 0 {
            guard c.pointee.toUp.srcReadable else { return .wait }
            e.pointee.req = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.req.buffer)
        if !e.pointee.req.isEmpty {
            let head = UnsafeRawBufferPointer(start: base + Int(e.pointee.req.start), count: Int(e.pointee.req.count))
            switch e.pointee.reqScan.scan(head, limits: httpLimits) {
            case .complete(let length): return startRequest(slot, headLength: length)
            case .tooLarge: return respondError(slot, status: 431)
            case .needMore: break
            }
        }
        guard c.pointee.toUp.srcReadable else {
            releaseIfEmpty(&e.pointee.req)
            return .wait
        }
        if e.pointee.req.end == Self.httpBufferSize {
            guard e.pointee.req.start > 0 else { return respondError(slot, status: 431) }
            compact(&e.pointee.req, base)
        }
        let wasEmpty = e.pointee.req.isEmpty
        let room = Self.httpBufferSize - e.pointee.req.end
        switch readSome(
            c.pointee.downFD, base + Int(e.pointee.req.end), room, &c.pointee.toUp.srcReadable, c.pointee.toUp.srcHangup
        ) {
        case .bytes(let n):
            e.pointee.req.end += n
            c.pointee.life.activity(now: now)
            if wasEmpty { armHTTPTimer(slot, .requestHead, at: now + snapshot.timeouts.requestHeadMillis) }
            return .again
        case .wouldBlock:
            releaseIfEmpty(&e.pointee.req)
            return .wait
        case .eof:
            // A keep-alive client leaving between requests, or one that gave up mid-head.
            closeHTTP(slot, abort: false)
            return .closed
        case .failed:
            closeHTTP(slot, abort: true)
            return .closed
        }
    }

    /// A whole request head is at `req.start`: parse, route, pick, then reuse or connect.
    func startRequest(_ slot: Int32, headLength: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let base = httpBuffers.base(e.pointee.req.buffer)
        let headBuf = UnsafeRawBufferPointer(start: base + Int(e.pointee.req.start), count: Int(headLength))
        let head: HTTPRequestHead
        switch HTTPRequestParser.parse(headBuf, fields: fieldStore, limits: httpLimits) {
        case .failure(let error):
            counters.httpBadRequests += 1
            return respondError(slot, status: error.status)
        case .success(let parsed):
            head = parsed
        }
        counters.httpRequests += 1
        e.pointee.headStart = e.pointee.req.start
        e.pointee.headLength = headLength
        e.pointee.method = head.method
        e.pointee.http10 = head.minorVersion == 0
        e.pointee.clientClose = head.connectionClose || (e.pointee.http10 && !head.connectionKeepAlive) || draining
        e.pointee.upgradeRequested = head.connectionUpgrade && head.upgrade != nil
        e.pointee.reqBody = HTTPExchange.Body(head.bodyKind)
        e.pointee.retried = false
        e.pointee.setCookie = false
        e.pointee.connectTries = 0
        if head.method == .connect { return respondError(slot, status: 501) }

        // Route by Host and path.
        let routeTable = snapshot.routeTables[Int(e.pointee.routes)]
        let host = head.host.map { slice(headBuf, $0) } ?? UnsafeRawBufferPointer(start: base, count: 0)
        let service: Int
        switch routeTable.lookup(host: host, path: slice(headBuf, head.path), defaultPort: 80) {
        case .service(let index, let strip):
            service = Int(index)
            e.pointee.stripPrefix = strip
        case .noRoute:
            counters.httpNoRoute += 1
            guard let fallback = routeTable.defaultBackend.service else {
                return respondDefault(slot, routeTable.defaultBackend, hasBody: !e.pointee.reqBody.done)
            }
            service = fallback
            e.pointee.stripPrefix = 0
        }

        // Pick an endpoint: a valid stickiness cookie first.
        var endpoint: Int? = nil
        if snapshot.services[service].algorithm == .cookie {
            if let value = findCookie(service: service, head: head, headBuf: headBuf),
                let sticky = picker.endpoint(forCookie: value, service: service), !picker.isDown(sticky, now: now)
            {
                endpoint = sticky
            } else {
                e.pointee.setCookie = true
            }
        }
        if endpoint == nil {
            endpoint = picker.pick(service: service, clientHash: peerHash(e), now: now)
        }
        guard let endpoint else {
            counters.noEndpoint += 1
            return respondError(slot, status: 503)
        }
        return attachUpstream(slot, service: service, endpoint: endpoint, allowReuse: true)
    }

    /// Gets a connection to `endpoint`: the one this client connection already holds, an
    /// idle one from the pool, or a new one.
    func attachUpstream(_ slot: Int32, service: Int, endpoint: Int, allowReuse: Bool) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let current = c.pointee.snapshotGeneration == snapshot.generation
        if allowReuse && c.pointee.upFD >= 0 && current && Int(c.pointee.endpoint) == endpoint {
            e.pointee.upstreamReused = true
            return queueRequest(slot)
        }
        detachUpstream(slot)
        c.pointee.service = Int32(service)
        c.pointee.endpoint = Int32(endpoint)
        c.pointee.snapshotGeneration = snapshot.generation
        if allowReuse, let (_, fd) = pool.take(endpoint: endpoint) {
            c.pointee.upFD = fd
            do {
                try epoll.modify(
                    fd, events: Epoll.edgeTriggeredAll,
                    data: EventToken(kind: .upstream, index: slot, generation: c.pointee.generation).raw)
            } catch {
                Syscall.close(fd)
                c.pointee.upFD = -1
                return attachUpstream(slot, service: service, endpoint: endpoint, allowReuse: false)
            }
            e.pointee.upstreamReused = true
            c.pointee.toUp.dstWritable = true
            return queueRequest(slot)
        }
        e.pointee.upstreamReused = false
        return connectUpstream(slot)
    }

    func connectUpstream(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        e.pointee.connectTries += 1
        let address = Self.systemAddress(snapshot.endpoints[Int(c.pointee.endpoint)].address)
        let fd: Int32
        let connected: Bool
        do {
            (fd, connected) = try Socket.connect(to: address)
        } catch {
            return httpConnectFailed(slot, timedOut: false)
        }
        Socket.setNoDelay(fd)
        c.pointee.upFD = fd
        c.pointee.toDown.srcReadable = false
        c.pointee.toDown.srcHangup = false
        c.pointee.toUp.dstWritable = false
        do {
            try epoll.add(
                fd, events: Epoll.edgeTriggeredAll,
                data: EventToken(kind: .upstream, index: slot, generation: c.pointee.generation).raw)
        } catch {
            closeHTTP(slot, abort: true)
            return .closed
        }
        if connected {
            c.pointee.toUp.dstWritable = true
            return queueRequest(slot)
        }
        e.pointee.phase = .connecting
        armHTTPTimer(slot, .connect, at: now + snapshot.timeouts.connectMillis)
        return .wait
    }

    /// Connect refused or timed out: the next endpoint while tries remain, else 502 (504 for
    /// a timeout). Does not pump: event and timer callers pump on `.again`.
    func httpConnectFailed(_ slot: Int32, timedOut: Bool) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if timedOut { counters.connectTimeouts += 1 } else { counters.connectFailures += 1 }
        if c.pointee.upFD >= 0 {
            Syscall.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        let failed = Int(c.pointee.endpoint)
        if c.pointee.snapshotGeneration == snapshot.generation {
            picker.markDown(failed, until: now + snapshot.limits.endpointBackoffMillis)
            if Int(e.pointee.connectTries) < snapshot.limits.connectTries,
                let next = picker.next(after: failed, service: Int(c.pointee.service), now: now)
            {
                counters.retries += 1
                c.pointee.endpoint = Int32(next)
                return connectUpstream(slot)
            }
        }
        return respondError(slot, status: timedOut ? 504 : 502)
    }

    /// The attached upstream is not wanted for the next request: pool it if it is clean,
    /// else close it.
    func detachUpstream(_ slot: Int32) {
        let c = table.pointer(slot)
        let fd = c.pointee.upFD
        guard fd >= 0 else { return }
        c.pointee.upFD = -1
        let clean = exchange(slot).pointee.upstreamReusable && c.pointee.snapshotGeneration == snapshot.generation
        if clean, let (index, generation) = pool.put(fd: fd, endpoint: Int(c.pointee.endpoint), now: now) {
            do {
                // Watch for the server closing it; no OUT, which would fire at once.
                try epoll.modify(
                    fd, events: Epoll.readable | Epoll.readHangup | Epoll.edgeTrigger,
                    data: EventToken(kind: .pooled, index: index, generation: generation).raw)
                return
            } catch {
                _ = pool.remove(index, generation: generation)
            }
        }
        Syscall.close(fd)
    }

    /// The upstream is connected: write the rewritten head and what body bytes are here.
    func queueRequest(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let base = httpBuffers.base(e.pointee.req.buffer)
        let headBuf = UnsafeRawBufferPointer(start: base + Int(e.pointee.headStart), count: Int(e.pointee.headLength))
        // The field table is shared by the loop's connections: parse again (tens of ns).
        guard case .success(let head) = HTTPRequestParser.parse(headBuf, fields: fieldStore, limits: httpLimits) else {
            return respondError(slot, status: 400)
        }
        if e.pointee.upq.buffer < 0 { e.pointee.upq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.upq.buffer), count: Int(Self.httpBufferSize))
        let path = strippedPath(headBuf, head: head, strip: e.pointee.stripPrefix)
        let clientLength = formatPeer(e, into: scratch)
        let written = HTTPHeadWriter.writeRequest(
            head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
            pathOverride: path, clientAddress: UnsafeRawBufferPointer(start: scratch, count: clientLength),
            proto: Self.protoHTTP, port: e.pointee.listenPort, upgrading: e.pointee.upgradeRequested, into: out)
        guard let written else { return respondError(slot, status: 431) }
        e.pointee.upq.start = 0
        e.pointee.upq.end = Int32(written)
        e.pointee.req.start = e.pointee.headStart + e.pointee.headLength
        e.pointee.reqScan.reset()
        e.pointee.respScan.reset()
        e.pointee.responseHeadDone = false
        e.pointee.responseStarted = false
        e.pointee.upstreamReusable = false
        e.pointee.phase = .exchanging
        c.pointee.life.activity(now: now)
        armHTTPTimer(slot, .server, at: now + snapshot.timeouts.serverMillis)
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
            switch fillRequestBody(slot) {
            case .again: progressed = true
            case .closed: return .closed
            case .wait: break
            }
        }
        // Upstream queue out.
        if !e.pointee.upq.isEmpty && c.pointee.toUp.dstWritable {
            switch flush(&e.pointee.upq, to: c.pointee.upFD, writable: &c.pointee.toUp.dstWritable) {
            case .bytes: progressed = true
            case .wouldBlock: break
            case .failed: return upstreamFailed(slot)
            }
        }
        if e.pointee.upq.isEmpty { releaseIfEmpty(&e.pointee.upq) }

        // Response in.
        if !e.pointee.responseHeadDone {
            switch readResponseHead(slot) {
            case .again: progressed = true
            case .closed: return .closed
            case .wait: break
            }
            if e.pointee.phase != .exchanging { return .again }
        } else if !e.pointee.respBody.done && e.pointee.downq.isEmpty {
            switch fillResponseBody(slot) {
            case .again: progressed = true
            case .closed: return .closed
            case .wait: break
            }
        }
        // Client queue out.
        if !e.pointee.downq.isEmpty && c.pointee.toDown.dstWritable {
            switch flush(&e.pointee.downq, to: c.pointee.downFD, writable: &c.pointee.toDown.dstWritable) {
            case .bytes: progressed = true
            case .wouldBlock: break
            case .failed:
                closeHTTP(slot, abort: true)
                return .closed
            }
        }
        if e.pointee.downq.isEmpty { releaseIfEmpty(&e.pointee.downq) }

        if e.pointee.responseHeadDone && e.pointee.respBody.done && e.pointee.downq.isEmpty {
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
        switch readSome(c.pointee.downFD, out, room, &c.pointee.toUp.srcReadable, c.pointee.toUp.srcHangup) {
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
        case .eof, .failed:
            // The client went away mid-body: the request cannot complete.
            closeHTTP(slot, abort: true)
            return .closed
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

    func bodyError(_ slot: Int32) -> HTTPStep {
        let e = exchange(slot)
        counters.httpBadRequests += 1
        if e.pointee.responseStarted {
            closeHTTP(slot, abort: true)
            return .closed
        }
        return respondError(slot, status: 400)
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
            if body.remaining == 0 { body.done = true }
            return n
        case .chunked:
            switch body.chunks.scan(UnsafeRawBufferPointer(start: src, count: Int(count))) {
            case .consumed(let n): return n
            case .end(let n):
                body.done = true
                return n
            case .error: return -1
            }
        case .untilClose:
            return count
        }
    }

    // MARK: - Response

    func readResponseHead(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.resp.buffer < 0 {
            guard c.pointee.toDown.srcReadable else { return .wait }
            e.pointee.resp = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.resp.buffer)
        if !e.pointee.resp.isEmpty {
            let head = UnsafeRawBufferPointer(start: base + Int(e.pointee.resp.start), count: Int(e.pointee.resp.count))
            switch e.pointee.respScan.scan(head, limits: httpLimits) {
            case .complete(let length): return startResponse(slot, headLength: length)
            case .tooLarge: return upstreamGarbage(slot)
            case .needMore: break
            }
        }
        guard c.pointee.toDown.srcReadable else { return .wait }
        if e.pointee.resp.end == Self.httpBufferSize {
            guard e.pointee.resp.start > 0 else { return upstreamGarbage(slot) }
            compact(&e.pointee.resp, base)
        }
        let room = Self.httpBufferSize - e.pointee.resp.end
        switch readSome(
            c.pointee.upFD, base + Int(e.pointee.resp.end), room, &c.pointee.toDown.srcReadable,
            c.pointee.toDown.srcHangup)
        {
        case .bytes(let n):
            e.pointee.resp.end += n
            c.pointee.life.activity(now: now)
            return .again
        case .wouldBlock:
            return .wait
        case .eof, .failed:
            return upstreamFailed(slot)
        }
    }

    func startResponse(_ slot: Int32, headLength: Int32) -> HTTPStep {
        let e = exchange(slot)
        let base = httpBuffers.base(e.pointee.resp.buffer)
        let headBuf = UnsafeRawBufferPointer(start: base + Int(e.pointee.resp.start), count: Int(headLength))
        guard case .success(let head) = HTTPResponseParser.parse(headBuf, fields: fieldStore, limits: httpLimits) else {
            return upstreamGarbage(slot)
        }
        if head.status < 200 {
            // Interim responses go to the client as they are, after what is queued.
            guard e.pointee.downq.isEmpty else { return .wait }
            if head.status == 101 {
                guard e.pointee.upgradeRequested else { return upstreamGarbage(slot) }
                return startUpgrade(slot, head: head, headBuf: headBuf)
            }
            if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
            httpBuffers.base(e.pointee.downq.buffer).copyMemory(from: headBuf.baseAddress!, byteCount: Int(headLength))
            e.pointee.downq.start = 0
            e.pointee.downq.end = headLength
            e.pointee.resp.start += headLength
            e.pointee.respScan.reset()
            e.pointee.responseStarted = true
            return .again
        }
        guard e.pointee.downq.isEmpty else { return .wait }
        e.pointee.respBody = HTTPExchange.Body(head.bodyKind(requestMethod: e.pointee.method))
        let untilClose = e.pointee.respBody.kind == .untilClose
        e.pointee.clientClose = e.pointee.clientClose || untilClose || draining
        e.pointee.upstreamReusable =
            !head.connectionClose && !untilClose && (head.minorVersion == 1 || head.connectionKeepAlive)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
        let extraLength = e.pointee.setCookie ? formatSetCookie(slot, into: scratch) : 0
        let written = HTTPHeadWriter.writeResponse(
            head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
            close: e.pointee.clientClose, http10KeepAlive: e.pointee.http10 && !e.pointee.clientClose, upgrading: false,
            extraFields: extraLength > 0 ? UnsafeRawBufferPointer(start: scratch, count: extraLength) : nil, into: out)
        guard let written else { return upstreamGarbage(slot) }
        e.pointee.resp.start += headLength
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(written)
        e.pointee.responseHeadDone = true
        e.pointee.responseStarted = true
        // Body bytes that came with the head.
        if !e.pointee.resp.isEmpty && !e.pointee.respBody.done {
            let room = Self.httpBufferSize - e.pointee.downq.end
            let src = base + Int(e.pointee.resp.start)
            let take = takeBody(&e.pointee.respBody, src, min(e.pointee.resp.count, room))
            guard take >= 0 else { return upstreamGarbage(slot) }
            (out.baseAddress! + Int(e.pointee.downq.end)).copyMemory(from: src, byteCount: Int(take))
            e.pointee.downq.end += take
            e.pointee.resp.start += take
        }
        if e.pointee.respBody.done && !e.pointee.resp.isEmpty {
            // Bytes after the response that nobody asked for: do not reuse this connection.
            e.pointee.upstreamReusable = false
        }
        return .again
    }

    func fillResponseBody(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        e.pointee.downq.start = 0
        e.pointee.downq.end = 0
        let out = httpBuffers.base(e.pointee.downq.buffer)
        if !e.pointee.resp.isEmpty {
            let src = httpBuffers.base(e.pointee.resp.buffer) + Int(e.pointee.resp.start)
            let take = takeBody(&e.pointee.respBody, src, e.pointee.resp.count)
            guard take >= 0 else { return upstreamGarbage(slot) }
            out.copyMemory(from: src, byteCount: Int(take))
            e.pointee.downq.end = take
            e.pointee.resp.start += take
            if e.pointee.respBody.done && !e.pointee.resp.isEmpty { e.pointee.upstreamReusable = false }
            releaseIfEmpty(&e.pointee.resp)
            return .again
        }
        releaseIfEmpty(&e.pointee.resp)
        guard c.pointee.toDown.srcReadable else { return .wait }
        var room = Self.httpBufferSize
        if case .length = e.pointee.respBody.kind { room = Int32(min(Int64(room), e.pointee.respBody.remaining)) }
        switch readSome(c.pointee.upFD, out, room, &c.pointee.toDown.srcReadable, c.pointee.toDown.srcHangup) {
        case .bytes(let n):
            c.pointee.life.activity(now: now)
            let take = takeBody(&e.pointee.respBody, out, n)
            guard take >= 0 else {
                closeHTTP(slot, abort: true)
                return .closed
            }
            e.pointee.downq.end = take
            if take < n { e.pointee.upstreamReusable = false }
            return .again
        case .wouldBlock:
            return .wait
        case .eof:
            if e.pointee.respBody.kind == .untilClose {
                e.pointee.respBody.done = true
                e.pointee.upstreamReusable = false
                return .again
            }
            // The upstream died mid-response: the client sees a truncated response and a
            // reset, never a hang.
            counters.resets += 1
            closeHTTP(slot, abort: true)
            return .closed
        case .failed:
            counters.resets += 1
            closeHTTP(slot, abort: true)
            return .closed
        }
    }

    /// The upstream closed or reset before the response was complete.
    func upstreamFailed(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.responseStarted {
            counters.resets += 1
            closeHTTP(slot, abort: true)
            return .closed
        }
        // A reused keep-alive connection the server closed as we sent: retry once on a new
        // connection when the request had no body (nothing of it is lost).
        if e.pointee.upstreamReused && !e.pointee.retried && e.pointee.reqBody.kind == .none {
            e.pointee.retried = true
            Syscall.close(c.pointee.upFD)
            c.pointee.upFD = -1
            releaseIfEmpty(&e.pointee.upq)
            e.pointee.upq.start = 0
            e.pointee.upq.end = 0
            e.pointee.resp.start = 0
            e.pointee.resp.end = 0
            releaseIfEmpty(&e.pointee.resp)
            e.pointee.upstreamReused = false
            e.pointee.connectTries = 0
            return connectUpstream(slot)
        }
        counters.resets += 1
        return respondError(slot, status: 502)
    }

    /// The upstream sent something that is not a valid response.
    func upstreamGarbage(_ slot: Int32) -> HTTPStep {
        let e = exchange(slot)
        counters.httpBadResponses += 1
        if e.pointee.responseStarted {
            closeHTTP(slot, abort: true)
            return .closed
        }
        return respondError(slot, status: 502)
    }

    /// The response is complete and written: keep or drop the upstream, then take the next
    /// request or close.
    func finishExchange(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if !e.pointee.reqBody.done || !e.pointee.upq.isEmpty {
            // The server answered before the request was sent whole: neither side can be
            // kept in step.
            e.pointee.clientClose = true
            e.pointee.upstreamReusable = false
        }
        releaseIfEmpty(&e.pointee.upq)
        e.pointee.resp.start = 0
        e.pointee.resp.end = 0
        releaseIfEmpty(&e.pointee.resp)
        releaseIfEmpty(&e.pointee.downq)
        if !e.pointee.upstreamReusable, c.pointee.upFD >= 0 {
            Syscall.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        if e.pointee.clientClose {
            return startClosing(slot)
        }
        e.pointee.phase = .readingHead
        e.pointee.reqScan.reset()
        if e.pointee.req.isEmpty {
            releaseIfEmpty(&e.pointee.req)
            armHTTPTimer(slot, .clientIdle, at: now + snapshot.timeouts.clientMillis)
        } else {
            armHTTPTimer(slot, .requestHead, at: now + snapshot.timeouts.requestHeadMillis)
        }
        return .again
    }

    // MARK: - Upgrade

    func startUpgrade(_ slot: Int32, head: HTTPResponseHead, headBuf: UnsafeRawBufferPointer) -> HTTPStep {
        let e = exchange(slot)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
        guard
            let written = HTTPHeadWriter.writeResponse(
                head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
                close: false, http10KeepAlive: false, upgrading: true, extraFields: nil, into: out)
        else { return upstreamGarbage(slot) }
        e.pointee.resp.start += Int32(headBuf.count)
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(written)
        // Whatever the server sent after the 101 is already the new protocol.
        let extra = min(e.pointee.resp.count, Self.httpBufferSize - e.pointee.downq.end)
        if extra > 0 {
            let src = httpBuffers.base(e.pointee.resp.buffer) + Int(e.pointee.resp.start)
            (out.baseAddress! + Int(e.pointee.downq.end)).copyMemory(from: src, byteCount: Int(extra))
            e.pointee.downq.end += extra
            e.pointee.resp.start += extra
        }
        e.pointee.responseStarted = true
        e.pointee.phase = .upgrading
        counters.httpUpgrades += 1
        return .again
    }

    /// Flushes what is queued both ways, then hands the pair to the byte tunnel.
    func upgradeStep(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        var progressed = false
        if e.pointee.upq.isEmpty && !e.pointee.req.isEmpty {
            // Client bytes sent after the upgrade request.
            if e.pointee.upq.buffer < 0 { e.pointee.upq.buffer = httpBuffers.acquire() }
            let n = e.pointee.req.count
            httpBuffers.base(e.pointee.upq.buffer).copyMemory(
                from: httpBuffers.base(e.pointee.req.buffer) + Int(e.pointee.req.start), byteCount: Int(n))
            e.pointee.upq.start = 0
            e.pointee.upq.end = n
            e.pointee.req.start = e.pointee.req.end
            progressed = true
        }
        if !e.pointee.upq.isEmpty && c.pointee.toUp.dstWritable {
            switch flush(&e.pointee.upq, to: c.pointee.upFD, writable: &c.pointee.toUp.dstWritable) {
            case .bytes: progressed = true
            case .wouldBlock: break
            case .failed:
                closeHTTP(slot, abort: true)
                return .closed
            }
        }
        if !e.pointee.downq.isEmpty && c.pointee.toDown.dstWritable {
            switch flush(&e.pointee.downq, to: c.pointee.downFD, writable: &c.pointee.toDown.dstWritable) {
            case .bytes: progressed = true
            case .wouldBlock: break
            case .failed:
                closeHTTP(slot, abort: true)
                return .closed
            }
        }
        guard e.pointee.upq.isEmpty && e.pointee.downq.isEmpty && e.pointee.req.isEmpty && e.pointee.resp.isEmpty else {
            return progressed ? .again : .wait
        }
        releaseHTTPBuffers(e)
        c.pointee.isHTTP = false
        c.pointee.life = ConnectionLifecycle()
        _ = c.pointee.life.start(now: now, connectMillis: snapshot.timeouts.connectMillis)
        let arm = c.pointee.life.connected(now: now, tunnelMillis: snapshot.timeouts.tunnelMillis)
        if case .arm(let deadline) = arm { timers.schedule(slot, at: deadline) }
        startTunnel(slot)
        return .closed
    }

    // MARK: - Errors and closing

    /// Answers `status` and closes once it is written. The request never reaches (or no
    /// longer reaches) an endpoint.
    func respondError(_ slot: Int32, status: UInt16) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.responseStarted {
            closeHTTP(slot, abort: true)
            return .closed
        }
        counters.httpErrors += 1
        if c.pointee.upFD >= 0 {
            Syscall.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        releaseIfEmpty(&e.pointee.upq)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(HTTPHeadWriter.writeError(status: status, into: out))
        e.pointee.responseStarted = true
        e.pointee.clientClose = true
        e.pointee.phase = .closing
        e.pointee.lingering = false
        armHTTPTimer(slot, .closing, at: now + snapshot.timeouts.clientMillis)
        return .again
    }

    /// The default backend's answer for a request no route matched. The connection stays
    /// open when the request had no body to skip.
    func respondDefault(_ slot: Int32, _ backend: DefaultBackend, hasBody: Bool) -> HTTPStep {
        let e = exchange(slot)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let keep = !hasBody && !e.pointee.clientClose
        let out = httpBuffers.base(e.pointee.downq.buffer)
        let n = writeSimpleResponse(
            status: backend.status, body: backend.body, close: !keep, http10KeepAlive: e.pointee.http10 && keep,
            into: out)
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(n)
        e.pointee.responseStarted = true
        e.pointee.responseHeadDone = true
        e.pointee.respBody = HTTPExchange.Body()
        e.pointee.req.start = e.pointee.headStart + e.pointee.headLength
        if keep {
            e.pointee.reqBody = HTTPExchange.Body()
            e.pointee.upstreamReusable = e.pointee.upstreamReusable && table.pointer(slot).pointee.upFD >= 0
            e.pointee.phase = .exchanging
            return .again
        }
        e.pointee.clientClose = true
        e.pointee.phase = .closing
        e.pointee.lingering = false
        armHTTPTimer(slot, .closing, at: now + snapshot.timeouts.clientMillis)
        return .again
    }

    func startClosing(_ slot: Int32) -> HTTPStep {
        let e = exchange(slot)
        e.pointee.phase = .closing
        e.pointee.lingering = false
        armHTTPTimer(slot, .closing, at: now + min(snapshot.timeouts.clientMillis, 5_000))
        return .again
    }

    /// Writes what is queued for the client, then closes gracefully: SHUT_WR, and reads
    /// (and drops) what the client still sends until it closes, so that the kernel does not
    /// answer unread bytes with a reset that would destroy the response in flight.
    func closingStep(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if !e.pointee.downq.isEmpty {
            guard c.pointee.toDown.dstWritable else { return .wait }
            switch flush(&e.pointee.downq, to: c.pointee.downFD, writable: &c.pointee.toDown.dstWritable) {
            case .bytes: return .again
            case .wouldBlock: return .wait
            case .failed:
                closeHTTP(slot, abort: true)
                return .closed
            }
        }
        if !e.pointee.lingering {
            e.pointee.lingering = true
            releaseHTTPBuffers(e)
            do { try Socket.shutdownWrite(c.pointee.downFD) } catch {}
        }
        while c.pointee.toUp.srcReadable {
            switch readSome(
                c.pointee.downFD, scratch, Int32(Self.scratchSize), &c.pointee.toUp.srcReadable,
                c.pointee.toUp.srcHangup)
            {
            case .bytes: continue
            case .wouldBlock: return .wait
            case .eof, .failed:
                closeHTTP(slot, abort: false)
                return .closed
            }
        }
        return .wait
    }

    /// Closes the client connection and its upstream, releasing every buffer.
    func closeHTTP(_ slot: Int32, abort: Bool) {
        close(slot, abort: abort)
    }

    func releaseHTTPBuffers(_ e: UnsafeMutablePointer<HTTPExchange>) {
        release(&e.pointee.req)
        release(&e.pointee.resp)
        release(&e.pointee.upq)
        release(&e.pointee.downq)
    }

    @inline(__always)
    func release(_ queue: inout HTTPExchange.Queue) {
        if queue.buffer >= 0 { httpBuffers.release(queue.buffer) }
        queue = HTTPExchange.Queue()
    }

    // MARK: - Byte helpers

    enum ReadResult {
        case bytes(Int32)
        case eof
        case wouldBlock
        case failed
    }

    /// Reads once. A short read clears `readable` (edge-triggered: the socket is drained)
    /// unless a hangup was reported, in which case the EOF behind the data must still be read.
    @inline(__always)
    func readSome(_ fd: Int32, _ dst: UnsafeMutableRawPointer, _ count: Int32, _ readable: inout Bool, _ hangup: Bool)
        -> ReadResult
    {
        do {
            switch try IO.read(fd, into: dst, count: Int(count)) {
            case .wouldBlock:
                readable = false
                return .wouldBlock
            case .done(0):
                readable = false
                return .eof
            case .done(let n):
                if n < Int(count) && !hangup { readable = false }
                return .bytes(Int32(n))
            }
        } catch {
            return .failed
        }
    }

    enum WriteResult {
        case bytes(Int32)
        case wouldBlock
        case failed
    }

    /// Writes the queue's bytes once; advances it.
    @inline(__always)
    func flush(_ queue: inout HTTPExchange.Queue, to fd: Int32, writable: inout Bool) -> WriteResult {
        let src = httpBuffers.base(queue.buffer) + Int(queue.start)
        do {
            switch try IO.write(fd, from: src, count: Int(queue.count)) {
            case .wouldBlock:
                writable = false
                return .wouldBlock
            case .done(let n):
                queue.start += Int32(n)
                if queue.isEmpty {
                    queue.start = 0
                    queue.end = 0
                }
                return .bytes(Int32(n))
            }
        } catch {
            return .failed
        }
    }

    @inline(__always)
    func releaseIfEmpty(_ queue: inout HTTPExchange.Queue) {
        if queue.buffer >= 0 && queue.isEmpty {
            httpBuffers.release(queue.buffer)
            queue = HTTPExchange.Queue()
        }
    }

    /// Moves a queue's bytes to the start of its buffer.
    func compact(_ queue: inout HTTPExchange.Queue, _ base: UnsafeMutableRawPointer) {
        let count = queue.count
        if count > 0 && queue.start > 0 { base.copyMemory(from: base + Int(queue.start), byteCount: Int(count)) }
        queue.start = 0
        queue.end = count
    }

    /// Like `compact` for `req` while a body flows: the head is dropped too.
    func compactKeepingHead(_ e: UnsafeMutablePointer<HTTPExchange>, _ base: UnsafeMutableRawPointer) {
        compact(&e.pointee.req, base)
        e.pointee.headStart = 0
        e.pointee.headLength = 0
    }

    @inline(__always)
    func slice(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int32>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: buffer[Int(range.lowerBound)..<Int(range.upperBound)])
    }

    /// The path to send upstream when a route strips a prefix: what follows the prefix,
    /// always starting with "/". Nil when nothing is stripped.
    func strippedPath(_ headBuf: UnsafeRawBufferPointer, head: HTTPRequestHead, strip: Int32) -> UnsafeRawBufferPointer?
    {
        guard strip > 0 else { return nil }
        let path = slice(headBuf, head.path)
        let rest = UnsafeRawBufferPointer(rebasing: path[min(Int(strip), path.count)...])
        let target = scratch + Self.scratchSize / 2
        var n = 0
        if rest.first != UInt8(ascii: "/") {
            target.storeBytes(of: UInt8(ascii: "/"), as: UInt8.self)
            n = 1
        }
        let copy = min(rest.count, Self.scratchSize / 2 - n)
        if copy > 0 { (target + n).copyMemory(from: rest.baseAddress!, byteCount: copy) }
        return UnsafeRawBufferPointer(start: target, count: n + copy)
    }

    nonisolated(unsafe) static let protoHTTP = UnsafeRawBufferPointer(
        start: UnsafeRawPointer(Loop.protoHTTPStorage), count: 4)
    nonisolated(unsafe) static let protoHTTPStorage: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 4)
        for (i, b) in "http".utf8.enumerated() { p[i] = b }
        return p
    }()

    /// The client's address as text (IPv4 dotted, IPv6 full groups) into `out`; its length.
    func formatPeer(_ e: UnsafeMutablePointer<HTTPExchange>, into out: UnsafeMutableRawPointer) -> Int {
        var n = 0
        func put(_ byte: UInt8) {
            out.storeBytes(of: byte, toByteOffset: n, as: UInt8.self)
            n += 1
        }
        func decimal(_ value: UInt64) {
            if value >= 100 { put(UInt8(48 + value / 100)) }
            if value >= 10 { put(UInt8(48 + value / 10 % 10)) }
            put(UInt8(48 + value % 10))
        }
        func hex(_ value: UInt64) {
            let digits: StaticString = "0123456789abcdef"
            var started = false
            for shift in stride(from: 12, through: 0, by: -4) {
                let d = Int(value >> UInt64(shift) & 0xF)
                if d != 0 || started || shift == 0 {
                    started = true
                    put(digits.utf8Start[d])
                }
            }
        }
        if e.pointee.peerV6 {
            for k in 0..<8 {
                let half = k < 4 ? e.pointee.peerHi : e.pointee.peerLo
                let group = half >> UInt64(48 - 16 * (k % 4)) & 0xFFFF
                if k > 0 { put(UInt8(ascii: ":")) }
                hex(group)
            }
        } else {
            let a = e.pointee.peerLo
            decimal(a >> 24 & 0xFF)
            put(UInt8(ascii: "."))
            decimal(a >> 16 & 0xFF)
            put(UInt8(ascii: "."))
            decimal(a >> 8 & 0xFF)
            put(UInt8(ascii: "."))
            decimal(a & 0xFF)
        }
        return n
    }

    func peerHash(_ e: UnsafeMutablePointer<HTTPExchange>) -> UInt64 {
        let ip: SocketAddress.IP =
            e.pointee.peerV6
            ? .v6(e.pointee.peerHi, e.pointee.peerLo) : .v4(UInt32(truncatingIfNeeded: e.pointee.peerLo))
        return SocketAddress(ip: ip, port: 0).addressHash
    }
}
