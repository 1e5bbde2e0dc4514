/// What the field lines of a head say about framing and the connection, gathered by one pass
/// shared by the request and the response parser.
struct FieldSection {
    enum Failure {
        /// A line breaks the field syntax (bad name, whitespace before the colon, obs-fold,
        /// a control byte, a bare CR or LF, no final empty line).
        case malformed
        /// More fields than the limit or the caller's array.
        case tooMany
        /// Content-Length or Transfer-Encoding that leaves the length ambiguous.
        case badFraming
    }

    var fieldCount = 0
    /// Offset just past the final empty line.
    var headLength = 0
    var hostCount = 0
    var host: Range<Int>?
    /// The one length every Content-Length field and list member agrees on; nil when absent.
    var contentLength: Int64?
    var transferEncodingSeen = false
    var chunkedSeen = false
    /// The last coding seen was `chunked`.
    var chunkedFinal = false
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    var upgrade: Range<Int>?
    var expectContinue = false

    /// Parses the field lines from `start` to the final empty line, storing each into
    /// `fields` (at most `maxFields` of them).
    /// - Returns: the failure, or nil when `self` holds a well-formed section.
    @inline(__always)
    mutating func parse(
        _ s: Span<UInt8>,
        from start: Int,
        fields: UnsafeMutableBufferPointer<HTTPField>,
        maxFields: Int
    ) -> Failure? {
        let n = s.count
        guard start < n else { return .malformed }
        // SAFETY: `p` is read only inside the closure and only below `n`, the span's count;
        // every index is checked against `n` before it is read.
        return s.withUnsafeBufferPointer { buffer in
            parse(s, buffer.baseAddress.unsafelyUnwrapped, n, from: start, fields: fields, maxFields: maxFields)
        }
    }

    @inline(__always)
    private mutating func parse(
        _ s: Span<UInt8>,
        _ p: UnsafePointer<UInt8>,
        _ n: Int,
        from start: Int,
        fields: UnsafeMutableBufferPointer<HTTPField>,
        maxFields: Int
    ) -> Failure? {
        let capacity = min(maxFields, fields.count)
        var i = start
        while true {
            guard i < n else { return .malformed }
            if p[i] == asciiCR {
                guard i &+ 1 < n, p[i &+ 1] == asciiLF else { return .malformed }
                headLength = i &+ 2
                return nil
            }
            let nameStart = i
            while i < n && ByteClass.isTchar(p[i]) { i &+= 1 }
            // An empty name, obs-fold (a line opening with SP/HTAB), whitespace before the
            // colon and a bare LF all stop here.
            guard i > nameStart, i < n, p[i] == asciiColon else { return .malformed }
            let nameEnd = i
            i &+= 1
            while i < n && ByteClass.isOWS(p[i]) { i &+= 1 }
            let valueStart = i
            i = ByteClass.fieldValueEnd(p, from: i, to: n)
            var valueEnd = i
            while valueEnd > valueStart && ByteClass.isOWS(p[valueEnd &- 1]) { valueEnd &-= 1 }
            guard i &+ 1 < n, p[i] == asciiCR, p[i &+ 1] == asciiLF else { return .malformed }
            i &+= 2
            guard fieldCount < capacity else { return .tooMany }
            fields[fieldCount] = HTTPField(
                name: Int32(truncatingIfNeeded: nameStart)..<Int32(truncatingIfNeeded: nameEnd),
                value: Int32(truncatingIfNeeded: valueStart)..<Int32(truncatingIfNeeded: valueEnd)
            )
            fieldCount &+= 1
            let kind = KnownField.classify(p + nameStart, nameEnd &- nameStart)
            if kind != .other, let failure = interpret(s, kind, value: valueStart..<valueEnd) {
                return failure
            }
        }
    }

    @inline(__always)
    private mutating func interpret(_ s: Span<UInt8>, _ kind: KnownField, value: Range<Int>) -> Failure? {
        switch kind {
        case .host:
            hostCount &+= 1
            if host == nil { host = value }
        case .contentLength:
            guard let length = Self.contentLength(s, value) else { return .badFraming }
            if let previous = contentLength, previous != length { return .badFraming }
            contentLength = length
        case .transferEncoding:
            transferEncodingSeen = true
            var list = ListCursor(value)
            var any = false
            while let element = list.next(s) {
                any = true
                var j = element.lowerBound
                while j < element.upperBound && ByteClass.isTchar(s[j]) { j &+= 1 }
                let coding = element.lowerBound..<j
                guard !coding.isEmpty else { return .badFraming }
                let isChunked = s.equalsLowercase(coding, "chunked")
                if j < element.upperBound {
                    // Parameters: only after a coding that takes them, never after chunked.
                    while j < element.upperBound && ByteClass.isOWS(s[j]) { j &+= 1 }
                    guard !isChunked, j < element.upperBound, s[j] == asciiSemicolon else { return .badFraming }
                }
                if isChunked {
                    guard !chunkedSeen else { return .badFraming }
                    chunkedSeen = true
                }
                chunkedFinal = isChunked
            }
            guard any else { return .badFraming }
        case .connection:
            var list = ListCursor(value)
            while let token = list.next(s) {
                switch token.count {
                case 5: if s.equalsLowercase(token, "close") { connectionClose = true }
                case 7: if s.equalsLowercase(token, "upgrade") { connectionUpgrade = true }
                case 10: if s.equalsLowercase(token, "keep-alive") { connectionKeepAlive = true }
                default: break
                }
            }
        case .upgrade:
            if upgrade == nil { upgrade = value }
        case .expect:
            if s.equalsLowercase(value, "100-continue") { expectContinue = true }
        default:
            break
        }
        return nil
    }

    /// The value of a Content-Length field (RFC 9110 §8.6, RFC 9112 §6.3), as HAProxy reads
    /// it: one decimal number, or a comma-separated list of numbers that are all equal (a
    /// sender may repeat the value; leading zeros do not make two members differ). OWS may
    /// surround each member.
    /// - Returns: the length; nil for an empty value, an empty member (`,5`, `5,`, `5,,5`),
    ///   members that differ, anything but digits in a member, or a number over `Int64.max`.
    ///   Pure, no allocation.
    @inline(__always)
    static func contentLength(_ s: Span<UInt8>, _ value: Range<Int>) -> Int64? {
        var result: Int64?
        var j = value.lowerBound
        let end = value.upperBound
        while true {
            while j < end && ByteClass.isOWS(s[j]) { j &+= 1 }
            var v: Int64 = 0
            let digitsStart = j
            while j < end && ByteClass.isDigit(s[j]) {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(s[j] &- 0x30))
                guard !o1, !o2 else { return nil }
                v = a
                j &+= 1
            }
            guard j > digitsStart else { return nil }
            if let r = result, r != v { return nil }
            result = v
            while j < end && ByteClass.isOWS(s[j]) { j &+= 1 }
            if j == end { return result }
            guard s[j] == asciiComma else { return nil }
            j &+= 1
        }
    }
}
