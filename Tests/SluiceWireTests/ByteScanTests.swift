import Testing

@testable import SluiceWire

/// The word-at-a-time scans against plain byte-by-byte statements of the same rules.
@Suite struct ByteScanTests {
    /// The head-end table of `HeadScanner`, one byte at a time.
    struct ReferenceScanner {
        var scanned = 0
        var state: UInt8 = 0

        mutating func scan(_ b: [UInt8], limit: Int) -> HeadScan {
            let end = min(b.count, limit)
            var i = scanned
            var s = state
            while i < end {
                let c = b[i]
                i += 1
                if c == 0x0A {
                    if s != 0 {
                        scanned = i - 1
                        state = s
                        return .complete(Int32(i))
                    }
                    s = 1
                } else if c == 0x0D {
                    s = s == 1 ? 2 : 0
                } else {
                    s = 0
                }
            }
            if i > scanned {
                scanned = i
                state = s
            }
            return b.count >= limit ? .tooLarge : .needMore
        }
    }

    @Test func headScannerMatchesTheByteTable() {
        var g = SplitMix(state: 0x5eed)
        let alphabet: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x61, 0x3A, 0x20]
        for _ in 0..<4000 {
            let input = (0..<Int.random(in: 0...48, using: &g)).map { _ in alphabet.randomElement(using: &g)! }
            let limit = Int.random(in: 1...60, using: &g)
            var cuts = (0..<Int.random(in: 0...4, using: &g)).map { _ in Int.random(in: 0...input.count, using: &g) }
            cuts.sort()
            cuts.append(input.count)
            cuts.append(input.count)  // once more after the end: the same answer
            var scanner = HeadScanner()
            var reference = ReferenceScanner()
            for cut in cuts {
                let prefix = Array(input[0..<cut])
                let got = prefix.withUnsafeBytes { scanner.scan($0, limits: HTTPLimits(maxHeadBytes: limit)) }
                #expect(got == reference.scan(prefix, limit: limit), "\(input) cut at \(cut), limit \(limit)")
            }
        }
    }

    @Test func crlfHeadEndMatchesTheByteSearch() {
        var g = SplitMix(state: 0xc41f)
        let alphabet: [UInt8] = [0x0D, 0x0A, 0x61]
        for _ in 0..<4000 {
            let input = (0..<Int.random(in: 0...40, using: &g)).map { _ in alphabet.randomElement(using: &g)! }
            var end = 3
            while end < input.count
                && !(input[end] == 0x0A && input[end - 1] == 0x0D && input[end - 2] == 0x0A && input[end - 3] == 0x0D)
            {
                end += 1
            }
            let expected = end < input.count ? end : nil
            #expect(input.withUnsafeBytes { HeadScanner.crlfHeadEnd($0) } == expected, "\(input)")
        }
    }

    /// Every byte value at every offset of a field value, short and long (across the
    /// eight-byte words): refused exactly when RFC 9110 refuses it, else kept, OWS trimmed.
    @Test func everyByteAtEveryOffsetOfAValue() {
        for length in [3, 19] {
            for offset in 0..<length {
                for byte in 0...255 {
                    var value = [UInt8](repeating: 0x61, count: length)
                    value[offset] = UInt8(byte)
                    let b = UInt8(byte)
                    let allowed = b == 0x09 || (b >= 0x20 && b != 0x7F)
                    var trimmed = value[...]
                    while let f = trimmed.first, f == 0x20 || f == 0x09 { trimmed.removeFirst() }
                    while let l = trimmed.last, l == 0x20 || l == 0x09 { trimmed.removeLast() }
                    let raw = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-V: ") + value + bytes("\r\nX-W: b\r\n\r\n")
                    let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 8)
                    defer { fields.deallocate() }
                    let got: [UInt8]? = raw.withUnsafeBytes { buffer in
                        guard case .complete(let n) = scanHead(raw, limits: HTTPLimits(), cuts: nil),
                            case .success(let head) = HTTPRequestParser.parse(
                                UnsafeRawBufferPointer(rebasing: buffer[0..<Int(n)]), fields: fields,
                                limits: HTTPLimits())
                        else { return nil }
                        #expect(head.fieldCount == 3)
                        let v = fields[1].value
                        return Array(buffer[Int(v.lowerBound)..<Int(v.upperBound)])
                    }
                    if allowed {
                        #expect(got == Array(trimmed), "byte \(byte) at \(offset) of \(length)")
                    } else {
                        #expect(got == nil, "byte \(byte) at \(offset) of \(length)")
                    }
                }
            }
        }
    }

    static let known: [(String, KnownField)] = [
        ("te", .te), ("host", .host), ("expect", .expect), ("upgrade", .upgrade), ("trailer", .trailer),
        ("connection", .connection), ("keep-alive", .keepAlive), ("content-length", .contentLength),
        ("x-forwarded-for", .xForwardedFor), ("proxy-connection", .proxyConnection),
        ("x-forwarded-host", .xForwardedHost), ("x-forwarded-port", .xForwardedPort),
        ("transfer-encoding", .transferEncoding), ("x-forwarded-proto", .xForwardedProto),
    ]

    /// Known names in random case, and with one byte changed to another tchar, classify as a
    /// byte-by-byte compare (each byte OR 0x20 against the lowercase name) says.
    @Test func knownFieldsMatchTheByteCompare() {
        var g = SplitMix(state: 0x4e41)
        let tchars = Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        func reference(_ name: [UInt8]) -> KnownField {
            for (text, kind) in Self.known where text.utf8.count == name.count {
                if zip(name, text.utf8).allSatisfy({ $0 | 0x20 == $1 }) { return kind }
            }
            return .other
        }
        for _ in 0..<3000 {
            let (text, _) = Self.known.randomElement(using: &g)!
            var name = text.utf8.map { c in Bool.random(using: &g) && c >= 0x61 ? c - 0x20 : c }
            if Bool.random(using: &g) {
                name[Int.random(in: 0..<name.count, using: &g)] = tchars.randomElement(using: &g)!
            }
            let padded = bytes("pad") + name + bytes(":")
            let got = padded.withUnsafeBytes {
                KnownField.classify(Span<UInt8>(_unsafeBytes: $0), 3..<(3 + name.count))
            }
            #expect(got == reference(name), "\(name)")
        }
    }
}
