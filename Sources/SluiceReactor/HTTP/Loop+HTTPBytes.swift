import SluiceRouting
import SluiceSystem
import SluiceWire

/// Byte moves and small formatters for the HTTP path.
extension Loop {
    // MARK: - Byte helpers

    /// `n` bytes of the queue were written; an emptied queue starts over at 0.
    @inline(__always)
    func advance(_ queue: inout HTTPExchange.Queue, by n: Int32) {
        queue.start += n
        if queue.isEmpty {
            queue.start = 0
            queue.end = 0
        }
    }

    @inline(__always)
    func releaseIfEmpty(_ queue: inout HTTPExchange.Queue) {
        if queue.buffer >= 0 && queue.isEmpty { release(&queue) }
    }

    /// The first byte of a queue's block, in whichever pool it comes from.
    // SAFETY: the queue holds its block (`buffer` >= 0) from the pool named by `small`.
    @inline(__always)
    func base(of queue: HTTPExchange.Queue) -> UnsafeMutableRawPointer {
        queue.small ? peekBuffers.base(queue.buffer) : httpBuffers.base(queue.buffer)
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

    // SAFETY: parser ranges lie inside the head they were parsed from (checked in debug by rebasing).
    @inline(__always)
    func slice(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int32>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: buffer[Int(range.lowerBound)..<Int(range.upperBound)])
    }

    /// The request's path (with its query) as routes see it: normalised by `PathNormalizer`
    /// into `pathScratch` (as large as a head, so it always fits); the asterisk form and other
    /// targets that are not a path are returned as sent. Nil when the path is malformed (a
    /// `%` not followed by two hex digits): 400. Valid until the next call on this loop.
    // SAFETY: the result points into `pathScratch` or `headBuf`; valid until the next call on this loop.
    func normalizedPath(_ headBuf: UnsafeRawBufferPointer, head: HTTPRequestHead) -> UnsafeRawBufferPointer? {
        let path = slice(headBuf, head.path)
        guard path.isEmpty || path[0] == UInt8(ascii: "/") || path[0] == UInt8(ascii: "?") else { return path }
        let out = UnsafeMutableRawBufferPointer(start: pathScratch, count: Int(Self.httpBufferSize))
        guard let n = PathNormalizer.normalize(path, into: out) else { return nil }
        return UnsafeRawBufferPointer(start: pathScratch, count: n)
    }

    /// The path to send upstream: the normalised path that was routed, without the route's
    /// prefix when it strips one (always starting with "/"). Nil when the path is malformed.
    func forwardedPath(_ headBuf: UnsafeRawBufferPointer, head: HTTPRequestHead, strip: Int32)
        -> UnsafeRawBufferPointer?
    {
        guard let path = normalizedPath(headBuf, head: head) else { return nil }
        guard strip > 0, path.baseAddress == UnsafeRawPointer(pathScratch) else { return path }
        let cut = min(Int(strip), path.count)
        if cut < path.count && path[cut] == UInt8(ascii: "/") {
            return UnsafeRawBufferPointer(rebasing: path[cut...])
        }
        // The prefix's last byte becomes the leading "/" of what follows it.
        pathScratch.storeBytes(of: UInt8(ascii: "/"), toByteOffset: cut - 1, as: UInt8.self)
        return UnsafeRawBufferPointer(start: pathScratch + cut - 1, count: path.count - cut + 1)
    }

    nonisolated(unsafe) static let protoHTTP = UnsafeRawBufferPointer(
        start: UnsafeRawPointer(Loop.protoHTTPStorage), count: 4)
    nonisolated(unsafe) static let protoHTTPStorage: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 4)
        for (i, b) in "http".utf8.enumerated() { p[i] = b }
        return p
    }()

    nonisolated(unsafe) static let protoHTTPS = UnsafeRawBufferPointer(
        start: UnsafeRawPointer(Loop.protoHTTPSStorage), count: 5)
    nonisolated(unsafe) static let protoHTTPSStorage: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 5)
        for (i, b) in "https".utf8.enumerated() { p[i] = b }
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
            // RFC 5952: the longest run of two or more zero groups (the first of equals) is "::".
            func group(_ k: Int) -> UInt64 {
                let half = k < 4 ? e.pointee.peerHi : e.pointee.peerLo
                return half >> UInt64(48 - 16 * (k % 4)) & 0xFFFF
            }
            var bestStart = -1
            var bestLength = 1
            var k = 0
            while k < 8 {
                var end = k
                while end < 8 && group(end) == 0 { end += 1 }
                if end - k > bestLength {
                    bestStart = k
                    bestLength = end - k
                }
                k = end > k ? end : k + 1
            }
            k = 0
            while k < 8 {
                if k == bestStart {
                    put(UInt8(ascii: ":"))
                    put(UInt8(ascii: ":"))
                    k += bestLength
                    continue
                }
                if k > 0 && k != bestStart + bestLength { put(UInt8(ascii: ":")) }
                hex(group(k))
                k += 1
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
