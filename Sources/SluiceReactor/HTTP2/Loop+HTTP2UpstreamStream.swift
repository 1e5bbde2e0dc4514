import SluiceRouting
import SluiceSystem
import SluiceWire

/// An exchange's upstream as an HTTP/2 stream (`HTTP2UpstreamLink` has the table): attaching
/// to a session, the request head and body the exchange sends becoming HEADERS and DATA, the
/// response frames becoming the HTTP/1.1 response it reads, and the client session's
/// callbacks (inside `HTTP2Session.receive` / `flush` of an upstream session slot).
extension Loop {
    // MARK: - Attach and detach

    /// A connect for an exchange whose service speaks HTTP/2: a stream on a session of the
    /// endpoint (connected: the request goes out now; connecting: the exchange waits for it
    /// as for its own connect), or a new session.
    func connectStream(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        c.pointee.toDown.srcReadable = false
        c.pointee.toDown.srcHangup = false
        c.pointee.toUp.dstWritable = false
        noteConnectStart(c)
        let key = upstreamKey(routed: c)
        let session: Int32
        if let found = findUpstreamSession(key) {
            session = found
        } else {
            switch openUpstreamSession(key, tls: routed(c).services[Int(c.pointee.service)].upstreamTLS) {
            case .opened(let opened): session = opened
            case .refused: return httpConnectFailed(slot, timedOut: false)
            case .noDescriptors, .failed: return respondError(slot, status: 503, reason: .overLimit)
            }
        }
        linkStream(slot, session)
        guard exchange(session).pointee.h2.connected else {
            apply(slot, .connectPending)
            return .wait
        }
        c.pointee.toUp.dstWritable = true
        connectSucceeded(c)
        return upstreamConnected(slot)
    }

    /// Puts the exchange in `session`'s list, with a fresh link.
    func linkStream(_ slot: Int32, _ session: Int32) {
        let e = exchange(slot)
        let se = exchange(session)
        e.pointee.up2 = HTTP2UpstreamLink()
        e.pointee.up2.session = session
        e.pointee.up2.sessionGeneration = table.pointer(session).pointee.generation
        e.pointee.up2.linked = true
        e.pointee.up2.next = se.pointee.h2.firstStream
        if se.pointee.h2.firstStream >= 0 { exchange(se.pointee.h2.firstStream).pointee.up2.prev = slot }
        se.pointee.h2.firstStream = slot
        se.pointee.h2.streams += 1
    }

    /// The session slot of the exchange's stream and its nghttp2 session, while it lives.
    @inline(__always)
    func upstreamSessionOf(_ e: UnsafeMutablePointer<HTTPExchange>) -> (slot: Int32, session: HTTP2Session)? {
        let slot = e.pointee.up2.session
        guard slot >= 0 else { return nil }
        let c = table.pointer(slot)
        guard c.pointee.generation == e.pointee.up2.sessionGeneration, c.pointee.h2 == .upstream,
            let session = h2Session(slot)
        else { return nil }
        return (slot, session)
    }

    /// Takes the exchange out of its session's list; the session notes the time when its
    /// last stream left (the idle limit counts from it) and is serviced at the batch's end.
    func unlinkStream(upstream slot: Int32) {
        let e = exchange(slot)
        guard e.pointee.up2.linked else { return }
        e.pointee.up2.linked = false
        let prev = e.pointee.up2.prev
        let next = e.pointee.up2.next
        e.pointee.up2.prev = -1
        e.pointee.up2.next = -1
        guard let (session, _) = upstreamSessionOf(e) else { return }
        let se = exchange(session)
        if prev >= 0 { exchange(prev).pointee.up2.next = next } else { se.pointee.h2.firstStream = next }
        if next >= 0 { exchange(next).pointee.up2.prev = prev }
        se.pointee.h2.streams -= 1
        if se.pointee.h2.streams == 0 { table.pointer(session).pointee.life.activity(now: now) }
        markDirty(session)
    }

    /// The exchange lets its stream go: reset when still open (NO_ERROR when the response
    /// ended, CANCEL when it was cut short), unread body bytes given back to the connection's
    /// window, buffers released. `keepMode`: the exchange tries again on another stream.
    func detachStream(_ slot: Int32, abort: Bool, keepMode: Bool = false) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let link = e.pointee.up2
        if let (session, nghttp2) = upstreamSessionOf(e), link.stream > 0 {
            let unread = link.inbound.count - link.headLeft
            if unread > 0 { nghttp2.consume(stream: link.stream, count: Int(unread)) }
            if link.linked {
                nghttp2.forget(stream: link.stream, errorCode: !abort && link.ended ? 0x0 : 0x8)
            }
            markDirty(session)
        }
        unlinkStream(upstream: slot)
        if e.pointee.up2.inbound.buffer >= 0 { streamBuffers.release(e.pointee.up2.inbound.buffer) }
        release(&e.pointee.up2.outbound)
        release(&e.pointee.up2.trailers)
        e.pointee.up2 = HTTP2UpstreamLink()
        if !keepMode { c.pointee.h2Upstream = false }
    }

    // MARK: - Wake-ups

    /// Queues the exchange for a pump once nghttp2 returns.
    @inline(__always)
    func wakeUp(_ slot: Int32) {
        let e = exchange(slot)
        guard !e.pointee.up2.woken else { return }
        e.pointee.up2.woken = true
        h2UpWake.append((slot, table.pointer(slot).pointee.generation))
    }

    /// Pumps the exchanges whose streams moved: a connect that completed or failed, response
    /// bytes, a body the data source took, a stream that ended.
    func runUpWoken() {
        while !h2UpWake.isEmpty {
            Swift.swap(&h2UpWake, &h2UpWaking)
            for (slot, generation) in h2UpWaking {
                let c = table.pointer(slot)
                guard c.pointee.generation == generation, c.pointee.isHTTP, c.pointee.h2Upstream else { continue }
                let e = exchange(slot)
                e.pointee.up2.woken = false
                if e.pointee.machine.state == .connecting {
                    if e.pointee.up2.failed {
                        if httpConnectFailed(slot, timedOut: e.pointee.up2.timedOut) == .again { httpPump(slot) }
                        continue
                    }
                    guard let (session, _) = upstreamSessionOf(e), exchange(session).pointee.h2.connected else {
                        continue
                    }
                    c.pointee.toUp.dstWritable = true
                    connectSucceeded(c)
                    if upstreamConnected(slot) == .again { httpPump(slot) }
                    continue
                }
                c.pointee.toDown.srcReadable = true
                if !e.pointee.up2.blocked { c.pointee.toUp.dstWritable = true }
                httpPump(slot)
            }
            h2UpWaking.removeAll(keepingCapacity: true)
        }
    }

    // MARK: - Transport

    /// The exchange's request bytes for the stream: the head becomes HEADERS, the body goes
    /// (without chunk framing) into `outbound` for the data source. "Would block" while
    /// `outbound` is full.
    func sendUpstreamStream(_ c: UnsafeMutablePointer<Connection>, _ queue: inout HTTPExchange.Queue) -> WriteResult {
        let slot = Int32(c - table.slots)
        let e = exchange(slot)
        guard let (session, nghttp2) = upstreamSessionOf(e), !e.pointee.up2.failed else {
            return .failed(.connectionReset)
        }
        var taken: Int32 = 0
        if e.pointee.up2.stream == 0 {
            guard let length = submitRequestHead(slot, nghttp2, queue) else { return .failed(.connectionReset) }
            taken = length
            queue.start += length
            countUpstreamOut(c, length)
            counters.h2UpstreamStreams += 1
            markDirty(session)
        }
        guard !queue.isEmpty else {
            if queue.start > 0 { advance(&queue, by: 0) }
            return .bytes(taken)
        }
        if e.pointee.up2.outbound.buffer < 0 {
            e.pointee.up2.outbound = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.up2.outbound.buffer)
        if e.pointee.up2.outbound.start > 0 { compact(&e.pointee.up2.outbound, base) }
        let n = min(queue.count, Self.httpBufferSize - e.pointee.up2.outbound.end)
        if n > 0 {
            let at = base + Int(e.pointee.up2.outbound.end)
            at.copyMemory(from: self.base(of: queue) + Int(queue.start), byteCount: Int(n))
            var produced = Int(n)
            if e.pointee.up2.requestChunked {
                produced = e.pointee.up2.decoder.decode(at, count: Int(n))
                if e.pointee.up2.decoder.isDone { e.pointee.up2.requestEnded = true }
            }
            e.pointee.up2.outbound.end += Int32(produced)
            queue.start += n
            countUpstreamOut(c, n)
            if !e.pointee.up2.requestChunked && e.pointee.reqBody.done && queue.isEmpty {
                e.pointee.up2.requestEnded = true
            }
            if e.pointee.up2.deferred {
                e.pointee.up2.deferred = false
                nghttp2.resumeData(stream: e.pointee.up2.stream)
            }
            markDirty(session)
        }
        if !queue.isEmpty {
            e.pointee.up2.blocked = true
            c.pointee.toUp.dstWritable = false
        }
        if taken + n == 0 { return .wouldBlock }
        return .bytes(taken + n)
    }

    /// The exchange ended its request (SHUT_WR): END_STREAM after what `outbound` holds.
    func endUpstreamRequest(_ c: UnsafeMutablePointer<Connection>) {
        let e = exchange(Int32(c - table.slots))
        guard !e.pointee.up2.requestEnded, let (session, nghttp2) = upstreamSessionOf(e) else { return }
        e.pointee.up2.requestEnded = true
        if e.pointee.up2.deferred {
            e.pointee.up2.deferred = false
            nghttp2.resumeData(stream: e.pointee.up2.stream)
        }
        markDirty(session)
    }

    /// The stream's response for the exchange: the heads, then the body (chunk-framed when
    /// it is chunked), then the last chunk with the trailers. "Would block" while nothing is
    /// there; the end of the stream once all of it was read; a reset when the stream failed.
    func receiveUpstreamStream(_ c: UnsafeMutablePointer<Connection>, into dst: UnsafeMutableRawPointer, count: Int32)
        -> ReadResult
    {
        let e = exchange(Int32(c - table.slots))
        let link = e.pointee.up2
        if link.headLeft > 0 {
            let n = min(count, link.headLeft)
            dst.copyMemory(from: streamBuffers.base(link.inbound.buffer) + Int(link.inbound.start), byteCount: Int(n))
            e.pointee.up2.headLeft -= n
            e.pointee.up2.inbound.start += n
            countUpstreamIn(c, n)
            return .bytes(n)
        }
        if link.finalHead && !link.inbound.isEmpty {
            let chunked = link.chunked
            let overhead: Int32 = chunked ? 12 : 0
            guard count > overhead else { return .wouldBlock }
            let n = min(count - overhead, link.inbound.count)
            var at = chunked ? Self.writeChunkSize(Int(n), into: dst) : 0
            (dst + at).copyMemory(
                from: streamBuffers.base(link.inbound.buffer) + Int(link.inbound.start), byteCount: Int(n))
            at += Int(n)
            if chunked {
                dst.storeBytes(of: 0x0A0D, toByteOffset: at, as: UInt16.self)
                at += 2
            }
            e.pointee.up2.inbound.start += n
            if e.pointee.up2.inbound.isEmpty {
                e.pointee.up2.inbound.start = 0
                e.pointee.up2.inbound.end = 0
            }
            if let (session, nghttp2) = upstreamSessionOf(e) {
                nghttp2.consume(stream: link.stream, count: Int(n))
                markDirty(session)
            }
            countUpstreamIn(c, n)
            return .bytes(Int32(at))
        }
        if link.ended && link.finalHead {
            if link.chunked && link.endStage < 3 { return writeLastChunk(e, into: dst, count: count) }
            if link.inbound.buffer >= 0 {
                streamBuffers.release(link.inbound.buffer)
                e.pointee.up2.inbound = HTTPExchange.Queue()
            }
            return .eof
        }
        if link.failed || link.ended { return .failed(.connectionReset) }
        c.pointee.toDown.srcReadable = false
        return .wouldBlock
    }

    /// As much of `0\r\n`, the trailer section and the final CRLF as fits in `count`.
    func writeLastChunk(_ e: UnsafeMutablePointer<HTTPExchange>, into dst: UnsafeMutableRawPointer, count: Int32)
        -> ReadResult
    {
        var at = 0
        if e.pointee.up2.endStage == 0 {
            guard count >= 3 else { return .wouldBlock }
            Self.lastChunk.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: 3) }
            at = 3
            e.pointee.up2.endStage = 1
        }
        if e.pointee.up2.endStage == 1 {
            let trailers = e.pointee.up2.trailers
            let n = min(Int(count) - at, Int(trailers.count))
            if n > 0 {
                (dst + at).copyMemory(from: httpBuffers.base(trailers.buffer) + Int(trailers.start), byteCount: n)
                at += n
                e.pointee.up2.trailers.start += Int32(n)
            }
            if e.pointee.up2.trailers.isEmpty {
                release(&e.pointee.up2.trailers)
                e.pointee.up2.endStage = 2
            }
        }
        if e.pointee.up2.endStage == 2 && Int(count) - at >= 2 {
            dst.storeBytes(of: 0x0A0D, toByteOffset: at, as: UInt16.self)
            at += 2
            e.pointee.up2.endStage = 3
        }
        return at > 0 ? .bytes(Int32(at)) : .wouldBlock
    }

    // MARK: - Request head

    nonisolated(unsafe) static let pseudoMethod = staticBytes(":method")
    nonisolated(unsafe) static let pseudoScheme = staticBytes(":scheme")
    nonisolated(unsafe) static let pseudoAuthority = staticBytes(":authority")
    nonisolated(unsafe) static let pseudoPath = staticBytes(":path")
    nonisolated(unsafe) static let schemeHTTP = staticBytes("http")
    nonisolated(unsafe) static let schemeHTTPS = staticBytes("https")

    static func staticBytes(_ text: StaticString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    }

    /// Submits the request head at the front of `queue` (written by the exchange as for an
    /// HTTP/1.1 upstream) as the stream's HEADERS: the pseudo-headers from the request line
    /// and Host, then the fields with lowercase names, without connection-specific ones
    /// (`te` only as `trailers`). The head's length, or nil when it cannot be read or nghttp2
    /// refused it (the session then takes no new stream).
    func submitRequestHead(_ slot: Int32, _ session: HTTP2Session, _ queue: HTTPExchange.Queue) -> Int32? {
        let e = exchange(slot)
        let bytes = UnsafeRawBufferPointer(start: base(of: queue) + Int(queue.start), count: Int(queue.count))
        guard let end = HeadScanner.crlfHeadEnd(bytes) else { return nil }
        let headBytes = UnsafeRawBufferPointer(rebasing: bytes[0...end])
        guard case .success(let head) = HTTPRequestParser.parse(headBytes, fields: fieldStore, limits: httpLimits)
        else { return nil }
        var count = 0
        h2Fields[count] = HTTP2Session.Field(name: Self.pseudoMethod, value: slice(headBytes, head.methodRange))
        count += 1
        // The scheme of the connection to the endpoint (RFC 9113 §8.3.1: the target's).
        let overTLS = e.pointee.up2.session >= 0 && table.pointer(e.pointee.up2.session).pointee.tls != nil
        h2Fields[count] = HTTP2Session.Field(
            name: Self.pseudoScheme, value: overTLS ? Self.schemeHTTPS : Self.schemeHTTP)
        count += 1
        if let host = head.host {
            h2Fields[count] = HTTP2Session.Field(name: Self.pseudoAuthority, value: slice(headBytes, host))
            count += 1
        }
        h2Fields[count] = HTTP2Session.Field(name: Self.pseudoPath, value: slice(headBytes, head.target))
        count += 1
        var at = 0
        for field in fieldStore[0..<Int(head.fieldCount)] {
            let name = slice(headBytes, field.name)
            guard at + name.count <= Int(Self.httpBufferSize), count < HTTP2Session.maxFields else { return nil }
            let lower = pathScratch + at
            for i in 0..<name.count {
                let b = name[i]
                lower.storeBytes(of: b &- 0x41 < 26 ? b | 0x20 : b, toByteOffset: i, as: UInt8.self)
            }
            let lowered = UnsafeRawBufferPointer(start: lower, count: name.count)
            let value = slice(headBytes, field.value)
            if Self.isConnectionSpecific(lowered) || Self.equals(lowered, "host")
                || Self.equals(lowered, "http2-settings")
                || (Self.equals(lowered, "te") && !Self.equals(value, "trailers"))
            {
                continue
            }
            at += name.count
            h2Fields[count] = HTTP2Session.Field(name: lowered, value: value)
            count += 1
        }
        let bodyless = e.pointee.reqBody.done && headBytes.count == bytes.count
        guard
            let stream = session.submitRequest(
                fields: UnsafeBufferPointer(rebasing: h2Fields[0..<count]), body: !bodyless, owner: slot)
        else {
            // Out of stream ids, or going away: later exchanges open another session.
            if let (sessionSlot, _) = upstreamSessionOf(e) { exchange(sessionSlot).pointee.h2.goingAway = true }
            return nil
        }
        e.pointee.up2.stream = stream
        e.pointee.up2.requestChunked = head.chunked
        e.pointee.up2.decoder = ChunkedDecoder()
        e.pointee.up2.requestEnded = bodyless
        return Int32(headBytes.count)
    }

    // MARK: - Client session callbacks

    /// The exchange slot of a client stream, checked against the link it holds.
    func upstreamStreamSlot(_ session: HTTP2Session, _ stream: Int32) -> Int32? {
        guard let owner = session.owner(of: stream), owner < table.highWater else { return nil }
        let c = table.pointer(owner)
        guard c.pointee.isHTTP, c.pointee.h2Upstream else { return nil }
        let link = exchange(owner).pointee.up2
        guard link.session == session.tag, link.sessionGeneration == session.tagGeneration, link.stream == stream
        else { return nil }
        return owner
    }

    /// One field of a response header block: the status line at `:status`, then each field,
    /// into the inbound buffer; after the final head, a trailer field into `trailers`.
    func upstreamField(
        _ session: HTTP2Session, stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer
    ) {
        guard let slot = upstreamStreamSlot(session, stream), !name.isEmpty else { return }
        let e = exchange(slot)
        guard !e.pointee.up2.failed else { return }
        if e.pointee.up2.finalHead {
            guard name[0] != UInt8(ascii: ":"), !Self.isConnectionSpecific(name), !Self.equals(name, "content-length")
            else { return }
            appendTrailer(e, name, value)
            return
        }
        if name[0] == UInt8(ascii: ":") {
            guard Self.equals(name, ":status"), value.count == 3 else { return }
            let status = UInt16(value[0] &- 0x30) * 100 + UInt16(value[1] &- 0x30) * 10 + UInt16(value[2] &- 0x30)
            if e.pointee.up2.inbound.buffer < 0 {
                e.pointee.up2.inbound = HTTPExchange.Queue(buffer: streamBuffers.acquire(), start: 0, end: 0)
            } else {
                compact(&e.pointee.up2.inbound, streamBuffers.base(e.pointee.up2.inbound.buffer))
            }
            e.pointee.up2.writingHead = true
            e.pointee.up2.hasLength = false
            e.pointee.up2.status = status
            let reason = HTTPHeadWriter.reasonPhrase(status)
            _ = writeResponseHeadBytes(e, "HTTP/1.1 ", .bytes(value), " ", .text(reason), "\r\n")
            return
        }
        guard e.pointee.up2.writingHead else { return }
        if Self.equals(name, "content-length") { e.pointee.up2.hasLength = true }
        _ = writeResponseHeadBytes(e, .bytes(name), ": ", .bytes(value), "\r\n")
    }

    /// Appends to the response head being written; false (and the stream failed) when the
    /// head would pass `h2HeadLimit`.
    func writeResponseHeadBytes(
        _ e: UnsafeMutablePointer<HTTPExchange>, _ p1: HeadPiece, _ p2: HeadPiece = .none, _ p3: HeadPiece = .none,
        _ p4: HeadPiece = .none, _ p5: HeadPiece = .none
    ) -> Bool {
        let total = p1.count + p2.count + p3.count + p4.count + p5.count
        guard e.pointee.up2.inbound.end + Int32(total) <= Self.h2HeadLimit else {
            e.pointee.up2.tooLarge = true
            return false
        }
        HeadPiece.write(
            to: streamBuffers.base(e.pointee.up2.inbound.buffer) + Int(e.pointee.up2.inbound.end), p1, p2, p3, p4, p5)
        e.pointee.up2.inbound.end += Int32(total)
        return true
    }

    /// A trailer field `name: value` for the chunked trailer section (dropped past 16 KiB).
    func appendTrailer(
        _ e: UnsafeMutablePointer<HTTPExchange>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer
    ) {
        if e.pointee.up2.trailers.buffer < 0 {
            e.pointee.up2.trailers = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let total = name.count + value.count + 4
        guard Int(e.pointee.up2.trailers.end) + total <= Int(Self.h2HeadLimit) else { return }
        HeadPiece.write(
            to: httpBuffers.base(e.pointee.up2.trailers.buffer) + Int(e.pointee.up2.trailers.end), .bytes(name), ": ",
            .bytes(value), "\r\n", .none)
        e.pointee.up2.trailers.end += Int32(total)
    }

    /// A response header block ended: a final head gets its framing (`content-length: 0`
    /// when the stream ended with it, `transfer-encoding: chunked` when a body follows
    /// without a length) and its blank line; END_STREAM ends the response.
    func upstreamFieldsDone(_ session: HTTP2Session, stream: Int32, endStream: Bool) {
        guard let slot = upstreamStreamSlot(session, stream) else { return }
        let e = exchange(slot)
        if e.pointee.up2.writingHead && !e.pointee.up2.tooLarge {
            e.pointee.up2.writingHead = false
            let status = e.pointee.up2.status
            var ok = true
            if status >= 200 {
                e.pointee.up2.finalHead = true
                if endStream {
                    if !e.pointee.up2.hasLength && status != 204 && status != 304 {
                        ok = writeResponseHeadBytes(e, "content-length: 0\r\n")
                    }
                } else if !e.pointee.up2.hasLength {
                    e.pointee.up2.chunked = true
                    ok = writeResponseHeadBytes(e, "transfer-encoding: chunked\r\n")
                }
            }
            if ok && writeResponseHeadBytes(e, "\r\n") { e.pointee.up2.headLeft = e.pointee.up2.inbound.count }
        }
        if e.pointee.up2.tooLarge {
            // A response head the proxy cannot hold: the stream fails (502).
            failUpstreamStream(slot, session, errorCode: 0x8)
            return
        }
        if endStream { e.pointee.up2.ended = true }
        wakeUp(slot)
    }

    /// Response body bytes of a DATA frame, kept raw in the inbound buffer; the window keeps
    /// an endpoint within it (one that is not gets its stream reset).
    func upstreamData(_ session: HTTP2Session, stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        guard let slot = upstreamStreamSlot(session, stream) else {
            session.consume(stream: stream, count: bytes.count)
            return
        }
        let e = exchange(slot)
        guard e.pointee.up2.finalHead, !e.pointee.up2.failed, e.pointee.up2.inbound.buffer >= 0 else {
            session.consume(stream: stream, count: bytes.count)
            return
        }
        guard !bytes.isEmpty else { return }
        let base = streamBuffers.base(e.pointee.up2.inbound.buffer)
        if Self.streamBufferSize - e.pointee.up2.inbound.end < Int32(bytes.count) {
            compact(&e.pointee.up2.inbound, base)
        }
        guard Self.streamBufferSize - e.pointee.up2.inbound.end >= Int32(bytes.count) else {
            session.consume(stream: stream, count: bytes.count)
            failUpstreamStream(slot, session, errorCode: 0x3)
            return
        }
        (base + Int(e.pointee.up2.inbound.end)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        e.pointee.up2.inbound.end += Int32(bytes.count)
        wakeUp(slot)
    }

    func upstreamDataEnded(_ session: HTTP2Session, stream: Int32) {
        guard let slot = upstreamStreamSlot(session, stream) else { return }
        exchange(slot).pointee.up2.ended = true
        wakeUp(slot)
    }

    /// nghttp2 closed the stream: after the response's end it is done; before, it failed
    /// (reset by the endpoint, or REFUSED_STREAM, which a GOAWAY below the stream also gives).
    func upstreamStreamClosed(_ session: HTTP2Session, stream: Int32, errorCode: UInt32) {
        guard let slot = upstreamStreamSlot(session, stream) else { return }
        let e = exchange(slot)
        unlinkStream(upstream: slot)
        if !e.pointee.up2.ended || !e.pointee.up2.finalHead {
            e.pointee.up2.failed = true
            counters.h2UpstreamResets += 1
        }
        wakeUp(slot)
    }

    /// The stream fails on the proxy's side (a head too large, a window overrun): reset, out
    /// of the session's list, the exchange woken to see it.
    func failUpstreamStream(_ slot: Int32, _ session: HTTP2Session, errorCode: UInt32) {
        let e = exchange(slot)
        e.pointee.up2.failed = true
        session.forget(stream: e.pointee.up2.stream, errorCode: errorCode)
        unlinkStream(upstream: slot)
        counters.h2UpstreamResets += 1
        wakeUp(slot)
    }

    /// The request body for a client stream's DATA frames, from `outbound`.
    func upstreamReadBody(_ session: HTTP2Session, stream: Int32, into: UnsafeMutableRawBufferPointer)
        -> HTTP2Session.BodyRead
    {
        guard let slot = upstreamStreamSlot(session, stream) else { return .failed }
        let c = table.pointer(slot)
        let e = exchange(slot)
        let n = takeFrameBytes(&e.pointee.up2.outbound, into: into)
        if n > 0 { c.pointee.life.activity(now: now) }
        if n > 0 && e.pointee.up2.outbound.buffer < 0 && e.pointee.up2.blocked {
            e.pointee.up2.blocked = false
            c.pointee.toUp.dstWritable = true
            wakeUp(slot)
        }
        let end = e.pointee.up2.requestEnded && e.pointee.up2.outbound.isEmpty
        if n == 0 && !end {
            e.pointee.up2.deferred = true
            return .deferred
        }
        return .bytes(n, end: end)
    }

    /// A frame from an endpoint: a GOAWAY stops new streams on the session (those below
    /// its last stream id finish; nghttp2 refuses the others).
    func upstreamFrameReceived(_ session: HTTP2Session, type: UInt8) {
        guard type == 0x7 else { return }
        let slot = session.tag
        guard table.pointer(slot).pointee.generation == session.tagGeneration else { return }
        exchange(slot).pointee.h2.goingAway = true
        markDirty(slot)
    }
}
