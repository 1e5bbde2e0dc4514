/// Parses upstream response heads with the same field rules as requests.
public enum HTTPResponseParser {
    /// Parses a complete head.
    ///
    /// `buffer` starts with the status line and holds at least the whole head; bytes after
    /// the final empty line are ignored. Fields are written to `fields`; offsets point into
    /// `buffer`, which the caller keeps owning. Pure: no allocation, no state, any thread.
    /// The status line is `HTTP/1.x SP 3DIGIT SP reason CRLF`; the SP before an empty reason
    /// may be missing.
    /// - Returns: the head, or 502 for anything malformed or ambiguous: Content-Length fields
    ///   or list members that differ, an empty member, Content-Length with Transfer-Encoding,
    ///   a bad value, chunked twice,
    ///   Transfer-Encoding in HTTP/1.0, too many fields, a version other than 1.0 and 1.1.
    public static func parse(
        _ buffer: UnsafeRawBufferPointer,
        fields: UnsafeMutableBufferPointer<HTTPField>,
        limits: HTTPLimits
    ) -> Result<HTTPResponseHead, HTTPError> {
        guard buffer.count < Int(Int32.max) else { return .failure(.badGateway) }
        let s = Span<UInt8>(_unsafeBytes: buffer)
        let n = s.count
        guard n >= 14, s.equalsExactly(0..<7, "HTTP/1."), s[7] &- 0x30 < 2, s[8] == asciiSP,
            ByteClass.isDigit(s[9]), ByteClass.isDigit(s[10]), ByteClass.isDigit(s[11]), s[9] != 0x30
        else { return .failure(.badGateway) }
        let minor = s[7] &- 0x30
        let status = UInt16(s[9] &- 0x30) &* 100 &+ UInt16(s[10] &- 0x30) &* 10 &+ UInt16(s[11] &- 0x30)
        var i = 12
        if s[i] == asciiSP {
            i &+= 1
            // SAFETY: `buffer` holds `n` >= 14 bytes; the scan stops at `n`.
            i = ByteClass.fieldValueEnd(
                buffer.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self), from: i, to: n)
        }
        guard i &+ 1 < n, s[i] == asciiCR, s[i &+ 1] == asciiLF else { return .failure(.badGateway) }
        i &+= 2

        var section = FieldSection()
        guard section.parse(s, from: i, fields: fields, maxFields: limits.maxFields) == nil,
            section.headLength <= limits.maxHeadBytes
        else { return .failure(.badGateway) }
        if section.transferEncodingSeen {
            guard minor == 1, section.contentLength == nil else { return .failure(.badGateway) }
        }

        var head = HTTPResponseHead(
            minorVersion: minor,
            status: status,
            contentLength: section.contentLength,
            chunked: section.chunkedFinal,
            connectionClose: section.connectionClose,
            connectionKeepAlive: section.connectionKeepAlive,
            upgrade: section.connectionUpgrade && section.upgrade != nil,
            fieldCount: Int32(truncatingIfNeeded: section.fieldCount),
            headLength: Int32(truncatingIfNeeded: section.headLength)
        )
        head.transferEncoding = section.transferEncodingSeen
        return .success(head)
    }
}
