import SluiceSystem
import SluiceWire

/// Heads across the HTTP/2 ↔ HTTP/1.1 boundary. A stream's request fields (validated by
/// nghttp2: lowercase names, no connection-specific fields, pseudo-headers first) become an
/// HTTP/1.1 head in the stream's inbound buffer, which the exchange then parses with the same
/// parser and limits as any HTTP/1.1 request (RFC 9113 §8.3: `:authority` becomes Host,
/// cookie crumbs are joined with "; "). The response head the exchange writes (already
/// rewritten for the client) becomes HEADERS without the fields HTTP/2 forbids.
///
/// Layout of the inbound buffer while a head is built: the head grows from the front;
/// pseudo-header values wait at the back, from `tail`, until the request line is written.
/// The head may use `h2HeadLimit`; the rest is the stream's receive window (the default
/// 65,535 bytes, which a client may use before it has our SETTINGS).
extension Loop {
    /// The request head's share of a stream's inbound buffer; the rest holds the window.
    static let h2HeadLimit: Int32 = 16 * 1024

    /// One field of a request header block (not a trailer).
    func addField(_ slot: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let e = exchange(slot)
        guard e.pointee.h2.refuse == 0, !name.isEmpty else { return }
        let base = streamBuffers.base(e.pointee.h2.inbound.buffer)
        if name[0] == UInt8(ascii: ":") {
            guard !e.pointee.h2.headWritten else { return }
            let count = Int32(value.count)
            guard e.pointee.h2.tail - count >= Self.h2HeadLimit else {
                e.pointee.h2.refuse = 431
                return
            }
            e.pointee.h2.tail -= count
            if count > 0 {
                (base + Int(e.pointee.h2.tail)).copyMemory(from: value.baseAddress!, byteCount: value.count)
            }
            let span = HTTP2Link.Span(start: e.pointee.h2.tail, count: count)
            if Self.equals(name, ":method") {
                e.pointee.h2.method = span
            } else if Self.equals(name, ":path") {
                e.pointee.h2.path = span
            } else if Self.equals(name, ":authority") {
                e.pointee.h2.authority = span
            }
            return
        }
        if !e.pointee.h2.headWritten && !writeRequestLine(slot) { return }
        if Self.equals(name, "host") && e.pointee.h2.authority.isSet { return }
        if Self.equals(name, "cookie") && e.pointee.h2.cookie.isSet {
            appendCookie(slot, value)
            return
        }
        if Self.equals(name, "content-length") { e.pointee.h2.hasLength = true }
        let valueAt = e.pointee.h2.inbound.end + Int32(name.count) + 2
        guard writeHeadBytes(slot, .bytes(name), ": ", .bytes(value), "\r\n") else { return }
        if Self.equals(name, "cookie") {
            e.pointee.h2.cookie = HTTP2Link.Span(start: valueAt, count: Int32(value.count))
        }
    }

    /// The header block ended: the head is closed (with `transfer-encoding: chunked` when a
    /// body follows without a content-length) and handed to the exchange.
    func finishHead(_ slot: Int32, endStream: Bool) {
        let e = exchange(slot)
        guard e.pointee.h2.refuse == 0 else { return }
        if !e.pointee.h2.headWritten && !writeRequestLine(slot) { return }
        if !endStream && !e.pointee.h2.hasLength {
            e.pointee.h2.chunked = true
            guard writeHeadBytes(slot, "transfer-encoding: chunked\r\n") else { return }
        }
        guard writeHeadBytes(slot, "\r\n") else { return }
        e.pointee.h2.headLeft = e.pointee.h2.inbound.count
        e.pointee.h2.headDone = true
        e.pointee.h2.tail = Self.streamBufferSize
    }

    /// `METHOD SP target SP HTTP/1.1`, then `host` from `:authority`. A request without
    /// `:method`, or without `:path` (but CONNECT, whose target is the authority), is a 400.
    func writeRequestLine(_ slot: Int32) -> Bool {
        let e = exchange(slot)
        let link = e.pointee.h2
        let base = streamBuffers.base(link.inbound.buffer)
        func bytes(_ span: HTTP2Link.Span) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: base + Int(span.start), count: Int(span.count))
        }
        guard link.method.isSet, link.method.count > 0 else {
            e.pointee.h2.refuse = 400
            return false
        }
        let method = bytes(link.method)
        let isConnect = Self.equals(method, "CONNECT")
        let target = isConnect ? link.authority : link.path
        guard target.isSet, target.count > 0 else {
            e.pointee.h2.refuse = 400
            return false
        }
        e.pointee.h2.headWritten = true
        guard writeHeadBytes(slot, .bytes(method), " ", .bytes(bytes(target)), " HTTP/1.1\r\n") else { return false }
        if link.authority.isSet {
            return writeHeadBytes(slot, "host: ", .bytes(bytes(link.authority)), "\r\n")
        }
        return true
    }

    /// Joins a cookie crumb to the cookie line already written (RFC 9113 §8.2.3): the bytes
    /// after that line's value move up by the crumb and its separator.
    func appendCookie(_ slot: Int32, _ crumb: UnsafeRawBufferPointer) {
        let e = exchange(slot)
        let grow = Int32(crumb.count) + 2
        guard e.pointee.h2.inbound.end + grow <= min(e.pointee.h2.tail, Self.h2HeadLimit) else {
            e.pointee.h2.refuse = 431
            return
        }
        let base = streamBuffers.base(e.pointee.h2.inbound.buffer)
        let at = e.pointee.h2.cookie.start + e.pointee.h2.cookie.count
        let after = e.pointee.h2.inbound.end - at
        (base + Int(at + grow)).copyMemory(from: base + Int(at), byteCount: Int(after))
        base.storeBytes(of: 0x203B, toByteOffset: Int(at), as: UInt16.self)  // "; "
        if !crumb.isEmpty {
            (base + Int(at) + 2).copyMemory(from: crumb.baseAddress!, byteCount: crumb.count)
        }
        e.pointee.h2.cookie.count += grow
        e.pointee.h2.inbound.end += grow
    }

    /// Appends pieces to the head being built; false (and a 431 to answer) when they do not
    /// fit before the pseudo-header values or past half the buffer.
    func writeHeadBytes(
        _ slot: Int32, _ p1: HeadPiece, _ p2: HeadPiece = .none, _ p3: HeadPiece = .none,
        _ p4: HeadPiece = .none, _ p5: HeadPiece = .none
    ) -> Bool {
        let e = exchange(slot)
        let total = p1.count + p2.count + p3.count + p4.count + p5.count
        guard e.pointee.h2.inbound.end + Int32(total) <= min(e.pointee.h2.tail, Self.h2HeadLimit) else {
            e.pointee.h2.refuse = 431
            return false
        }
        HeadPiece.write(
            to: streamBuffers.base(e.pointee.h2.inbound.buffer) + Int(e.pointee.h2.inbound.end), p1, p2, p3, p4, p5)
        e.pointee.h2.inbound.end += Int32(total)
        return true
    }

    /// `bytes` equal `text` exactly (field names arrive lowercase).
    static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        guard bytes.count == text.utf8CodeUnitCount else { return false }
        let other = text.utf8Start
        for i in 0..<bytes.count where bytes[i] != other[i] { return false }
        return true
    }

    // MARK: - Response head

    /// Submits the response head at the front of `queue` (written by the exchange for an
    /// HTTP/1.1 client) as the stream's HEADERS: `:status`, then the fields with lowercase
    /// names, without connection-specific ones. The head's length, or nil when it cannot be
    /// read or nghttp2 refused it.
    func submitResponseHead(_ slot: Int32, _ session: HTTP2Session, _ queue: HTTPExchange.Queue) -> Int32? {
        let e = exchange(slot)
        let bytes = UnsafeRawBufferPointer(start: base(of: queue) + Int(queue.start), count: Int(queue.count))
        // The exchange wrote this head from one it parsed: read its lines, not parse it again.
        guard var head = WrittenResponseHead(bytes) else { return nil }
        var count = 0
        var at = 0
        while let field = head.next() {
            let name = UnsafeRawBufferPointer(rebasing: bytes[field.name])
            guard at + name.count <= Int(Self.httpBufferSize), count < HTTP2Session.maxFields else { return nil }
            let lower = pathScratch + at
            for i in 0..<name.count {
                let b = name[i]
                lower.storeBytes(of: b &- 0x41 < 26 ? b | 0x20 : b, toByteOffset: i, as: UInt8.self)
            }
            let lowered = UnsafeRawBufferPointer(start: lower, count: name.count)
            if Self.isConnectionSpecific(lowered) { continue }
            at += name.count
            let value = UnsafeRawBufferPointer(rebasing: bytes[field.value])
            h2Fields[count] = HTTP2Session.Field(name: lowered, value: value)
            count += 1
        }
        if head.failed { return nil }
        if head.status < 200 {
            // An interim answer (100, 103): HEADERS without END_STREAM; the final head follows.
            let fields = UnsafeBufferPointer(rebasing: h2Fields[0..<count])
            guard session.submitInterim(stream: e.pointee.h2.stream, status: head.status, fields: fields) else {
                return nil
            }
            return head.headLength
        }
        let body = Int(head.headLength) < bytes.count || !e.pointee.respBody.done
        guard
            session.submitResponse(
                stream: e.pointee.h2.stream, status: head.status,
                fields: UnsafeBufferPointer(rebasing: h2Fields[0..<count]), body: body)
        else { return nil }
        e.pointee.h2.headSubmitted = true
        e.pointee.h2.bodyless = !body
        return head.headLength
    }

    /// Fields HTTP/2 does not carry (RFC 9113 §8.2.2).
    static func isConnectionSpecific(_ name: UnsafeRawBufferPointer) -> Bool {
        equals(name, "connection") || equals(name, "keep-alive") || equals(name, "proxy-connection")
            || equals(name, "transfer-encoding") || equals(name, "upgrade")
    }
}

/// A piece of a head being written: static text, bytes, or nothing.
enum HeadPiece: ExpressibleByStringLiteral {
    case none
    case text(StaticString)
    case bytes(UnsafeRawBufferPointer)

    init(stringLiteral value: StaticString) { self = .text(value) }

    var count: Int {
        switch self {
        case .none: 0
        case .text(let s): s.utf8CodeUnitCount
        case .bytes(let b): b.count
        }
    }

    /// Copies the pieces one after the other from `dst`.
    static func write(
        to dst: UnsafeMutableRawPointer, _ p1: HeadPiece, _ p2: HeadPiece, _ p3: HeadPiece, _ p4: HeadPiece,
        _ p5: HeadPiece
    ) {
        _ = p5.copy(to: p4.copy(to: p3.copy(to: p2.copy(to: p1.copy(to: dst)))))
    }

    /// Copies the piece to `dst`; where the next piece goes.
    func copy(to dst: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        switch self {
        case .none:
            return dst
        case .text(let s):
            dst.copyMemory(from: s.utf8Start, byteCount: s.utf8CodeUnitCount)
            return dst + s.utf8CodeUnitCount
        case .bytes(let b):
            if let base = b.baseAddress { dst.copyMemory(from: base, byteCount: b.count) }
            return dst + b.count
        }
    }
}
