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
        let event = HTTPExchangeMachine.Event.refused(status: status)
        let closing: HTTPExchangeMachine.Timer
        switch report(slot, event) {
        case .abort:
            // A response already started: it cannot be answered any more.
            closeHTTP(slot, abort: true, reason: reason)
            return .closed
        case .respond(_, let timer):
            closing = timer
        default:
            unexpected(event)
        }
        c.pointee.stats.note(reason)
        noteStatusSent(c, e, status)
        counters.httpErrors += 1
        if c.pointee.h2Upstream { detachStream(slot, abort: true) }
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
        arm(slot, closing)
        return .again
    }

    /// The default backend's answer for a request no route matched. The connection stays
    /// open when the request had no body to skip.
    func respondDefault(_ slot: Int32, _ backend: DefaultBackend) -> HTTPStep {
        let e = exchange(slot)
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        guard case .writeAnswer(let keep) = report(slot, .localAnswer) else { unexpected(.localAnswer) }
        let out = httpBuffers.base(e.pointee.downq.buffer)
        noteStatusSent(table.pointer(slot), e, backend.status)
        let n = writeSimpleResponse(
            status: backend.status, body: backend.body, close: !keep, http10KeepAlive: e.pointee.machine.http10 && keep,
            into: out)
        return sendLocalAnswer(slot, length: n)
    }

    /// A 308 to the https:// form of the request (`redirectHTTPS` routes): the Host without
    /// its port, `:port` unless 443, then the target as sent. Kept alive like a default answer.
    func respondRedirect(
        _ slot: Int32, port: UInt16, host: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer
    ) -> HTTPStep {
        let e = exchange(slot)
        guard !host.isEmpty, target.first == UInt8(ascii: "/") || target.isEmpty else {
            return respondError(slot, status: 400, reason: .badRequest)
        }
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        guard case .writeAnswer(let keep) = report(slot, .localAnswer) else { unexpected(.localAnswer) }
        let n = writeRedirect(
            port: port, host: host, target: target, close: !keep, http10KeepAlive: e.pointee.machine.http10 && keep,
            into: httpBuffers.base(e.pointee.downq.buffer), capacity: Int(Self.httpBufferSize))
        guard n > 0 else { return respondError(slot, status: 414, reason: .badRequest) }
        noteStatusSent(table.pointer(slot), e, 308)
        return sendLocalAnswer(slot, length: n)
    }

    /// An answer of `length` bytes written into `downq` by the proxy itself (default backend,
    /// redirect) goes out; the connection then takes the next request, or closes, as the
    /// machine decided when the answer was written (`writeAnswer(keep:)`).
    func sendLocalAnswer(_ slot: Int32, length: Int) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(length)
        e.pointee.respBody = HTTPExchange.Body()
        e.pointee.req.start = e.pointee.headStart + e.pointee.headLength
        let event = HTTPExchangeMachine.Event.answerQueued(upstreamAttached: c.pointee.upFD >= 0)
        switch report(slot, event) {
        case .proceed:
            e.pointee.reqBody = HTTPExchange.Body()
        case .startClosing(let timer):
            c.pointee.stats.note(.done)
            arm(slot, timer)
        default:
            unexpected(event)
        }
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
        switch report(slot, .answerWritten) {
        case .linger:
            // The answer is written: the exchange it ended is over.
            endExchange(slot, closing: true)
            releaseHTTPBuffers(e)
            shutdownWrite(c, .downstream)
        case .proceed:
            break
        default:
            unexpected(.answerWritten)
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
                return clientEnded(slot, reset: false, idle: false, reason: .clientClosed)
            case .failed(let error):
                return clientEnded(slot, reset: true, idle: false, reason: Self.failure(error, client: true))
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
