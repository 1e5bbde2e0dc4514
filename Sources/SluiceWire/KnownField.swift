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
        if r.isEmpty { return .other }
        precondition(r.lowerBound >= 0 && r.upperBound <= s.count, "range outside the span")
        // SAFETY: `r` lies inside the span (checked above); the pointer does not escape.
        return s.withUnsafeBufferPointer { buffer in
            classify(buffer.baseAddress.unsafelyUnwrapped + r.lowerBound, r.count)
        }
    }

    /// Classifies the `count` bytes at `p`, which must be tchar bytes: the length and the first
    /// byte pick the one or two candidates, compared a word at a time.
    @inline(__always)
    static func classify(_ p: UnsafePointer<UInt8>, _ count: Int) -> KnownField {
        switch count {
        case 2: return ByteClass.equalsLowercase(p, 2, "te") ? .te : .other
        case 4: return ByteClass.equalsLowercase(p, 4, "host") ? .host : .other
        case 6: return ByteClass.equalsLowercase(p, 6, "expect") ? .expect : .other
        case 7:
            switch p[0] | 0x20 {
            case 0x75: return ByteClass.equalsLowercase(p, 7, "upgrade") ? .upgrade : .other
            case 0x74: return ByteClass.equalsLowercase(p, 7, "trailer") ? .trailer : .other
            default: return .other
            }
        case 10:
            switch p[0] | 0x20 {
            case 0x63: return ByteClass.equalsLowercase(p, 10, "connection") ? .connection : .other
            case 0x6b: return ByteClass.equalsLowercase(p, 10, "keep-alive") ? .keepAlive : .other
            default: return .other
            }
        case 14: return ByteClass.equalsLowercase(p, 14, "content-length") ? .contentLength : .other
        case 15: return ByteClass.equalsLowercase(p, 15, "x-forwarded-for") ? .xForwardedFor : .other
        case 16:
            switch p[0] | 0x20 {
            case 0x70: return ByteClass.equalsLowercase(p, 16, "proxy-connection") ? .proxyConnection : .other
            case 0x78:
                if ByteClass.equalsLowercase(p, 16, "x-forwarded-host") { return .xForwardedHost }
                return ByteClass.equalsLowercase(p, 16, "x-forwarded-port") ? .xForwardedPort : .other
            default: return .other
            }
        case 17:
            switch p[0] | 0x20 {
            case 0x74: return ByteClass.equalsLowercase(p, 17, "transfer-encoding") ? .transferEncoding : .other
            case 0x78: return ByteClass.equalsLowercase(p, 17, "x-forwarded-proto") ? .xForwardedProto : .other
            default: return .other
            }
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
