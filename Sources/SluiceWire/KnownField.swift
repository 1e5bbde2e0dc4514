/// The field names the parsers and the head writer act on, recognised by length first and
/// then by a case-insensitive compare against static bytes.
enum KnownField: UInt8 {
    case other
    case host, contentLength, transferEncoding, connection, upgrade, expect
    case keepAlive, proxyConnection, te, trailer
    case xForwardedFor, xForwardedProto, xForwardedHost, xForwardedPort

    /// Classifies the name at `range`, which must hold only tchar bytes.
    @inline(__always)
    static func classify(_ s: Span<UInt8>, _ r: Range<Int>) -> KnownField {
        switch r.count {
        case 2: return s.equalsLowercase(r, "te") ? .te : .other
        case 4: return s.equalsLowercase(r, "host") ? .host : .other
        case 6: return s.equalsLowercase(r, "expect") ? .expect : .other
        case 7:
            if s.equalsLowercase(r, "upgrade") { return .upgrade }
            return s.equalsLowercase(r, "trailer") ? .trailer : .other
        case 10:
            if s.equalsLowercase(r, "connection") { return .connection }
            return s.equalsLowercase(r, "keep-alive") ? .keepAlive : .other
        case 14: return s.equalsLowercase(r, "content-length") ? .contentLength : .other
        case 15: return s.equalsLowercase(r, "x-forwarded-for") ? .xForwardedFor : .other
        case 16:
            if s.equalsLowercase(r, "proxy-connection") { return .proxyConnection }
            if s.equalsLowercase(r, "x-forwarded-host") { return .xForwardedHost }
            return s.equalsLowercase(r, "x-forwarded-port") ? .xForwardedPort : .other
        case 17:
            if s.equalsLowercase(r, "transfer-encoding") { return .transferEncoding }
            return s.equalsLowercase(r, "x-forwarded-proto") ? .xForwardedProto : .other
        default: return .other
        }
    }
}

/// Walks the elements of a comma-separated field value (RFC 9110 §5.6.1): each element is
/// returned trimmed of OWS, empty elements are skipped, commas inside quoted strings do not
/// split.
struct ListCursor {
    var position: Int
    let end: Int

    init(_ range: Range<Int>) {
        position = range.lowerBound
        end = range.upperBound
    }

    /// The next non-empty element, or nil at the end of the value.
    @inline(__always)
    mutating func next(_ s: Span<UInt8>) -> Range<Int>? {
        while position < end {
            let start = position
            var quoted = false
            var i = position
            while i < end {
                let b = s[i]
                if quoted {
                    if b == asciiBackslash {
                        i &+= 1
                    } else if b == asciiQuote {
                        quoted = false
                    }
                } else if b == asciiQuote {
                    quoted = true
                } else if b == asciiComma {
                    break
                }
                i &+= 1
            }
            if i > end { i = end }
            position = i < end ? i &+ 1 : end
            let element = s.trimmingOWS(start..<i)
            if !element.isEmpty { return element }
        }
        return nil
    }
}
