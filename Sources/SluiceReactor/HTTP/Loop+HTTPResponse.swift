import SluiceRouting
import SluiceSystem
import SluiceWire

/// Reading and forwarding responses, ending an exchange, and upgrades.
extension Loop {
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
        switch receive(c, from: .upstream, into: base + Int(e.pointee.resp.end), count: room) {
        case .bytes(let n):
            e.pointee.resp.end += n
            c.pointee.life.activity(now: now)
            return .again
        case .wouldBlock:
            return .wait
        case .eof:
            return upstreamFailed(slot, reason: .upstreamClosed)
        case .failed(let error):
            return upstreamFailed(slot, reason: Self.failure(error, client: false))
        }
    }

    func startResponse(_ slot: Int32, headLength: Int32) -> HTTPStep {
        let c = table.pointer(slot)
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
            e.pointee.resp.start += headLength
            e.pointee.respScan.reset()
            // A 100 Continue starts the body's clock: the client waited for it.
            e.pointee.bodyStart = now
            // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client; it is dropped, the final answer
            // follows.
            if e.pointee.http10 { return .again }
            // Rewritten as a final head is: hop-by-hop fields do not cross the proxy.
            guard let written = writeInterimHead(e, head, headBuf, upgrading: false) else {
                return upstreamGarbage(slot)
            }
            e.pointee.downq.start = 0
            e.pointee.downq.end = Int32(written)
            e.pointee.responseStarted = true
            return .again
        }
        guard e.pointee.downq.isEmpty else { return .wait }
        e.pointee.stats.responseAfter = ConnectionStats.after(e.pointee.stats.startMicros, nowMicros)
        countResponseReceived(c, status: head.status)
        e.pointee.respBody = HTTPExchange.Body(head.bodyKind(requestMethod: e.pointee.method))
        // An HTTP/1.0 client cannot read chunked: strip the framing, end the body by closing.
        e.pointee.dechunk = e.pointee.http10 && e.pointee.respBody.kind == .chunked
        e.pointee.decoder = ChunkedDecoder()
        if e.pointee.dechunk { e.pointee.clientClose = true }
        let untilClose = e.pointee.respBody.kind == .untilClose
        // A client whose listener went away finishes this exchange and closes.
        e.pointee.clientClose = e.pointee.clientClose || untilClose || draining || c.pointee.listener < 0
        e.pointee.upstreamReusable =
            !head.connectionClose && !untilClose && (head.minorVersion == 1 || head.connectionKeepAlive)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
        var extraLength = e.pointee.setCookie ? formatSetCookie(slot, into: scratch) : 0
        if e.pointee.hstsRoute >= 0 { extraLength += formatHSTS(slot, into: scratch + extraLength) }
        let written = HTTPHeadWriter.writeResponse(
            head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
            close: e.pointee.clientClose, http10KeepAlive: e.pointee.http10 && !e.pointee.clientClose, upgrading: false,
            extraFields: extraLength > 0 ? UnsafeRawBufferPointer(start: scratch, count: extraLength) : nil, into: out)
        guard var written else { return upstreamGarbage(slot) }
        if e.pointee.dechunk {
            written = Self.removeField(Self.transferEncodingName, from: out.baseAddress!, length: written)
        }
        e.pointee.resp.start += headLength
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(written)
        e.pointee.responseHeadDone = true
        e.pointee.responseStarted = true
        noteStatusSent(c, e, head.status)
        // Body bytes that came with the head.
        if !e.pointee.resp.isEmpty && !e.pointee.respBody.done {
            let room = Self.httpBufferSize - e.pointee.downq.end
            let src = base + Int(e.pointee.resp.start)
            let take = takeBody(&e.pointee.respBody, src, min(e.pointee.resp.count, room))
            guard take >= 0 else { return upstreamGarbage(slot) }
            (out.baseAddress! + Int(e.pointee.downq.end)).copyMemory(from: src, byteCount: Int(take))
            e.pointee.downq.end += dechunk(e, out.baseAddress! + Int(e.pointee.downq.end), take)
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
            e.pointee.downq.end = dechunk(e, out, take)
            e.pointee.resp.start += take
            if e.pointee.respBody.done && !e.pointee.resp.isEmpty { e.pointee.upstreamReusable = false }
            releaseIfEmpty(&e.pointee.resp)
            return .again
        }
        releaseIfEmpty(&e.pointee.resp)
        guard c.pointee.toDown.srcReadable else { return .wait }
        var room = Self.httpBufferSize
        if case .length = e.pointee.respBody.kind { room = Int32(min(Int64(room), e.pointee.respBody.remaining)) }
        switch receive(c, from: .upstream, into: out, count: room) {
        case .bytes(let n):
            c.pointee.life.activity(now: now)
            let take = takeBody(&e.pointee.respBody, out, n)
            guard take >= 0 else {
                countBackend(c, .responseErrors)
                closeHTTP(slot, abort: true, reason: .badResponse)
                return .closed
            }
            e.pointee.downq.end = dechunk(e, out, take)
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
            countBackend(c, .responseErrors)
            closeHTTP(slot, abort: true, reason: .badResponse)
            return .closed
        case .failed(let error):
            counters.resets += 1
            countBackend(c, .responseErrors)
            closeHTTP(slot, abort: true, reason: Self.failure(error, client: false))
            return .closed
        }
    }

    /// The upstream closed or reset (`reason`) before the response was complete.
    func upstreamFailed(_ slot: Int32, reason: CloseReason) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if e.pointee.responseStarted {
            counters.resets += 1
            countBackend(c, .responseErrors)
            // A response cut short by a clean end is a bad response; a reset stays one.
            closeHTTP(slot, abort: true, reason: reason == .upstreamClosed ? .badResponse : reason)
            return .closed
        }
        // A reused keep-alive connection the server closed as we sent: retry once on a new
        // connection when nothing of the request reached the socket, or when it is idempotent
        // (RFC 9110 §9.2.2) and had no body (nothing of it is lost). A POST that went out is
        // never sent twice.
        if e.pointee.upstreamReused && !e.pointee.retried
            && (!e.pointee.requestSent || (Self.isIdempotent(e.pointee.method) && e.pointee.reqBody.kind == .none))
        {
            e.pointee.retried = true
            countBackend(c, .retries)
            driver.close(c.pointee.upFD)
            c.pointee.upFD = -1
            releaseIfEmpty(&e.pointee.upq)
            e.pointee.upq.start = 0
            e.pointee.upq.end = 0
            e.pointee.resp.start = 0
            e.pointee.resp.end = 0
            releaseIfEmpty(&e.pointee.resp)
            e.pointee.upstreamReused = false
            return connectUpstream(slot)
        }
        counters.resets += 1
        countBackend(c, .responseErrors)
        return respondError(slot, status: 502, reason: reason)
    }

    /// GET, HEAD, PUT, DELETE, OPTIONS and TRACE (RFC 9110 §9.2.2).
    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .get, .head, .put, .delete, .options, .trace: return true
        case .post, .patch, .connect, .other: return false
        }
    }

    /// The upstream sent something that is not a valid response.
    func upstreamGarbage(_ slot: Int32) -> HTTPStep {
        let e = exchange(slot)
        counters.httpBadResponses += 1
        countBackend(table.pointer(slot), .responseErrors)
        if e.pointee.responseStarted {
            closeHTTP(slot, abort: true, reason: .badResponse)
            return .closed
        }
        return respondError(slot, status: 502, reason: .badResponse)
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
        if e.pointee.clientClose { c.pointee.stats.note(.done) }
        endExchange(slot, closing: e.pointee.clientClose)
        countClosed(c)
        releaseIfEmpty(&e.pointee.upq)
        e.pointee.resp.start = 0
        e.pointee.resp.end = 0
        releaseIfEmpty(&e.pointee.resp)
        releaseIfEmpty(&e.pointee.downq)
        if !e.pointee.upstreamReusable, c.pointee.upFD >= 0 {
            driver.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        if e.pointee.clientClose {
            // The client leaves; a clean upstream goes to the pool for other clients.
            detachUpstream(slot)
            return startClosing(slot)
        }
        // An idle client holds no upstream: it is parked in the pool, for this client's next
        // request or any other's.
        parkUpstream(slot)
        e.pointee.phase = .readingHead
        e.pointee.reqScan.reset()
        // Nothing of the next answer is out (a local answer leaves these set): an error for
        // the next request is answered, not reset.
        e.pointee.responseStarted = false
        e.pointee.responseHeadDone = false
        // Between requests nothing is in flight: take the newest table now, so an idle client
        // keeps no old snapshot alive.
        if !rebindToListener(slot) {
            c.pointee.stats.note(.listenerRemoved)
            detachUpstream(slot)
            return startClosing(slot)
        }
        if e.pointee.req.isEmpty {
            releaseIfEmpty(&e.pointee.req)
            armIdle(slot)
        } else {
            armHTTPTimer(slot, .requestHead, at: now + snapshot.timeouts.requestHeadMillis)
            beginRequest(slot)
        }
        return .again
    }

    /// Writes a 1xx head (`upgrading`: the 101 of an upgrade) into the client queue, rewritten
    /// as final heads are; its length, or nil when it does not fit.
    func writeInterimHead(
        _ e: UnsafeMutablePointer<HTTPExchange>, _ head: HTTPResponseHead, _ headBuf: UnsafeRawBufferPointer,
        upgrading: Bool
    ) -> Int? {
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
        return HTTPHeadWriter.writeResponse(
            head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
            close: false, http10KeepAlive: false, upgrading: upgrading, extraFields: nil, into: out)
    }

    // MARK: - Upgrade

    func startUpgrade(_ slot: Int32, head: HTTPResponseHead, headBuf: UnsafeRawBufferPointer) -> HTTPStep {
        let e = exchange(slot)
        guard let written = writeInterimHead(e, head, headBuf, upgrading: true) else { return upstreamGarbage(slot) }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
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
        let c = table.pointer(slot)
        e.pointee.stats.responseAfter = ConnectionStats.after(e.pointee.stats.startMicros, nowMicros)
        countResponseReceived(c, status: 101)
        noteStatusSent(c, e, 101)
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
            switch send(c, &e.pointee.upq, to: .upstream) {
            case .bytes:
                progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: false))
                return .closed
            }
        }
        if !e.pointee.downq.isEmpty && c.pointee.toDown.dstWritable {
            switch send(c, &e.pointee.downq, to: .downstream) {
            case .bytes: progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        guard e.pointee.upq.isEmpty && e.pointee.downq.isEmpty && e.pointee.req.isEmpty && e.pointee.resp.isEmpty else {
            return progressed ? .again : .wait
        }
        // The request's exchange ends with the upgrade handed over; the tunnel is not logged.
        endExchange(slot, closing: false)
        if c.pointee.tls != nil {
            // The byte tunnel cannot carry a TLS session: relay through the queues instead.
            e.pointee.phase = .relaying
            e.pointee.relayClientDone = false
            e.pointee.relayUpstreamDone = false
            e.pointee.relayClientNotified = false
            c.pointee.life.activity(now: now)
            armHTTPTimer(slot, .tunnel, at: now + snapshot.timeouts.tunnelMillis)
            return .again
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

    /// Body bytes just placed at `bytes` as they go to the client: unchanged, or without
    /// chunk framing for an HTTP/1.0 client. Returns how many bytes to send.
    @inline(__always)
    func dechunk(_ e: UnsafeMutablePointer<HTTPExchange>, _ bytes: UnsafeMutableRawPointer, _ count: Int32) -> Int32 {
        guard e.pointee.dechunk else { return count }
        return Int32(e.pointee.decoder.decode(bytes, count: Int(count)))
    }

    static let transferEncodingName = Array("transfer-encoding".utf8)

    /// Removes every line of the field `lowercaseName` from a head of `length` bytes at
    /// `head`; returns the new length.
    static func removeField(_ lowercaseName: [UInt8], from head: UnsafeMutableRawPointer, length: Int) -> Int {
        var length = length
        var lineStart = 0
        while lineStart < length {
            var lineEnd = lineStart
            while lineEnd < length && head.load(fromByteOffset: lineEnd, as: UInt8.self) != 0x0A { lineEnd += 1 }
            lineEnd = min(lineEnd + 1, length)
            let line = UnsafeRawBufferPointer(start: head + lineStart, count: lineEnd - lineStart)
            if line.count > lowercaseName.count, line[lowercaseName.count] == UInt8(ascii: ":"),
                equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: line[0..<lowercaseName.count]), lowercaseName)
            {
                (head + lineStart).copyMemory(from: head + lineEnd, byteCount: length - lineEnd)
                length -= lineEnd - lineStart
                continue
            }
            lineStart = lineEnd
        }
        return length
    }
}
