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
            switch report(slot, .interim(status: head.status)) {
            case .startUpgrade:
                return startUpgrade(slot, head: head, headBuf: headBuf)
            case .rejectResponse:
                return upstreamGarbage(slot)
            case .dropInterim:
                e.pointee.resp.start += headLength
                e.pointee.respScan.reset()
                return .again
            case .forwardInterim:
                e.pointee.resp.start += headLength
                e.pointee.respScan.reset()
                // Rewritten as a final head is: hop-by-hop fields do not cross the proxy.
                guard let written = writeInterimHead(e, head, headBuf, upgrading: false) else {
                    return upstreamGarbage(slot)
                }
                e.pointee.downq.start = 0
                e.pointee.downq.end = Int32(written)
                apply(slot, .interimQueued)
                return .again
            default:
                unexpected(.interim(status: head.status))
            }
        }
        guard e.pointee.downq.isEmpty else { return .wait }
        e.pointee.stats.responseAfter = ConnectionStats.after(e.pointee.stats.startMicros, nowMicros)
        countResponseReceived(c, status: head.status)
        // The framing the head declares; the machine decides what the request allows.
        let declared = head.bodyKind(requestMethod: .get)
        let response = HTTPExchangeMachine.ResponseHead(
            status: head.status, connectionClose: head.connectionClose, keepAlive: head.connectionKeepAlive,
            http11: head.minorVersion == 1, framing: Self.framing(declared),
            // A client whose listener went away finishes this exchange and closes.
            closeClient: lastRequests || c.pointee.listener < 0)
        guard
            case .forwardResponse(let framing, let closeClient, let stripChunks) = report(slot, .responseHead(response))
        else { unexpected(.responseHead(response)) }
        e.pointee.respBody = HTTPExchange.Body(Self.bodyKind(framing, declared: declared))
        e.pointee.dechunk = stripChunks
        e.pointee.decoder = ChunkedDecoder()
        if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
        let out = UnsafeMutableRawBufferPointer(
            start: httpBuffers.base(e.pointee.downq.buffer), count: Int(Self.httpBufferSize))
        var extraLength = e.pointee.setCookie ? formatSetCookie(slot, into: scratch) : 0
        if e.pointee.hstsRoute >= 0 { extraLength += formatHSTS(slot, into: scratch + extraLength) }
        let written = HTTPHeadWriter.writeResponse(
            head, from: headBuf, fields: UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)]),
            close: closeClient, http10KeepAlive: e.pointee.machine.http10 && !closeClient, upgrading: false,
            extraFields: extraLength > 0 ? UnsafeRawBufferPointer(start: scratch, count: extraLength) : nil, into: out)
        guard var written else { return upstreamGarbage(slot) }
        if e.pointee.dechunk {
            written = Self.removeField(Self.transferEncodingName, from: out.baseAddress!, length: written)
        }
        e.pointee.resp.start += headLength
        e.pointee.downq.start = 0
        e.pointee.downq.end = Int32(written)
        apply(slot, .responseQueued)
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
            apply(slot, .strayBytes)
        }
        return .again
    }

    static func framing(_ kind: BodyKind) -> HTTPExchangeMachine.Framing {
        switch kind {
        case .none: .none
        case .length: .length
        case .chunked: .chunked
        case .untilClose: .untilClose
        }
    }

    /// The body kind for the machine's `framing` of a head that declared `declared`.
    static func bodyKind(_ framing: HTTPExchangeMachine.Framing, declared: BodyKind) -> BodyKind {
        switch framing {
        case .none: .none
        case .length: declared
        case .chunked: .chunked
        case .untilClose: .untilClose
        }
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
            if e.pointee.respBody.done && !e.pointee.resp.isEmpty { apply(slot, .strayBytes) }
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
            if take < n { apply(slot, .strayBytes) }
            return .again
        case .wouldBlock:
            return .wait
        case .eof:
            // The end of a close-delimited body; else the upstream died mid-response: the
            // client sees a truncated response and a reset, never a hang.
            return upstreamFailed(slot, reason: .upstreamClosed)
        case .failed(let error):
            return upstreamFailed(slot, reason: Self.failure(error, client: false))
        }
    }

    /// The upstream closed or reset (`reason`) before the response was complete (or ended a
    /// close-delimited one).
    func upstreamFailed(_ slot: Int32, reason: CloseReason) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let event = HTTPExchangeMachine.Event.upstreamEnded(reset: reason != .upstreamClosed)
        switch report(slot, event) {
        case .endResponse:
            e.pointee.respBody.done = true
            return .again
        case .abort:
            counters.resets += 1
            countBackend(c, .responseErrors)
            // A response cut short by a clean end is a bad response; a reset stays one.
            closeHTTP(slot, abort: true, reason: reason == .upstreamClosed ? .badResponse : reason)
            return .closed
        case .retry:
            countBackend(c, .retries)
            if c.pointee.h2Upstream { detachStream(slot, abort: true, keepMode: true) }
            if c.pointee.upFD >= 0 {
                driver.close(c.pointee.upFD)
                c.pointee.upFD = -1
            }
            releaseIfEmpty(&e.pointee.upq)
            e.pointee.upq.start = 0
            e.pointee.upq.end = 0
            e.pointee.resp.start = 0
            e.pointee.resp.end = 0
            releaseIfEmpty(&e.pointee.resp)
            return connectUpstream(slot)
        case .refuse(let status):
            counters.resets += 1
            countBackend(c, .responseErrors)
            return respondError(slot, status: status, reason: reason)
        default:
            unexpected(event)
        }
    }

    /// The upstream sent something that is not a valid response.
    /// 502, or a reset once a response started.
    func upstreamGarbage(_ slot: Int32) -> HTTPStep {
        counters.httpBadResponses += 1
        countBackend(table.pointer(slot), .responseErrors)
        return respondError(slot, status: 502, reason: .badResponse)
    }

    /// The response is complete and written: keep or drop the upstream, then take the next
    /// request or close.
    func finishExchange(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let event = HTTPExchangeMachine.Event.responseComplete(
            requestUnfinished: !e.pointee.reqBody.done || !e.pointee.upq.isEmpty)
        let keepUpstream: Bool
        let closing: HTTPExchangeMachine.Timer?
        switch report(slot, event) {
        case .nextRequest(let keep):
            keepUpstream = keep
            closing = nil
        case .closeAfterResponse(let keep, let timer):
            keepUpstream = keep
            closing = timer
        default:
            unexpected(event)
        }
        if closing != nil { c.pointee.stats.note(.done) }
        endExchange(slot, closing: closing != nil)
        countClosed(c)
        releaseIfEmpty(&e.pointee.upq)
        e.pointee.resp.start = 0
        e.pointee.resp.end = 0
        releaseIfEmpty(&e.pointee.resp)
        releaseIfEmpty(&e.pointee.downq)
        if c.pointee.h2Upstream { detachStream(slot, abort: false) }
        if !keepUpstream, c.pointee.upFD >= 0 {
            driver.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        if let closing {
            // The client leaves; a clean upstream goes to the pool for other clients.
            detachUpstream(slot)
            arm(slot, closing)
            return .again
        }
        // An idle client holds no upstream: it is parked in the pool, for this client's next
        // request or any other's.
        parkUpstream(slot)
        e.pointee.reqScan.reset()
        // Between requests nothing is in flight: take the newest table now, so an idle client
        // keeps no old snapshot alive.
        if !rebindToListener(slot) {
            c.pointee.stats.note(.listenerRemoved)
            detachUpstream(slot)
            guard case .startClosing(let timer) = report(slot, .listenerGone) else { unexpected(.listenerGone) }
            arm(slot, timer)
            return .again
        }
        if e.pointee.req.isEmpty {
            releaseIfEmpty(&e.pointee.req)
            armIdle(slot)
        } else {
            apply(slot, .headStarted)
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
        apply(slot, .upgradeQueued)
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
        // The byte tunnel cannot carry a TLS session: relay through the queues instead.
        let event = HTTPExchangeMachine.Event.upgradeFlushed(tls: c.pointee.tls != nil)
        switch report(slot, event) {
        case .relay(let timer):
            c.pointee.life.activity(now: now)
            arm(slot, timer)
            return .again
        case .tunnel:
            break
        default:
            unexpected(event)
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
        guard e.pointee.h2.stream != 0 else { return Int32(e.pointee.decoder.decode(bytes, count: Int(count))) }
        // An HTTP/2 client gets the trailer section as trailers (`Loop+HTTP2Stream`).
        var trailers = 0
        let n = e.pointee.decoder.decode(bytes, count: Int(count), trailers: &trailers)
        if trailers > 0 { keepTrailers(e, bytes + n, trailers) }
        return Int32(n)
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
