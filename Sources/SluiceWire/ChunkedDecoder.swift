/// Removes chunked framing from a body as it streams, in place: the payload bytes move to
/// the front of the buffer they were read into. For clients that cannot read chunked
/// (HTTP/1.0); the framing itself is validated by `ChunkedScanner` over the same bytes, so
/// this decoder only follows it.
///
/// State table:
///
/// | state       | byte            | next                                    |
/// | ----------- | --------------- | --------------------------------------- |
/// | `.size`     | hex digit       | `.size` (size = size × 16 + digit)      |
/// | `.size`     | `;`             | `.extension`                            |
/// | `.size`, `.extension` | CR    | `.sizeLF`                               |
/// | `.sizeLF`   | LF              | `.data` (size > 0) or `.trailerStart`   |
/// | `.data`     | payload         | `.dataCR` after `size` bytes            |
/// | `.dataCR` → `.dataLF` → `.size`                                           |
/// | `.trailerStart` | CR          | `.finalLF`; other → `.trailerLine`      |
/// | `.trailerLine`  | LF          | `.trailerStart`                         |
/// | `.finalLF`  | LF              | `.done`                                 |
public struct ChunkedDecoder: Sendable, BitwiseCopyable {
    enum State: UInt8 {
        case size, `extension`, sizeLF, data, dataCR, dataLF, trailerStart, trailerLine, finalLF, done
    }

    var state: State = .size
    var size: UInt64 = 0

    public init() {}

    public var isDone: Bool { state == .done }

    /// Decodes `count` bytes at `buffer` in place. Returns how many payload bytes now start
    /// at `buffer`.
    public mutating func decode(_ buffer: UnsafeMutableRawPointer, count: Int) -> Int {
        var trailers = -1
        return decode(buffer, count: count, trailers: &trailers)
    }

    /// Like `decode`, keeping the trailer section: its field lines (each with its CRLF,
    /// without the final empty line) are moved right after the payload bytes, and
    /// `trailers` is set to how many there are. Pass -1 in `trailers` to drop them instead.
    public mutating func decode(_ buffer: UnsafeMutableRawPointer, count: Int, trailers: inout Int) -> Int {
        let keep = trailers >= 0
        var kept = 0
        defer { if keep { trailers = kept } }
        var input = 0
        var output = 0
        while input < count && state != .done {
            let byte = buffer.load(fromByteOffset: input, as: UInt8.self)
            switch state {
            case .size:
                input += 1
                if let digit = Self.hexValue(byte) {
                    size = size &* 16 &+ UInt64(digit)
                } else if byte == 0x3B {
                    state = .extension
                } else if byte == 0x0D {
                    state = .sizeLF
                }
            case .extension:
                input += 1
                if byte == 0x0D { state = .sizeLF }
            case .sizeLF:
                input += 1
                state = size > 0 ? .data : .trailerStart
            case .data:
                let n = Int(min(size, UInt64(count - input)))
                if output != input { (buffer + output).copyMemory(from: buffer + input, byteCount: n) }
                output += n
                input += n
                size -= UInt64(n)
                if size == 0 { state = .dataCR }
            case .dataCR:
                input += 1
                state = .dataLF
            case .dataLF:
                input += 1
                state = .size
            case .trailerStart:
                input += 1
                state = byte == 0x0D ? .finalLF : .trailerLine
                if keep && state == .trailerLine {
                    buffer.storeBytes(of: byte, toByteOffset: output + kept, as: UInt8.self)
                    kept += 1
                }
            case .trailerLine:
                input += 1
                if keep {
                    buffer.storeBytes(of: byte, toByteOffset: output + kept, as: UInt8.self)
                    kept += 1
                }
                if byte == 0x0A { state = .trailerStart }
            case .finalLF:
                input += 1
                state = .done
            case .done:
                break
            }
        }
        return output
    }

    @inline(__always)
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}
