import SluiceRouting
import SluiceWire

/// Small byte formatters for the HTTP path: stickiness cookies and the default backend's
/// answer. They write into loop-owned memory; no String is made per request.
extension Loop {
    /// The value of the service's stickiness cookie in the request's Cookie fields, if any.
    func findCookie(_ service: Service, head: HTTPRequestHead, headBuf: UnsafeRawBufferPointer)
        -> UnsafeRawBufferPointer?
    {
        let name = service.cookieName ?? Service.defaultCookieName
        for index in 0..<Int(head.fieldCount) {
            let field = fieldStore[index]
            guard Self.equalsIgnoringCase(slice(headBuf, field.name), Self.cookieFieldName) else { continue }
            let value = slice(headBuf, field.value)
            var i = 0
            while i < value.count {
                while i < value.count && (value[i] == 0x20 || value[i] == 0x3B) { i += 1 }
                var end = i
                while end < value.count && value[end] != 0x3B { end += 1 }
                // One "name=value" pair at i..<end.
                if end - i > name.count, value[i + name.count] == UInt8(ascii: "="),
                    name.withUnsafeBytes({
                        Self.equalsBytes(UnsafeRawBufferPointer(rebasing: value[i..<(i + name.count)]), $0)
                    })
                {
                    var valueEnd = end
                    while valueEnd > i + name.count + 1 && value[valueEnd - 1] == 0x20 { valueEnd -= 1 }
                    return UnsafeRawBufferPointer(rebasing: value[(i + name.count + 1)..<valueEnd])
                }
                i = end
            }
        }
        return nil
    }

    /// "Set-Cookie: NAME=VALUE; Path=/; HttpOnly\r\n" for the slot's endpoint, as its snapshot
    /// precomputed it (the value a hash of service name and address, stable across tables);
    /// its length. No cookie when the field would not fit the scratch area (configurations
    /// bound names to `Service.maxCookieNameLength`).
    func formatSetCookie(_ slot: Int32, into out: UnsafeMutableRawPointer) -> Int {
        let c = table.pointer(slot)
        let field = routed(c).setCookieField(for: Int(c.pointee.endpoint))
        guard field.count <= Self.scratchSize / 2 else { return 0 }
        field.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return field.count
    }

    /// A complete response with a text body; returns its length. The body is cut to fit the
    /// buffer.
    func writeSimpleResponse(
        status: UInt16, body: [UInt8], close: Bool, http10KeepAlive: Bool, into out: UnsafeMutableRawPointer
    ) -> Int {
        var n = 0
        func put(_ text: StaticString) {
            (out + n).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
            n += text.utf8CodeUnitCount
        }
        func decimal(_ value: Int) { Self.putDecimal(value, out, &n) }
        let length = min(body.count, Int(Self.httpBufferSize) - 512)
        put("HTTP/1.1 ")
        decimal(Int(status))
        put(" ")
        put(Self.reason(status))
        put("\r\nContent-Type: text/plain\r\nContent-Length: ")
        decimal(length)
        if close { put("\r\nConnection: close") } else if http10KeepAlive { put("\r\nConnection: keep-alive") }
        put("\r\n\r\n")
        body.withUnsafeBytes { (out + n).copyMemory(from: $0.baseAddress!, byteCount: length) }
        return n + length
    }

    /// "Strict-Transport-Security: max-age=N\r\n" of the request's route; its length (0 when
    /// a reload renumbered the table meanwhile).
    func formatHSTS(_ slot: Int32, into out: UnsafeMutableRawPointer) -> Int {
        let e = exchange(slot)
        let routes = routed(table.pointer(slot)).routeTables[Int(e.pointee.routes)].routes
        guard Int(e.pointee.hstsRoute) < routes.count, let field = routes[Int(e.pointee.hstsRoute)].hstsField else {
            return 0
        }
        field.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return field.count
    }

    /// A 308 response to https://HOST[:PORT]TARGET with an empty body; its length, or 0 when
    /// it does not fit in `capacity`.
    func writeRedirect(
        port: UInt16, host: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, close: Bool, http10KeepAlive: Bool,
        into out: UnsafeMutableRawPointer, capacity: Int
    ) -> Int {
        // The Host value without its port (a bracketed IPv6 literal keeps its brackets).
        var nameEnd = host.count
        if let colon = host.lastIndex(of: UInt8(ascii: ":")), !host[colon...].contains(UInt8(ascii: "]")) {
            nameEnd = colon
        }
        let needed = 160 + nameEnd + target.count
        guard needed <= capacity else { return 0 }
        var n = 0
        func put(_ text: StaticString) {
            (out + n).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
            n += text.utf8CodeUnitCount
        }
        func put(_ bytes: UnsafeRawBufferPointer) {
            if bytes.count > 0 { (out + n).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            n += bytes.count
        }
        put("HTTP/1.1 308 Permanent Redirect\r\nLocation: https://")
        // Host names are case-insensitive: the canonical lower case, as the route matched it.
        for i in 0..<nameEnd {
            let b = host[i]
            out.storeBytes(of: b >= 0x41 && b <= 0x5A ? b | 0x20 : b, toByteOffset: n, as: UInt8.self)
            n += 1
        }
        if port != 443 {
            put(":")
            Self.putDecimal(Int(port), out, &n)
        }
        if target.isEmpty { put("/") } else { put(target) }
        put("\r\nContent-Length: 0")
        if close { put("\r\nConnection: close") } else if http10KeepAlive { put("\r\nConnection: keep-alive") }
        put("\r\n\r\n")
        return n
    }

    /// Writes `value` (0 up to 8 digits) in decimal at `out + n`; advances `n`.
    @inline(__always)
    static func putDecimal(_ value: Int, _ out: UnsafeMutableRawPointer, _ n: inout Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[count] = UInt8(48 + v % 10)
                v /= 10
                count += 1
            } while v > 0 && count < 8
            for k in (0..<count).reversed() {
                out.storeBytes(of: d[k], toByteOffset: n, as: UInt8.self)
                n += 1
            }
        }
    }

    static func reason(_ status: UInt16) -> StaticString {
        switch status {
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 410: return "Gone"
        case 421: return "Misdirected Request"
        case 429: return "Too Many Requests"
        case 451: return "Unavailable For Legal Reasons"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return status < 500 ? "Client Error" : "Server Error"
        }
    }

    static let cookieFieldName = Array("cookie".utf8)

    @inline(__always)
    static func equalsIgnoringCase(_ a: UnsafeRawBufferPointer, _ lowercase: [UInt8]) -> Bool {
        guard a.count == lowercase.count else { return false }
        for i in 0..<a.count where a[i] | 0x20 != lowercase[i] { return false }
        return true
    }

    @inline(__always)
    static func equalsBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a[i] != b[i] { return false }
        return true
    }
}
