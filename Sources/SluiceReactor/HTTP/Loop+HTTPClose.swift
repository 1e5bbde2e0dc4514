import SluiceRouting
import SluiceSystem
import SluiceWire

/// Error answers and the graceful close of HTTP connections.
extension Loop {
    // MARK: - Errors and closing

    /// Answers `status` and closes once it is written. The request never reaches (or no
    /// longer reaches) an endpoint. `reason` is why the connection will close.
    func respondError(_ slot: Int32, status: UInt16, reason: CloseReason) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        switch status {
        case 400, 413, 414, 431, 501, 505: countFrontend(c, .requestErrors)
        default: break
        }
        if e.pointee.responseStarted {
            closeHTTP(slot, abort: true, reason: reason)
            return .closed
        }
        c.pointee.stats.note(reason)
        noteStatusSent(c, e, status)
        counters.httpErrors += 1
        if c.pointee.upFD >= 0 {
            driver.close(c.pointee.upFD)
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
        noteStatusSent(table.pointer(slot), e, backend.status)
        let n = writeSimpleResponse(
            status: backend.status, body: backend.body, close: !keep, http10KeepAlive: e.pointee.http10 && keep,
            into: out)
        return sendLocalAnswer(slot, length: n, keep: keep)
    }

    /// A 308 to the https:// form of the request (`redirectHTTPS` routes): the Host without
    /// its port, `:port` unless 443, then the target as sent. Kept alive like a default answer.
    func respondRedirect(
        _ slot: Int32, port: UInt16, host: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, hasBody: Bool
    ) -> HTTPStep {
        let e = exchange(slot)
        guard !host.isEmpty, target.first == UInt8(ascii: "/") || target.isEmpty else {
            return respondError(slot, status: 400, reason: .badRequest)
        }
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let keep = !hasBody && !e.pointee.clientClose
        let n = writeRedirect(
            port: port, host: host, target: target, close: !keep, http10KeepAlive: e.pointee.http10 && keep,
            into: httpBuffers.base(e.pointee.downq.buffer), capacity: Int(Self.httpBufferSize))
        guard n > 0 else { return respondError(slot, status: 414, reason: .badRequest) }
        noteStatusSent(table.pointer(slot), e, 308)
        return sendLocalAnswer(slot, length: n, keep: keep)
    }

    /// An answer of `length` bytes written into `downq` by the proxy itself (default backend,
    /// redirect) goes out; the connection then takes the next request when `keep`, or closes.
    func sendLocalAnswer(_ slot: Int32, length: Int, keep: Bool) -> HTTPStep {
        let e = exchange(slot)
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(length)
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
        table.pointer(slot).pointee.stats.note(.done)
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
        if !e.pointee.downq.isEmpty || outputPending(c) {
            guard c.pointee.toDown.dstWritable else { return .wait }
            switch send(c, &e.pointee.downq, to: .downstream) {
            case .bytes: return .again
            case .wouldBlock: return .wait
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        if !e.pointee.lingering {
            // The answer is written: the exchange it ended is over.
            endExchange(slot, closing: true)
            e.pointee.lingering = true
            releaseHTTPBuffers(e)
            shutdownWrite(c, .downstream)
        }
        // Bounded per wake: a client that keeps sending is resumed after the batch.
        var reads = 0
        while c.pointee.toUp.srcReadable {
            if reads == Self.stepBudget {
                resumeLater(slot)
                return .wait
            }
            reads += 1
            switch receive(c, from: .downstream, into: scratch, count: Int32(Self.scratchSize)) {
            case .bytes: continue
            case .wouldBlock: return .wait
            case .eof:
                closeHTTP(slot, abort: false, reason: .clientClosed)
                return .closed
            case .failed(let error):
                closeHTTP(slot, abort: false, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        return .wait
    }

    /// Closes the client connection and its upstream, releasing every buffer. `reason` as
    /// for `close`.
    func closeHTTP(_ slot: Int32, abort: Bool, reason: CloseReason = .none) {
        close(slot, abort: abort, reason: reason)
    }

    func releaseHTTPBuffers(_ e: UnsafeMutablePointer<HTTPExchange>) {
        release(&e.pointee.req)
        release(&e.pointee.resp)
        release(&e.pointee.upq)
        release(&e.pointee.downq)
    }

    @inline(__always)
    func release(_ queue: inout HTTPExchange.Queue) {
        if queue.buffer >= 0 {
            if queue.small { peekBuffers.release(queue.buffer) } else { httpBuffers.release(queue.buffer) }
        }
        queue = HTTPExchange.Queue()
    }
}
