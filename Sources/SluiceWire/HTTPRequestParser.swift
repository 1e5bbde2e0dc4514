/// Parses request heads (RFC 9112 §3 and §5, strictly: every ambiguity a request smuggling
/// attack could use is refused).
public enum HTTPRequestParser {
    /// Parses a complete head.
    ///
    /// `buffer` starts with the request line and holds at least the whole head (as found by
    /// `HeadScanner`); bytes after the final empty line are ignored. Fields are written to
    /// `fields` in order; offsets in the result and in `fields` point into `buffer`, which the
    /// caller keeps owning. Pure: no allocation, no state, any thread.
    /// - Returns: the head, or the status to answer with: 400 (malformed, bad Host, ambiguous
    ///   length: Content-Length fields or list members that differ, an empty member, or
    ///   Content-Length with Transfer-Encoding; Transfer-Encoding in HTTP/1.0 or not ending in
    ///   chunked), 414 (target over
    ///   `limits.maxTargetBytes`), 431 (more than `limits.maxFields` fields or than `fields`
    ///   holds, or a head over `limits.maxHeadBytes`), 505 (HTTP/x.y other than 1.0 and 1.1).
    public static func parse(
        _ buffer: UnsafeRawBufferPointer,
        fields: UnsafeMutableBufferPointer<HTTPField>,
        limits: HTTPLimits
    ) -> Result<HTTPRequestHead, HTTPError> {
        guard buffer.count < Int(Int32.max) else { return .failure(.fieldsTooLarge) }
        let s = Span<UInt8>(_unsafeBytes: buffer)
        let n = s.count
        guard n > 0 else { return .failure(.badRequest) }
        // SAFETY: `buffer` is non-empty; `p` is read only below `n`, its count.
        let p = buffer.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self)

        // method SP
        var i = 0
        while i < n && ByteClass.isTchar(p[i]) { i &+= 1 }
        guard i > 0, i < n, s[i] == asciiSP else { return .failure(.badRequest) }
        let methodRange = 0..<i
        let method = Self.method(s, methodRange)
        i &+= 1

        // request-target SP
        let targetStart = i
        while i < n && ByteClass.isTarget(p[i]) { i &+= 1 }
        let target = targetStart..<i
        guard target.count <= limits.maxTargetBytes else { return .failure(.uriTooLong) }
        guard !target.isEmpty, i < n, s[i] == asciiSP else { return .failure(.badRequest) }
        i &+= 1

        // HTTP-version CRLF
        guard n &- i >= 10, s[i] == 0x48, s[i &+ 1] == 0x54, s[i &+ 2] == 0x54, s[i &+ 3] == 0x50,
            s[i &+ 4] == asciiSlash, ByteClass.isDigit(s[i &+ 5]), s[i &+ 6] == 0x2E,
            ByteClass.isDigit(s[i &+ 7]), s[i &+ 8] == asciiCR, s[i &+ 9] == asciiLF
        else { return .failure(.badRequest) }
        guard s[i &+ 5] == 0x31, s[i &+ 7] <= 0x31 else { return .failure(.versionNotSupported) }
        let minor = s[i &+ 7] &- 0x30
        i &+= 10

        var section = FieldSection()
        switch section.parse(s, from: i, fields: fields, maxFields: limits.maxFields) {
        case .malformed?, .badFraming?: return .failure(.badRequest)
        case .tooMany?: return .failure(.fieldsTooLarge)
        case nil: break
        }
        guard section.headLength <= limits.maxHeadBytes else { return .failure(.fieldsTooLarge) }

        // Framing (RFC 9112 §6.1, §6.3).
        if section.transferEncodingSeen {
            guard minor == 1, section.contentLength == nil, section.chunkedFinal else {
                return .failure(.badRequest)
            }
        }

        // Target form (RFC 9112 §3.2) and the authority it names.
        var path = target
        var authority: Range<Int>?
        let first = s[targetStart]
        if first == asciiSlash {
            guard method != .connect else { return .failure(.badRequest) }
        } else if target.count == 1 && first == 0x2A {
            guard method == .options else { return .failure(.badRequest) }
        } else if let authorityStart = Self.absoluteFormAuthorityStart(s, target) {
            guard method != .connect else { return .failure(.badRequest) }
            var j = authorityStart
            while j < target.upperBound && s[j] != asciiSlash && s[j] != 0x3F { j &+= 1 }
            guard Authority.isValid(s, authorityStart..<j, requirePort: false) else { return .failure(.badRequest) }
            authority = authorityStart..<j
            path = j..<target.upperBound
        } else if method == .connect {
            guard Authority.isValid(s, target, requirePort: true) else { return .failure(.badRequest) }
            authority = target
        } else {
            return .failure(.badRequest)
        }

        // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0, always a
        // valid authority (empty only when the target carries the authority).
        guard section.hostCount <= 1, minor == 0 || section.hostCount == 1 else { return .failure(.badRequest) }
        if let hostField = section.host {
            guard Authority.isValid(s, hostField, requirePort: false) || (hostField.isEmpty && authority != nil)
            else { return .failure(.badRequest) }
        }
        let host = authority ?? section.host

        return .success(
            HTTPRequestHead(
                method: method,
                methodRange: Self.narrow(methodRange),
                target: Self.narrow(target),
                path: Self.narrow(path),
                minorVersion: minor,
                host: host.map(Self.narrow),
                contentLength: section.contentLength,
                chunked: section.chunkedFinal,
                connectionClose: section.connectionClose,
                connectionKeepAlive: section.connectionKeepAlive,
                connectionUpgrade: section.connectionUpgrade,
                upgrade: section.upgrade.map(Self.narrow),
                expectContinue: section.expectContinue,
                fieldCount: Int32(truncatingIfNeeded: section.fieldCount),
                headLength: Int32(truncatingIfNeeded: section.headLength)
            )
        )
    }

    @inline(__always)
    static func narrow(_ r: Range<Int>) -> Range<Int32> {
        Int32(truncatingIfNeeded: r.lowerBound)..<Int32(truncatingIfNeeded: r.upperBound)
    }

    /// The offset of the authority in an `http://` or `https://` target (scheme
    /// case-insensitive), else nil.
    @inline(__always)
    static func absoluteFormAuthorityStart(_ s: Span<UInt8>, _ target: Range<Int>) -> Int? {
        let t = target.lowerBound
        guard target.count >= 7, s.equalsLowercase(t..<(t &+ 4), "http") else { return nil }
        var j = t &+ 4
        if s[j] | 0x20 == 0x73 { j &+= 1 }  // "s"
        guard target.upperBound &- j >= 3, s[j] == asciiColon, s[j &+ 1] == asciiSlash, s[j &+ 2] == asciiSlash
        else { return nil }
        return j &+ 3
    }

    /// The method named by `s[r]`, compared case-sensitively (RFC 9110 §9.1).
    @inline(__always)
    static func method(_ s: Span<UInt8>, _ r: Range<Int>) -> HTTPMethod {
        switch r.count {
        case 3:
            if s.equalsExactly(r, "GET") { return .get }
            if s.equalsExactly(r, "PUT") { return .put }
        case 4:
            if s.equalsExactly(r, "POST") { return .post }
            if s.equalsExactly(r, "HEAD") { return .head }
        case 5:
            if s.equalsExactly(r, "PATCH") { return .patch }
            if s.equalsExactly(r, "TRACE") { return .trace }
        case 6:
            if s.equalsExactly(r, "DELETE") { return .delete }
        case 7:
            if s.equalsExactly(r, "OPTIONS") { return .options }
            if s.equalsExactly(r, "CONNECT") { return .connect }
        default: break
        }
        return .other
    }
}

extension Span where Element == UInt8 {
    /// True when `self[range]` equals `bytes` exactly.
    @inline(__always)
    func equalsExactly(_ range: Range<Int>, _ bytes: StaticString) -> Bool {
        let n = bytes.utf8CodeUnitCount
        guard range.count == n else { return false }
        let p = bytes.utf8Start
        var i = 0
        while i < n {
            if self[range.lowerBound &+ i] != p[i] { return false }
            i &+= 1
        }
        return true
    }
}
