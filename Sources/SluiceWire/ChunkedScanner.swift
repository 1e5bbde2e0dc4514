/// What `ChunkedScanner.scan` found in the bytes it was given.
public enum ChunkScan: Equatable, Sendable {
    /// All the bytes belong to the message, which continues.
    case consumed(Int32)
    /// The message ends after this many of the bytes (the rest belongs to what follows).
    case end(Int32)
    /// The framing is invalid; the connection must close.
    case error(HTTPError)
}

/// Validates chunked framing (RFC 9112 §7.1) while the bytes are forwarded verbatim:
/// resumable across any split of the input, one byte at a time included.
///
/// States, in the order a chunk goes through them:
///
/// | state             | expects                                                  |
/// | ----------------- | -------------------------------------------------------- |
/// | `sizeFirst`       | a hex digit (an empty size is refused)                   |
/// | `size`            | hex digits (value < 2^62), then ';', BWS or CR           |
/// | `sizeSpace`       | BWS until ';' (whitespace then CR is refused)            |
/// | `ext*`            | `;name[=token|quoted-string]`, BWS before ';' and '='    |
/// | `sizeLF`          | LF (bare CR refused); size 0 → `trailerLine`, else data  |
/// | `data`            | `remaining` bytes, skipped in one step                   |
/// | `dataCR`/`dataLF` | CRLF after the data                                      |
/// | `trailerLine`     | CR (end) or a field name                                 |
/// | `trailer*`        | `name: value CRLF`, names as in heads, no obs-fold       |
/// | `finalLF`         | LF → `.end`                                              |
///
/// A chunk line (size and extensions) may hold up to 4 KiB, the trailer section 16 KiB.
/// After `.end` every call answers `.end(0)`; after `.error` the same error.
public struct ChunkedScanner: Sendable, BitwiseCopyable {
    enum State: UInt8 {
        case sizeFirst, size, sizeSpace
        case extBeforeName, extName, extAfterName, extBeforeValue, extToken, extQuoted, extQuotedEscape, extAfterQuote
        case extAfterValue
        case sizeLF, data, dataCR, dataLF
        case trailerLine, trailerName, trailerValue, trailerLF, finalLF
        case done, failed
    }

    static let maxLineBytes = 4096
    static let maxTrailerBytes = 16384
    static let maxChunkSize: Int64 = 1 << 62

    var state: State = .sizeFirst
    /// The chunk size while reading it, then the data bytes still to come.
    var remaining: Int64 = 0
    /// Bytes of the current chunk line, or of the trailer section.
    var lineBytes = 0

    public init() {}

    /// Starts over for the next message.
    public mutating func reset() {
        self = ChunkedScanner()
    }

    /// Scans the next bytes of the body (those after the ones given to earlier calls).
    /// - Returns: `.consumed(buffer.count)` when the message continues past them,
    ///   `.end(n)` when it ends after `n` of them, `.error(400)` on bad framing.
    public mutating func scan(_ buffer: UnsafeRawBufferPointer) -> ChunkScan {
        let s = Span<UInt8>(_unsafeBytes: buffer)
        let n = s.count
        var i = 0
        while i < n {
            if state == .data {
                let take = Int(min(remaining, Int64(n &- i)))
                i &+= take
                remaining &-= Int64(take)
                if remaining == 0 { state = .dataCR }
                continue
            }
            let b = s[i]
            i &+= 1
            if state.rawValue >= State.trailerLine.rawValue {
                if state == .done { return .end(0) }
                if state == .failed { return .error(.badRequest) }
                lineBytes &+= 1
                guard lineBytes <= Self.maxTrailerBytes, trailer(b) else { return fail() }
                if state == .done { return .end(Int32(truncatingIfNeeded: i)) }
            } else if state.rawValue < State.sizeLF.rawValue {
                lineBytes &+= 1
                guard lineBytes <= Self.maxLineBytes, chunkLine(b) else { return fail() }
            } else {
                switch state {
                case .sizeLF:
                    guard b == asciiLF else { return fail() }
                    lineBytes = 0
                    state = remaining == 0 ? .trailerLine : .data
                case .dataCR:
                    guard b == asciiCR else { return fail() }
                    state = .dataLF
                case .dataLF:
                    guard b == asciiLF else { return fail() }
                    state = .sizeFirst
                default:
                    return fail()
                }
            }
        }
        switch state {
        case .done: return .end(0)
        case .failed: return .error(.badRequest)
        default: return .consumed(Int32(truncatingIfNeeded: n))
        }
    }

    @inline(__always)
    private mutating func fail() -> ChunkScan {
        state = .failed
        return .error(.badRequest)
    }

    /// One byte of a chunk line (size and extensions); false when it is invalid there.
    @inline(__always)
    private mutating func chunkLine(_ b: UInt8) -> Bool {
        switch state {
        case .sizeFirst, .size:
            if let d = ByteClass.hexValue(b) {
                guard remaining < Self.maxChunkSize >> 4 else { return false }
                remaining = remaining << 4 | Int64(d)
                state = .size
                return true
            }
            guard state == .size else { return false }
            return afterValue(b, spaceState: .sizeSpace)
        case .sizeSpace, .extAfterValue:
            // BWS must lead to another extension: whitespace before CR is refused.
            if ByteClass.isOWS(b) { return true }
            guard b == asciiSemicolon else { return false }
            state = .extBeforeName
            return true
        case .extBeforeName:
            if ByteClass.isOWS(b) { return true }
            guard ByteClass.isTchar(b) else { return false }
            state = .extName
            return true
        case .extName:
            if ByteClass.isTchar(b) { return true }
            if b == 0x3D {
                state = .extBeforeValue
                return true
            }
            return afterValue(b, spaceState: .extAfterName)
        case .extAfterName:
            if ByteClass.isOWS(b) { return true }
            if b == 0x3D {
                state = .extBeforeValue
                return true
            }
            guard b == asciiSemicolon else { return false }
            state = .extBeforeName
            return true
        case .extBeforeValue:
            if ByteClass.isOWS(b) { return true }
            if b == asciiQuote {
                state = .extQuoted
                return true
            }
            guard ByteClass.isTchar(b) else { return false }
            state = .extToken
            return true
        case .extToken:
            if ByteClass.isTchar(b) { return true }
            return afterValue(b, spaceState: .extAfterValue)
        case .extQuoted:
            if b == asciiQuote {
                state = .extAfterQuote
            } else if b == asciiBackslash {
                state = .extQuotedEscape
            } else {
                return ByteClass.isFieldValue(b)
            }
            return true
        case .extQuotedEscape:
            guard ByteClass.isFieldValue(b) else { return false }
            state = .extQuoted
            return true
        case .extAfterQuote:
            return afterValue(b, spaceState: .extAfterValue)
        default:
            return false
        }
    }

    /// After a size, an extension name or value: BWS (into `spaceState`), ';' or the CR
    /// ending the line.
    @inline(__always)
    private mutating func afterValue(_ b: UInt8, spaceState: State) -> Bool {
        if ByteClass.isOWS(b) {
            state = spaceState
        } else if b == asciiSemicolon {
            state = .extBeforeName
        } else if b == asciiCR {
            state = .sizeLF
        } else {
            return false
        }
        return true
    }

    /// One byte of the trailer section; false when it is invalid there.
    @inline(__always)
    private mutating func trailer(_ b: UInt8) -> Bool {
        switch state {
        case .trailerLine:
            if b == asciiCR {
                state = .finalLF
            } else if ByteClass.isTchar(b) {
                state = .trailerName
            } else {
                return false
            }
        case .trailerName:
            if b == asciiColon {
                state = .trailerValue
            } else if !ByteClass.isTchar(b) {
                return false
            }
        case .trailerValue:
            if b == asciiCR {
                state = .trailerLF
            } else if !ByteClass.isFieldValue(b) {
                return false
            }
        case .trailerLF, .finalLF:
            guard b == asciiLF else { return false }
            state = state == .finalLF ? .done : .trailerLine
        default:
            return false
        }
        return true
    }
}
