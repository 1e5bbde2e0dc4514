import SluiceRouting
import SluiceSystem

/// HTTP/2 streams as HTTP exchanges: the nghttp2 callbacks that open a stream slot and fill
/// its inbound queue, and the stream's side of the transport (`receive`, `send`, `shutdown`
/// towards `.downstream`), through which the unchanged HTTP/1.1 exchange code reads its
/// request and writes its response (`HTTP2Link` has the table).
extension Loop: HTTP2SessionHandler {
    // MARK: - Callbacks (inside HTTP2Session.receive / flush, loop thread)

    func h2StreamOpened(_ session: HTTP2Session, stream: Int32) -> Bool {
        guard !session.isClient else { return false }
        let parent = session.tag
        let p = table.pointer(parent)
        let pe = exchange(parent)
        guard p.pointee.generation == session.tagGeneration, !pe.pointee.h2.goingAway else { return false }
        // New streams take the newest tables; a session whose listener left takes none.
        guard let routes = sessionRoutes(parent) else {
            goAway(parent, errorCode: 0, failed: false)
            return false
        }
        guard let (slot, firstUse) = table.allocate() else {
            counters.rejectedFull += 1
            return false
        }
        if firstUse {
            timers.reset(slot)
            if let logStates { (logStates + Int(slot)).initialize(to: LogState()) }
        }
        let c = table.pointer(slot)
        c.pointee.isHTTP = true
        c.pointee.h2 = .stream
        c.pointee.snapshotEpoch = epoch
        c.pointee.listener = p.pointee.listener
        c.pointee.stats.frontendRow = p.pointee.stats.frontendRow
        c.pointee.stats.acceptedMicros = nowMicros
        c.pointee.stats.logged = p.pointee.stats.logged
        if let logStates {
            (logStates + Int(slot)).pointee = logStates[Int(parent)]
            (sniStore + Int(slot) * LogState.sniCapacity).copyMemory(
                from: sniStore + Int(parent) * LogState.sniCapacity, byteCount: LogState.sniCapacity)
        }
        c.pointee.toDown.dstWritable = true
        let e = exchange(slot)
        e.initialize(to: HTTPExchange(clientOf: pe.pointee))
        e.pointee.routes = routes
        e.pointee.h2.parent = parent
        e.pointee.h2.parentGeneration = p.pointee.generation
        e.pointee.h2.stream = stream
        e.pointee.h2.next = pe.pointee.h2.firstStream
        if pe.pointee.h2.firstStream >= 0 { exchange(pe.pointee.h2.firstStream).pointee.h2.prev = slot }
        pe.pointee.h2.firstStream = slot
        pe.pointee.h2.streams += 1
        e.pointee.h2.inbound = HTTPExchange.Queue(buffer: streamBuffers.acquire(), start: 0, end: 0)
        e.pointee.h2.tail = Self.streamBufferSize
        counters.h2Streams += 1
        session.adopt(stream: stream, owner: slot)
        c.pointee.life.activity(now: now)
        apply(slot, .waiting(tls: false))
        // Draining: this stream is served, and the GOAWAY names it the session's last.
        if lastRequests { goAway(parent, errorCode: 0, failed: false) }
        return true
    }

    func h2Field(
        _ session: HTTP2Session, stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        trailer: Bool
    ) -> Bool {
        if session.isClient {
            upstreamField(session, stream: stream, name: name, value: value)
            return true
        }
        guard let slot = streamSlot(session, stream) else { return true }
        // Request trailers do not cross to HTTP/1.1 upstreams.
        if !trailer { addField(slot, name: name, value: value) }
        return true
    }

    func h2FieldsDone(_ session: HTTP2Session, stream: Int32, endStream: Bool, trailer: Bool) {
        if session.isClient {
            upstreamFieldsDone(session, stream: stream, endStream: endStream)
            return
        }
        guard let slot = streamSlot(session, stream) else { return }
        let e = exchange(slot)
        if !trailer { finishHead(slot, endStream: endStream) }
        if endStream { e.pointee.h2.requestEnded = true }
        wake(slot)
    }

    func h2Data(_ session: HTTP2Session, stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        if session.isClient {
            upstreamData(session, stream: stream, bytes)
            return
        }
        guard let slot = streamSlot(session, stream) else { return }
        let e = exchange(slot)
        guard e.pointee.h2.refuse == 0, !bytes.isEmpty else {
            session.consume(stream: stream, count: bytes.count)
            return
        }
        let base = streamBuffers.base(e.pointee.h2.inbound.buffer)
        if Self.streamBufferSize - e.pointee.h2.inbound.end < Int32(bytes.count) {
            compact(&e.pointee.h2.inbound, base)
        }
        // The window keeps a client within the buffer; one that is not gets its stream reset.
        guard Self.streamBufferSize - e.pointee.h2.inbound.end >= Int32(bytes.count) else {
            session.reset(stream: stream, errorCode: 0x3)
            return
        }
        (base + Int(e.pointee.h2.inbound.end)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        e.pointee.h2.inbound.end += Int32(bytes.count)
        wake(slot)
    }

    func h2DataEnded(_ session: HTTP2Session, stream: Int32) {
        if session.isClient {
            upstreamDataEnded(session, stream: stream)
            return
        }
        guard let slot = streamSlot(session, stream) else { return }
        exchange(slot).pointee.h2.requestEnded = true
        wake(slot)
    }

    func h2StreamClosed(_ session: HTTP2Session, stream: Int32, errorCode: UInt32) {
        if session.isClient {
            upstreamStreamClosed(session, stream: stream, errorCode: errorCode)
            return
        }
        guard let slot = streamSlot(session, stream) else { return }
        let e = exchange(slot)
        let finished = errorCode == 0 && (e.pointee.h2.responseEnded || e.pointee.h2.bodyless)
        if !finished { counters.h2ClientResets += 1 }
        unlinkStream(slot)
        close(slot, abort: !finished, reason: finished ? .done : .clientReset)
    }

    func h2FrameReceived(_ session: HTTP2Session, type: UInt8, flags: UInt8, stream: Int32, length: Int) {
        if session.isClient {
            upstreamFrameReceived(session, type: type)
            return
        }
        let slot = session.tag
        guard table.pointer(slot).pointee.generation == session.tagGeneration else { return }
        countFrame(slot, type: type, flags: flags, length: length)
    }

    func h2ReadBody(_ session: HTTP2Session, stream: Int32, into: UnsafeMutableRawBufferPointer)
        -> HTTP2Session.BodyRead
    {
        if session.isClient { return upstreamReadBody(session, stream: stream, into: into) }
        guard let slot = streamSlot(session, stream) else { return .failed }
        let c = table.pointer(slot)
        let e = exchange(slot)
        let n = takeFrameBytes(&e.pointee.h2.outbound, into: into)
        if n > 0 { c.pointee.life.activity(now: now) }
        if n > 0 && e.pointee.h2.outbound.buffer < 0 && e.pointee.h2.blocked {
            e.pointee.h2.blocked = false
            c.pointee.toDown.dstWritable = true
            wake(slot)
        }
        let end = e.pointee.h2.responseEnded && e.pointee.h2.outbound.isEmpty
        if n == 0 && !end {
            e.pointee.h2.deferred = true
            return .deferred
        }
        if end && !e.pointee.h2.trailers.isEmpty { submitKeptTrailers(slot, session) }
        return .bytes(n, end: end)
    }

    /// Copies what fits of `queue` (an httpBuffers block) into a DATA frame's payload; an
    /// emptied queue gives its block back. The bytes taken.
    @inline(__always)
    func takeFrameBytes(_ queue: inout HTTPExchange.Queue, into: UnsafeMutableRawBufferPointer) -> Int {
        guard !queue.isEmpty else { return 0 }
        let n = min(into.count, Int(queue.count))
        into.baseAddress!.copyMemory(from: httpBuffers.base(queue.buffer) + Int(queue.start), byteCount: n)
        queue.start += Int32(n)
        if queue.isEmpty { release(&queue) }
        return n
    }

    /// Trailer field lines the de-chunked response body ended with, kept for the stream (at
    /// most `h2HeadLimit` bytes; more are dropped).
    func keepTrailers(_ e: UnsafeMutablePointer<HTTPExchange>, _ bytes: UnsafeRawPointer, _ count: Int) {
        if e.pointee.h2.trailers.buffer < 0 {
            e.pointee.h2.trailers = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let n = min(count, Int(Self.h2HeadLimit - e.pointee.h2.trailers.end))
        guard n > 0 else { return }
        (httpBuffers.base(e.pointee.h2.trailers.buffer) + Int(e.pointee.h2.trailers.end)).copyMemory(
            from: bytes, byteCount: n)
        e.pointee.h2.trailers.end += Int32(n)
    }

    /// Submits the kept trailer section as the stream's trailers (from inside the data
    /// source, as `submitTrailers` asks): names lowercased, values without surrounding
    /// whitespace, malformed lines and fields HTTP/2 does not carry left out.
    func submitKeptTrailers(_ slot: Int32, _ session: HTTP2Session) {
        let e = exchange(slot)
        let queue = e.pointee.h2.trailers
        let bytes = UnsafeRawBufferPointer(
            start: httpBuffers.base(queue.buffer) + Int(queue.start), count: Int(queue.count))
        var count = 0
        var lineStart = 0
        var at = 0
        while lineStart < bytes.count && count < HTTP2Session.maxFields {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var colon = lineStart
            while colon < lineEnd && bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            defer { lineStart = lineEnd + 1 }
            let nameCount = colon - lineStart
            guard colon < lineEnd, nameCount > 0, at + nameCount <= Int(Self.httpBufferSize) else { continue }
            var valueStart = colon + 1
            var valueEnd = lineEnd
            while valueStart < valueEnd && (bytes[valueStart] == 0x20 || bytes[valueStart] == 0x09) { valueStart += 1 }
            while valueEnd > valueStart
                && (bytes[valueEnd - 1] == 0x0D || bytes[valueEnd - 1] == 0x20 || bytes[valueEnd - 1] == 0x09)
            {
                valueEnd -= 1
            }
            let lower = pathScratch + at
            var valid = true
            for i in 0..<nameCount {
                let b = bytes[lineStart + i]
                if b <= 0x20 || b >= 0x7F { valid = false }
                lower.storeBytes(of: b &- 0x41 < 26 ? b | 0x20 : b, toByteOffset: i, as: UInt8.self)
            }
            let name = UnsafeRawBufferPointer(start: lower, count: nameCount)
            guard valid, !Self.isConnectionSpecific(name), !Self.equals(name, "content-length"),
                !Self.equals(name, "te"), !Self.equals(name, "host")
            else { continue }
            at += nameCount
            h2Fields[count] = HTTP2Session.Field(
                name: name, value: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd]))
            count += 1
        }
        if count > 0 {
            _ = session.submitTrailers(
                stream: e.pointee.h2.stream, fields: UnsafeBufferPointer(rebasing: h2Fields[0..<count]))
        }
        release(&e.pointee.h2.trailers)
    }

    func h2Output(_ session: HTTP2Session, _ bytes: UnsafeRawBufferPointer) -> Int {
        let slot = session.tag
        let e = exchange(slot)
        if e.pointee.downq.buffer < 0 {
            e.pointee.downq = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.downq.buffer)
        if e.pointee.downq.start > 0 && Self.httpBufferSize - e.pointee.downq.end < Int32(bytes.count) {
            compact(&e.pointee.downq, base)
        }
        let n = min(bytes.count, Int(Self.httpBufferSize - e.pointee.downq.end))
        (base + Int(e.pointee.downq.end)).copyMemory(from: bytes.baseAddress!, byteCount: n)
        e.pointee.downq.end += Int32(n)
        return n
    }

    // MARK: - Streams

    /// The stream slot of `stream` (kept on the nghttp2 stream, checked against the slot's
    /// link), or nil when it has none (refused, or already closed).
    func streamSlot(_ session: HTTP2Session, _ stream: Int32) -> Int32? {
        let parent = session.tag
        guard table.pointer(parent).pointee.generation == session.tagGeneration,
            let slot = session.owner(of: stream), slot < table.highWater
        else { return nil }
        let c = table.pointer(slot)
        let link = exchange(slot).pointee.h2
        guard c.pointee.h2 == .stream, link.parent == parent, link.parentGeneration == session.tagGeneration,
            link.stream == stream
        else { return nil }
        return slot
    }

    /// The route table a new stream of the session in `slot` uses: its listener's, in the
    /// current snapshot (the decrypted table for TLS); nil when the listener is gone.
    func sessionRoutes(_ slot: Int32) -> Int32? {
        let c = table.pointer(slot)
        let position = Int(c.pointee.listener)
        guard position >= 0 else { return nil }
        let listener = listeners[position]
        let routes = exchange(slot).pointee.secure ? listener.terminated : listener.routes
        guard routes >= 0 else { return nil }
        // The session slot itself holds no index into a snapshot but its listener's.
        rebindByIdentity(c)
        return routes
    }

    /// Queues the stream for a pump once nghttp2 returns.
    @inline(__always)
    func wake(_ slot: Int32) {
        let e = exchange(slot)
        guard !e.pointee.h2.woken else { return }
        e.pointee.h2.woken = true
        h2Wake.append((slot, table.pointer(slot).pointee.generation))
    }

    /// Pumps the streams the callbacks woke: input arrived, or their output drained.
    func runWoken() {
        while !h2Wake.isEmpty {
            Swift.swap(&h2Wake, &h2Waking)
            for (slot, generation) in h2Waking {
                let c = table.pointer(slot)
                guard c.pointee.generation == generation, c.pointee.h2 == .stream else { continue }
                let e = exchange(slot)
                e.pointee.h2.woken = false
                if e.pointee.h2.refuse != 0 && e.pointee.machine.state == .readingHead {
                    let status = e.pointee.h2.refuse
                    e.pointee.h2.refuse = 0
                    countFrontend(c, .httpRequests)
                    if respondError(slot, status: status, reason: .badRequest) == .again { httpPump(slot) }
                    continue
                }
                c.pointee.toUp.srcReadable = true
                httpPump(slot)
            }
            h2Waking.removeAll(keepingCapacity: true)
        }
    }

    /// Takes the stream out of its session's list.
    func unlinkStream(_ slot: Int32) {
        let e = exchange(slot)
        let parent = e.pointee.h2.parent
        guard parent >= 0, table.pointer(parent).pointee.generation == e.pointee.h2.parentGeneration else {
            e.pointee.h2.parent = -1
            return
        }
        let pe = exchange(parent)
        let prev = e.pointee.h2.prev
        let next = e.pointee.h2.next
        if prev >= 0 { exchange(prev).pointee.h2.next = next } else { pe.pointee.h2.firstStream = next }
        if next >= 0 { exchange(next).pointee.h2.prev = prev }
        pe.pointee.h2.streams -= 1
        e.pointee.h2.parent = -1
        e.pointee.h2.prev = -1
        e.pointee.h2.next = -1
        // A session going away closes with its last stream.
        if pe.pointee.h2.goingAway && pe.pointee.h2.streams == 0 { markDirty(parent) }
    }

    /// The stream slot closes (called by `close`) while nghttp2 still has its stream (it did
    /// not report it closed): the stream is reset, NO_ERROR when the response had ended
    /// (RFC 9113 §8.1: the rest of the request is not wanted), CANCEL when it was cut short,
    /// INTERNAL_ERROR when none had started; then the buffers go.
    func leaveSession(_ slot: Int32, abort: Bool) {
        let e = exchange(slot)
        let parent = e.pointee.h2.parent
        if parent >= 0, table.pointer(parent).pointee.generation == e.pointee.h2.parentGeneration,
            let session = h2Session(parent)
        {
            let done = !abort && (e.pointee.h2.responseEnded || e.pointee.h2.bodyless)
            if done {
                session.reset(stream: e.pointee.h2.stream, errorCode: 0)
            } else {
                counters.h2ProxyResets += 1
                session.reset(stream: e.pointee.h2.stream, errorCode: e.pointee.h2.headSubmitted ? 0x8 : 0x2)
            }
            unlinkStream(slot)
            markDirty(parent)
        }
        releaseInbound(e)
        release(&e.pointee.h2.outbound)
        release(&e.pointee.h2.trailers)
    }

    /// Gives the stream's inbound buffer back.
    @inline(__always)
    func releaseInbound(_ e: UnsafeMutablePointer<HTTPExchange>) {
        if e.pointee.h2.inbound.buffer >= 0 { streamBuffers.release(e.pointee.h2.inbound.buffer) }
        e.pointee.h2.inbound = HTTPExchange.Queue()
    }

    // MARK: - Transport

    /// The stream's request bytes for the exchange: the head, then the body (chunk-framed when
    /// the head announced chunked), then the last chunk; "would block" once none is left. The
    /// body bytes read go back to the client's flow-control windows.
    func receiveStream(_ c: UnsafeMutablePointer<Connection>, into dst: UnsafeMutableRawPointer, count: Int32)
        -> ReadResult
    {
        let e = exchange(Int32(c - table.slots))
        let inbound = e.pointee.h2.inbound
        if e.pointee.h2.headLeft > 0 {
            let n = min(count, e.pointee.h2.headLeft)
            dst.copyMemory(from: streamBuffers.base(inbound.buffer) + Int(inbound.start), byteCount: Int(n))
            e.pointee.h2.headLeft -= n
            e.pointee.h2.inbound.start += n
            return .bytes(n)
        }
        if e.pointee.h2.headDone && !inbound.isEmpty {
            let chunked = e.pointee.h2.chunked
            let overhead: Int32 = chunked ? 12 : 0
            guard count > overhead else { return .wouldBlock }
            let n = min(count - overhead, inbound.count)
            var at = chunked ? Self.writeChunkSize(Int(n), into: dst) : 0
            (dst + at).copyMemory(from: streamBuffers.base(inbound.buffer) + Int(inbound.start), byteCount: Int(n))
            at += Int(n)
            if chunked {
                dst.storeBytes(of: 0x0A0D, toByteOffset: at, as: UInt16.self)
                at += 2
            }
            e.pointee.h2.inbound.start += n
            if e.pointee.h2.inbound.isEmpty {
                e.pointee.h2.inbound.start = 0
                e.pointee.h2.inbound.end = 0
            }
            let parent = e.pointee.h2.parent
            if parent >= 0, let session = h2Session(parent) {
                session.consume(stream: e.pointee.h2.stream, count: Int(n))
                markDirty(parent)
            }
            return .bytes(Int32(at))
        }
        if e.pointee.h2.requestEnded && e.pointee.h2.headDone {
            if e.pointee.h2.chunked && !e.pointee.h2.terminatorSent && count >= 5 {
                e.pointee.h2.terminatorSent = true
                Self.lastChunk.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: 5) }
                return .bytes(5)
            }
            releaseInbound(e)
        }
        c.pointee.toUp.srcReadable = false
        return .wouldBlock
    }

    static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    /// Writes `n` in hex and CRLF at `dst`; the bytes written.
    static func writeChunkSize(_ n: Int, into dst: UnsafeMutableRawPointer) -> Int {
        var digits = 1
        while n >> (4 * digits) != 0 { digits += 1 }
        for i in 0..<digits {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xF
            dst.storeBytes(of: UInt8(nibble < 10 ? 0x30 + nibble : 0x57 + nibble), toByteOffset: i, as: UInt8.self)
        }
        dst.storeBytes(of: 0x0A0D, toByteOffset: digits, as: UInt16.self)
        return digits + 2
    }

    /// The exchange's response bytes for the stream: the head becomes HEADERS, the body goes
    /// into `outbound` for the data source. "Would block" while `outbound` is full.
    func sendStream(_ c: UnsafeMutablePointer<Connection>, _ queue: inout HTTPExchange.Queue) -> WriteResult {
        let slot = Int32(c - table.slots)
        let e = exchange(slot)
        let parent = e.pointee.h2.parent
        guard parent >= 0, let session = h2Session(parent) else { return .failed(.connectionReset) }
        var taken: Int32 = 0
        if !e.pointee.h2.headSubmitted {
            guard let length = submitResponseHead(slot, session, queue) else { return .failed(.connectionReset) }
            taken = length
            queue.start += length
            markDirty(parent)
        }
        guard !queue.isEmpty else {
            if taken > 0 { return .bytes(taken) }
            return .bytes(0)
        }
        if e.pointee.h2.bodyless {
            // Bytes after a head that ended the stream (a body to a HEAD, say): dropped.
            let n = queue.count
            queue.start = queue.end
            return .bytes(taken + n)
        }
        if e.pointee.h2.outbound.buffer < 0 {
            e.pointee.h2.outbound = HTTPExchange.Queue(buffer: httpBuffers.acquire(), start: 0, end: 0)
        }
        let base = httpBuffers.base(e.pointee.h2.outbound.buffer)
        if e.pointee.h2.outbound.start > 0 { compact(&e.pointee.h2.outbound, base) }
        let n = min(queue.count, Self.httpBufferSize - e.pointee.h2.outbound.end)
        if n > 0 {
            (base + Int(e.pointee.h2.outbound.end)).copyMemory(
                from: self.base(of: queue) + Int(queue.start), byteCount: Int(n))
            e.pointee.h2.outbound.end += n
            queue.start += n
            if e.pointee.h2.deferred {
                e.pointee.h2.deferred = false
                session.resumeData(stream: e.pointee.h2.stream)
            }
            markDirty(parent)
        }
        if !queue.isEmpty {
            e.pointee.h2.blocked = true
            c.pointee.toDown.dstWritable = false
        }
        if taken + n == 0 { return .wouldBlock }
        return .bytes(taken + n)
    }

    /// The exchange ended its response (SHUT_WR): END_STREAM follows what `outbound` holds.
    func shutdownStream(_ c: UnsafeMutablePointer<Connection>) {
        let slot = Int32(c - table.slots)
        let e = exchange(slot)
        guard !e.pointee.h2.responseEnded else { return }
        e.pointee.h2.responseEnded = true
        let parent = e.pointee.h2.parent
        guard parent >= 0, let session = h2Session(parent) else { return }
        if e.pointee.h2.deferred {
            e.pointee.h2.deferred = false
            session.resumeData(stream: e.pointee.h2.stream)
        }
        markDirty(parent)
    }
}
