/// Writes the heads the proxy sends on: requests to the upstream, responses to the client,
/// and its own error responses. Pure: the caller owns every buffer; nothing is allocated.
///
/// Fields are copied as `name: value` (the name as sent, the value trimmed), in order, except
/// Content-Length: however many fields and list members carried it (the parser made sure they
/// agree), one `Content-Length: N` line (the first field's name, N in plain decimal) goes out
/// in place of the first, so the next hop never has to resolve a list or a repetition its own
/// way (RFC 9110 §8.6).
/// Hop-by-hop fields are dropped: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
/// Upgrade (unless upgrading) and every field named in Connection, except Content-Length and
/// Transfer-Encoding: the body is forwarded with its framing untouched, so naming those in
/// Connection must not change how the next hop reads it. Finding the fields named in
/// Connection costs one pass over the names and one over the Connection values
/// (`NominatedFields`), not a scan of every Connection value per field.
public enum HTTPHeadWriter {
    /// Writes a request head for the upstream into `out`.
    ///
    /// - The request line: the method, the target's path (`pathOverride` instead if given,
    ///   e.g. after a prefix strip; "/" is put in front of an empty one or one starting with
    ///   '?'), and the client's version (`HTTP/1.1`, or `HTTP/1.0` for an HTTP/1.0 client).
    /// - `Host: <head.host>` first, so an absolute-form target's authority wins.
    /// - Every other field but hop-by-hop ones, the Host field and incoming X-Forwarded-*.
    /// - `X-Forwarded-For: <incoming values joined by ", ">, <clientAddress>`, then
    ///   `X-Forwarded-Proto: <proto>`, `X-Forwarded-Host: <host>`, `X-Forwarded-Port: <port>`.
    /// - When `upgrading`: the Upgrade field kept and `Connection: upgrade`.
    /// - When `requestID` is given: every incoming X-Request-ID field dropped, and
    ///   `X-Request-ID: <requestID>` written before the X-Forwarded-* fields (the caller
    ///   passes a valid incoming value on, or one it made). Nil: fields are copied as they are.
    ///
    /// `source` and `fields` are what `HTTPRequestParser.parse` read and filled for `head`.
    /// - Returns: bytes written, or nil when `out` is too small.
    public static func writeRequest(
        _ head: HTTPRequestHead,
        from source: UnsafeRawBufferPointer,
        fields: UnsafeBufferPointer<HTTPField>,
        pathOverride: UnsafeRawBufferPointer?,
        clientAddress: UnsafeRawBufferPointer,
        proto: UnsafeRawBufferPointer,
        port: UInt16,
        upgrading: Bool,
        requestID: UnsafeRawBufferPointer? = nil,
        trailersTE: Bool = false,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let s = Span<UInt8>(_unsafeBytes: source)
        let fieldCount = min(fields.count, Int(head.fieldCount))
        var o = OutputCursor(out)
        let replaceRequestID = requestID != nil

        o.write(source, head.methodRange)
        o.write(byte: asciiSP)
        if let override = pathOverride {
            if override.isEmpty || override[0] == 0x3F { o.write(byte: asciiSlash) }
            o.write(override)
        } else {
            let p = head.path
            if p.isEmpty || s[Int(p.lowerBound)] == 0x3F { o.write(byte: asciiSlash) }
            o.write(source, p)
        }
        if let host = head.host {
            // An HTTP/1.0 client's request goes up as HTTP/1.0, so that the response cannot
            // be chunked (the client could not decode it).
            o.write(head.minorVersion == 0 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ")
            o.write(source, host)
            o.write("\r\n")
        } else {
            o.write(" HTTP/1.0\r\n")
        }

        var forwardedFor = false
        var lengthWritten = false
        let anyConnection = Self.hasConnectionField(s, fields, fieldCount)
        NominatedFields.forEach(source, fields, count: fieldCount, anyConnection: anyConnection) { k, nominated in
            let s = Span<UInt8>(_unsafeBytes: source)
            let field = fields[k]
            switch KnownField.classify(s, Int(field.name.lowerBound)..<Int(field.name.upperBound)) {
            case .xForwardedFor:
                forwardedFor = true
                return
            case .te:
                // An HTTP/2 upstream takes `te: trailers` (gRPC requires it); TE is
                // hop-by-hop otherwise.
                if trailersTE && Self.mentionsTrailers(s, field) { o.write("te: trailers\r\n") }
                return
            case .host, .xForwardedProto, .xForwardedHost, .xForwardedPort, .connection, .keepAlive,
                .proxyConnection, .trailer:
                return
            case .upgrade:
                if !upgrading { return }
            case .contentLength:
                if !lengthWritten { Self.writeContentLength(head.contentLength, field, from: source, to: &o) }
                lengthWritten = true
                return
            case .transferEncoding:
                break
            case .other:
                if nominated { return }
                if replaceRequestID && Self.isRequestID(s, field) { return }
            case .expect:
                if nominated { return }
            }
            Self.copy(field, from: source, to: &o)
        }

        if let requestID {
            o.write("X-Request-ID: ")
            o.write(requestID)
            o.write("\r\n")
        }
        o.write("X-Forwarded-For: ")
        if forwardedFor {
            for k in 0..<fieldCount {
                let field = fields[k]
                guard !field.value.isEmpty,
                    KnownField.classify(s, Int(field.name.lowerBound)..<Int(field.name.upperBound)) == .xForwardedFor
                else { continue }
                o.write(source, field.value)
                o.write(", ")
            }
        }
        o.write(clientAddress)
        o.write("\r\nX-Forwarded-Proto: ")
        o.write(proto)
        if let host = head.host {
            o.write("\r\nX-Forwarded-Host: ")
            o.write(source, host)
        }
        o.write("\r\nX-Forwarded-Port: ")
        o.write(decimal: UInt64(port))
        o.write(upgrading ? "\r\nConnection: upgrade\r\n\r\n" : "\r\n\r\n")
        return o.result
    }

    /// Writes a response head for the client into `out`.
    ///
    /// The status line with our version (`HTTP/1.1`) and the upstream's status and reason;
    /// every field but hop-by-hop ones (Upgrade kept when `upgrading`); `extraFields` verbatim
    /// (each line CRLF-terminated, e.g. "Set-Cookie: SLUICE=3f2a\r\n"); then
    /// `Connection: upgrade` when `upgrading`, else `Connection: close` when `close`, else
    /// `Connection: keep-alive` when `http10KeepAlive` (an HTTP/1.0 client kept open).
    /// `source` and `fields` are what `HTTPResponseParser.parse` read and filled for `head`.
    /// - Returns: bytes written, or nil when `out` is too small.
    public static func writeResponse(
        _ head: HTTPResponseHead,
        from source: UnsafeRawBufferPointer,
        fields: UnsafeBufferPointer<HTTPField>,
        close: Bool,
        http10KeepAlive: Bool,
        upgrading: Bool,
        extraFields: UnsafeRawBufferPointer?,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let s = Span<UInt8>(_unsafeBytes: source)
        let fieldCount = min(fields.count, Int(head.fieldCount))
        var o = OutputCursor(out)

        // "HTTP/1.x" is replaced; " 3DIGIT[ reason]" is copied up to the CR.
        var lineEnd = 12
        while lineEnd < s.count && s[lineEnd] != asciiCR { lineEnd &+= 1 }
        o.write("HTTP/1.1")
        o.write(source, 8..<Int32(truncatingIfNeeded: lineEnd))
        o.write("\r\n")

        var lengthWritten = false
        let anyConnection = Self.hasConnectionField(s, fields, fieldCount)
        NominatedFields.forEach(source, fields, count: fieldCount, anyConnection: anyConnection) { k, nominated in
            let s = Span<UInt8>(_unsafeBytes: source)
            let field = fields[k]
            switch KnownField.classify(s, Int(field.name.lowerBound)..<Int(field.name.upperBound)) {
            case .connection, .keepAlive, .proxyConnection, .te, .trailer:
                return
            case .upgrade:
                if !upgrading { return }
            case .contentLength:
                if !lengthWritten { Self.writeContentLength(head.contentLength, field, from: source, to: &o) }
                lengthWritten = true
                return
            case .transferEncoding:
                break
            default:
                if nominated { return }
            }
            Self.copy(field, from: source, to: &o)
        }
        if let extra = extraFields { o.write(extra) }
        if upgrading {
            o.write("Connection: upgrade\r\n")
        } else if close {
            o.write("Connection: close\r\n")
        } else if http10KeepAlive {
            o.write("Connection: keep-alive\r\n")
        }
        o.write("\r\n")
        return o.result
    }

    @inline(__always)
    static func copy(_ field: HTTPField, from source: UnsafeRawBufferPointer, to o: inout OutputCursor) {
        o.write(source, field.name)
        o.write(": ")
        o.write(source, field.value)
        o.write("\r\n")
    }

    /// Writes the one Content-Length line: the name of `field` (the first Content-Length
    /// field) as sent, then `length` in decimal, the value the parser found every field and
    /// list member agreeing on. `field` is copied whole only when `length` is nil, which a
    /// head from the parsers never has alongside a Content-Length field.
    @inline(__always)
    static func writeContentLength(
        _ length: Int64?, _ field: HTTPField, from source: UnsafeRawBufferPointer, to o: inout OutputCursor
    ) {
        guard let length, length >= 0 else { return copy(field, from: source, to: &o) }
        o.write(source, field.name)
        o.write(": ")
        o.write(decimal: UInt64(length))
        o.write("\r\n")
    }

    /// Whether a TE field's value names the `trailers` token (any case).
    static func mentionsTrailers(_ s: Span<UInt8>, _ field: HTTPField) -> Bool {
        let start = Int(field.value.lowerBound)
        let end = Int(field.value.upperBound)
        var i = start
        while i + 8 <= end {
            if s.equalsLowercase(i..<i + 8, "trailers") { return true }
            i += 1
        }
        return false
    }

    /// Whether `field` is an X-Request-ID field (any case).
    @inline(__always)
    static func isRequestID(_ s: Span<UInt8>, _ field: HTTPField) -> Bool {
        let name = Int(field.name.lowerBound)..<Int(field.name.upperBound)
        return name.count == 12 && s.equalsLowercase(name, "x-request-id")
    }

    /// The first X-Request-ID field's value when it can be passed on (1 to 64 visible ASCII
    /// bytes: no space, no control, nothing past 0x7E), as a range of `source`; nil when there
    /// is none or the first is not valid (a new one is then made, and every incoming one
    /// dropped).
    public static func validRequestID(
        from source: UnsafeRawBufferPointer, fields: UnsafeBufferPointer<HTTPField>, count: Int
    ) -> Range<Int32>? {
        let s = Span<UInt8>(_unsafeBytes: source)
        for k in 0..<min(fields.count, count) where isRequestID(s, fields[k]) {
            let value = fields[k].value
            guard value.count >= 1 && value.count <= 64 else { return nil }
            for i in Int(value.lowerBound)..<Int(value.upperBound) where s[i] < 0x21 || s[i] > 0x7E { return nil }
            return value
        }
        return nil
    }

    /// True when some Connection field lists a token other than `keep-alive` and `upgrade`
    /// (any case), and so may name a field the writers would otherwise keep. The fields those
    /// two name (Keep-Alive, Upgrade) are dropped or kept by their own rule, never by being
    /// nominated, so a head whose Connection fields list only them needs no nominated set.
    @inline(__always)
    static func hasConnectionField(_ s: Span<UInt8>, _ fields: UnsafeBufferPointer<HTTPField>, _ count: Int) -> Bool {
        for k in 0..<count {
            let f = fields[k]
            guard !f.value.isEmpty,
                KnownField.classify(s, Int(f.name.lowerBound)..<Int(f.name.upperBound)) == .connection
            else { continue }
            var list = ListCursor(Int(f.value.lowerBound)..<Int(f.value.upperBound))
            while let token = list.next(s) {
                if !s.equalsLowercase(token, "keep-alive") && !s.equalsLowercase(token, "upgrade") { return true }
            }
        }
        return false
    }
}
