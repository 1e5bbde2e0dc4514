import Testing

@testable import SluiceWire

func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16 = 0) -> ProxyAddress {
    .ipv4(UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d), port: port)
}

func v6(_ groups: [UInt16], port: UInt16 = 0) -> ProxyAddress {
    precondition(groups.count == 8)
    let half = { (k: Int) in groups[k..<(k + 4)].reduce(UInt64(0)) { $0 << 16 | UInt64($1) } }
    return .ipv6(hi: half(0), lo: half(4), port: port)
}

func writeProxy(
    v2: Bool, _ source: ProxyAddress, _ destination: ProxyAddress, capacity: Int = 256
) -> [UInt8]? {
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(capacity, 1), alignment: 1)
    defer { out.deallocate() }
    let sized = UnsafeMutableRawBufferPointer(rebasing: out[0..<capacity])
    let n =
        v2
        ? ProxyHeader.writeV2(source: source, destination: destination, into: sized)
        : ProxyHeader.writeV1(source: source, destination: destination, into: sized)
    return n.map { Array(sized[0..<$0]) }
}

func parseProxy(_ input: [UInt8]) -> ProxyParse {
    input.withUnsafeBytes { ProxyHeader.parse($0) }
}

/// The whole input's answer, then every prefix: `.needMore` until the first that decides,
/// the whole input's answer from there on.
func expectProxy(
    _ input: [UInt8], _ expected: ProxyParse, decidedBy: Int? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(parseProxy(input) == expected, sourceLocation: sourceLocation)
    var decided: Int?
    for end in 0..<input.count {
        let r = parseProxy(Array(input[0..<end]))
        if decided == nil && r != .needMore { decided = end }
        if decided != nil && r != expected {
            Issue.record("prefix of \(end) bytes: \(r)", sourceLocation: sourceLocation)
            return
        }
    }
    if let decidedBy {
        #expect((decided ?? input.count) == decidedBy, "decided after", sourceLocation: sourceLocation)
    } else if case .header(let length, _, _, _) = expected {
        #expect((decided ?? input.count) == Int(length), "decided after", sourceLocation: sourceLocation)
    }
}

func header(_ text: String, _ source: ProxyAddress?, _ destination: ProxyAddress?) -> ProxyParse {
    .header(length: Int32(text.utf8.count), source: source, destination: destination, local: false)
}

let signatureV2: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

@Suite struct ProxyHeaderTests {
    @Test func writeV1IPv4() {
        let line = "PROXY TCP4 192.0.2.1 10.0.0.5 56324 443\r\n"
        let written = writeProxy(v2: false, v4(192, 0, 2, 1, port: 56324), v4(10, 0, 0, 5, port: 443))
        #expect(written == bytes(line))
        let edge = writeProxy(v2: false, v4(0, 0, 0, 0, port: 0), v4(255, 255, 255, 255, port: 65535))
        #expect(edge == bytes("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"))
    }

    static let rfc5952: [([UInt16], String)] = [
        ([0x2001, 0xDB8, 0, 0, 0, 0, 0, 1], "2001:db8::1"),
        ([0, 0, 0, 0, 0, 0, 0, 1], "::1"),
        ([0, 0, 0, 0, 0, 0, 0, 0], "::"),
        ([1, 0, 0, 0, 0, 0, 0, 0], "1::"),
        ([0x2001, 0xDB8, 0, 1, 1, 1, 1, 1], "2001:db8:0:1:1:1:1:1"),
        ([0x2001, 0, 0, 1, 0, 0, 0, 1], "2001:0:0:1::1"),
        ([0x2001, 0xDB8, 0, 0, 1, 0, 0, 1], "2001:db8::1:0:0:1"),
        ([0xFE80, 0, 0, 0, 0xABCD, 0xEF, 0x1234, 0xF00], "fe80::abcd:ef:1234:f00"),
        ([0, 0, 0, 0, 0, 0xFFFF, 0xC000, 0x0201], "::ffff:192.0.2.1"),
        ([0, 0, 0, 0, 0, 0, 0xC000, 0x0201], "::c000:201"),
        ([1, 2, 3, 4, 5, 6, 7, 8], "1:2:3:4:5:6:7:8"),
        ([1, 0, 2, 0, 3, 0, 4, 0], "1:0:2:0:3:0:4:0"),
        ([0, 1, 0, 0, 0, 2, 0, 0], "0:1::2:0:0"),
    ]

    @Test(arguments: 0..<rfc5952.count)
    func writeV1IPv6(_ k: Int) {
        let (groups, text) = Self.rfc5952[k]
        let line = "PROXY TCP6 \(text) ::1 1 2\r\n"
        let written = writeProxy(v2: false, v6(groups, port: 1), v6([0, 0, 0, 0, 0, 0, 0, 1], port: 2))
        #expect(written.map { String(decoding: $0, as: UTF8.self) } == line)
        expectProxy(bytes(line), header(line, v6(groups, port: 1), v6([0, 0, 0, 0, 0, 0, 0, 1], port: 2)))
    }

    @Test func longestV1Line() {
        let all = [UInt16](repeating: 0xFFFF, count: 8)
        let line = writeProxy(v2: false, v6(all, port: 65535), v6(all, port: 65535))!
        #expect(line.count == 104)
        expectProxy(
            line, .header(length: 104, source: v6(all, port: 65535), destination: v6(all, port: 65535), local: false))
    }

    @Test func mixedFamiliesAreWrittenAsIPv6() {
        let source = v4(192, 0, 2, 1, port: 5)
        let destination = v6([0x2001, 0xDB8, 0, 0, 0, 0, 0, 1], port: 6)
        #expect(writeProxy(v2: false, source, destination) == bytes("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 5 6\r\n"))
        let mapped = v6([0, 0, 0, 0, 0, 0xFFFF, 0xC000, 0x0201], port: 5)
        let v2 = writeProxy(v2: true, source, destination)!
        #expect(parseProxy(v2) == .header(length: 52, source: mapped, destination: destination, local: false))
    }

    @Test func writeV2Bytes() {
        let written = writeProxy(v2: true, v4(192, 0, 2, 1, port: 0x1234), v4(10, 0, 0, 5, port: 443))
        let expected =
            signatureV2 + [0x21, 0x11, 0, 12, 192, 0, 2, 1, 10, 0, 0, 5, 0x12, 0x34, 0x01, 0xBB]
        #expect(written == expected)
        let six = writeProxy(
            v2: true, v6([0x2001, 0xDB8, 0, 0, 0, 0, 0, 1], port: 1), v6([0, 0, 0, 0, 0, 0, 0, 2], port: 2))!
        #expect(six.count == 52)
        #expect(Array(six[12..<16]) == [0x21, 0x21, 0, 36])
        #expect(Array(six[16..<20]) == [0x20, 0x01, 0x0D, 0xB8])
        #expect(six[31] == 1 && six[47] == 2)
        #expect(Array(six[48..<52]) == [0, 1, 0, 2])
    }

    @Test func writersRefuseSmallBuffers() {
        let pairs = [
            (v4(1, 2, 3, 4, port: 5), v4(6, 7, 8, 9, port: 10)),
            (v6([0x2001, 0xDB8, 0, 0, 0, 0, 0, 1], port: 443), v6([1, 2, 3, 4, 5, 6, 7, 8], port: 65535)),
        ]
        for (s, d) in pairs {
            for v2 in [false, true] {
                let full = writeProxy(v2: v2, s, d)!
                #expect(writeProxy(v2: v2, s, d, capacity: full.count) == full)
                for capacity in 0..<full.count {
                    #expect(writeProxy(v2: v2, s, d, capacity: capacity) == nil)
                }
            }
        }
    }

    @Test func roundTrips() {
        var g = SplitMix(state: 42)
        for k in 0..<400 {
            let port = { UInt16.random(in: 0...UInt16.max, using: &g) }
            let makeV6 = k % 2 == 1
            func address() -> ProxyAddress {
                guard makeV6 else { return .ipv4(UInt32.random(in: 0...UInt32.max, using: &g), port: port()) }
                // Zero groups are frequent so that "::" runs of every length turn up.
                let groups = (0..<8).map { _ in
                    Bool.random(using: &g) ? 0 : UInt16.random(in: 0...UInt16.max, using: &g)
                }
                return v6(groups, port: port())
            }
            let source = address()
            let destination = address()
            for v2 in [false, true] {
                let written = writeProxy(v2: v2, source, destination)!
                let expected = ProxyParse.header(
                    length: Int32(written.count), source: source, destination: destination, local: false)
                #expect(parseProxy(written) == expected)
                #expect(parseProxy(written + bytes("GET / HTTP/1.1\r\n")) == expected)
                if k < 40 { expectProxy(written, expected) }
            }
        }
    }

    @Test func v1Unknown() {
        expectProxy(bytes("PROXY UNKNOWN\r\n"), header("PROXY UNKNOWN\r\n", nil, nil))
        let line = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
        expectProxy(bytes(line + "GET"), header(line, nil, nil), decidedBy: line.utf8.count)
        // 107 bytes in all is the longest line; one more is refused.
        let longest = "PROXY UNKNOWN " + String(repeating: "x", count: 91) + "\r\n"
        #expect(longest.utf8.count == 107)
        expectProxy(bytes(longest), header(longest, nil, nil))
        let tooLong = "PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r\n"
        expectProxy(bytes(tooLong), .invalid, decidedBy: 107)
    }

    @Test func v1AddressForms() {
        let forms: [(String, ProxyAddress)] = [
            ("2001:0DB8:0000::0001", v6([0x2001, 0xDB8, 0, 0, 0, 0, 0, 1], port: 1)),
            ("::ffff:10.0.0.1", v6([0, 0, 0, 0, 0, 0xFFFF, 0x0A00, 1], port: 1)),
            ("1:2:3:4:5:6:1.2.3.4", v6([1, 2, 3, 4, 5, 6, 0x0102, 0x0304], port: 1)),
            ("::1.2.3.4", v6([0, 0, 0, 0, 0, 0, 0x0102, 0x0304], port: 1)),
            ("1::2:3:4:5:6:7", v6([1, 0, 2, 3, 4, 5, 6, 7], port: 1)),
            ("1:2:3:4:5:6:7::", v6([1, 2, 3, 4, 5, 6, 7, 0], port: 1)),
            ("::2:3:4:5:6:7:8", v6([0, 2, 3, 4, 5, 6, 7, 8], port: 1)),
        ]
        for (text, address) in forms {
            let line = "PROXY TCP6 \(text) ::1 1 0\r\n"
            expectProxy(bytes(line), header(line, address, v6([0, 0, 0, 0, 0, 0, 0, 1], port: 0)))
        }
    }

    static let invalidV1: [String] = [
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP6 1::2::3 ::1 1 2\r\n",
        "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
        "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
        "PROXY TCP6 12345::1 ::1 1 2\r\n",
        "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        "PROXY TCP6 [::1] ::1 1 2\r\n",
        "PROXY TCP6 1: ::1 1 2\r\n",
        "PROXY TCP6 :1 ::1 1 2\r\n",
        "PROXY TCP6 ::g ::1 1 2\r\n",
        "PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1.2.3.4:5 ::1 1 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY UNKNOWN\n",
        "PROXY UNKNOWN a\nb\r\n",
        "PROXY \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + String(repeating: "0", count: 80) + "\r\n",
    ]

    @Test(arguments: invalidV1)
    func malformedV1(_ line: String) {
        expectProxy(bytes(line), .invalid)
    }

    @Test func notProxy() {
        expectProxy(bytes("GET / HTTP/1.1\r\n"), .notProxy, decidedBy: 1)
        expectProxy([0x16, 3, 1, 0, 5], .notProxy, decidedBy: 1)
        expectProxy(bytes("POST / HTTP/1.1\r\n"), .notProxy, decidedBy: 2)
        expectProxy(bytes("PROXX TCP4"), .notProxy, decidedBy: 5)
        expectProxy(bytes("PROXY\r\n"), .notProxy, decidedBy: 6)
        expectProxy(bytes("\r\n\r\nGET"), .notProxy, decidedBy: 5)
        expectProxy(Array(signatureV2.dropLast()) + [0x0D, 0x21], .notProxy, decidedBy: 12)
        #expect(parseProxy([]) == .needMore)
    }

    static func v2(_ command: UInt8, _ family: UInt8, _ payload: [UInt8]) -> [UInt8] {
        signatureV2 + [command, family] + u16(payload.count) + payload
    }

    @Test func v2Local() {
        expectProxy(Self.v2(0x20, 0x00, []), .header(length: 16, source: nil, destination: nil, local: true))
        // The family and the block are ignored for LOCAL.
        let block = [UInt8](repeating: 0xEE, count: 9)
        expectProxy(Self.v2(0x20, 0x77, block), .header(length: 25, source: nil, destination: nil, local: true))
        let tcp = Self.v2(0x20, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2])
        expectProxy(tcp + [0x47], .header(length: 28, source: nil, destination: nil, local: true), decidedBy: 28)
    }

    @Test func v2FamiliesWithoutAddresses() {
        expectProxy(Self.v2(0x21, 0x00, []), .header(length: 16, source: nil, destination: nil, local: false))
        expectProxy(Self.v2(0x21, 0x00, [0, 1, 2]), .header(length: 19, source: nil, destination: nil, local: false))
        expectProxy(
            Self.v2(0x21, 0x12, [UInt8](repeating: 1, count: 12)),
            .header(length: 28, source: nil, destination: nil, local: false))
        expectProxy(
            Self.v2(0x21, 0x22, [UInt8](repeating: 1, count: 36)),
            .header(length: 52, source: nil, destination: nil, local: false))
        expectProxy(
            Self.v2(0x21, 0x31, [UInt8](repeating: 0x61, count: 216)),
            .header(length: 232, source: nil, destination: nil, local: false))
        expectProxy(
            Self.v2(0x21, 0x32, [UInt8](repeating: 0x61, count: 216)),
            .header(length: 232, source: nil, destination: nil, local: false))
    }

    @Test func v2SkipsTLVs() {
        let tlvs: [UInt8] = [0x04, 0, 0] + [0x02, 0, 3, 0x61, 0x62, 0x63] + [0x20, 0, 1, 0]
        let header = Self.v2(0x21, 0x11, [192, 0, 2, 1, 10, 0, 0, 5, 0x12, 0x34, 0x01, 0xBB] + tlvs)
        expectProxy(
            header + bytes("GET"),
            .header(
                length: Int32(header.count), source: v4(192, 0, 2, 1, port: 0x1234),
                destination: v4(10, 0, 0, 5, port: 443),
                local: false),
            decidedBy: header.count)
    }

    @Test func v2Invalid() {
        expectProxy(Self.v2(0x11, 0x11, [UInt8](repeating: 0, count: 12)), .invalid, decidedBy: 13)
        expectProxy(Self.v2(0x31, 0x11, [UInt8](repeating: 0, count: 12)), .invalid, decidedBy: 13)
        expectProxy(Self.v2(0x22, 0x11, [UInt8](repeating: 0, count: 12)), .invalid, decidedBy: 13)
        for family: UInt8 in [0x01, 0x10, 0x13, 0x23, 0x33, 0x41, 0xFF] {
            expectProxy(Self.v2(0x21, family, [UInt8](repeating: 0, count: 36)), .invalid, decidedBy: 14)
        }
        expectProxy(Self.v2(0x21, 0x11, [UInt8](repeating: 0, count: 11)), .invalid, decidedBy: 16)
        expectProxy(Self.v2(0x21, 0x21, [UInt8](repeating: 0, count: 35)), .invalid, decidedBy: 16)
        expectProxy(Self.v2(0x21, 0x31, [UInt8](repeating: 0, count: 215)), .invalid, decidedBy: 16)
        expectProxy(Self.v2(0x21, 0x21, [UInt8](repeating: 0, count: 12)), .invalid, decidedBy: 16)
    }

    @Test func v2LongHeaderWantsMore() {
        let header = Self.v2(0x21, 0x11, [UInt8](repeating: 0, count: 65535))
        #expect(parseProxy(Array(header.dropLast())) == .needMore)
        #expect(
            parseProxy(header)
                == .header(length: 65551, source: v4(0, 0, 0, 0), destination: v4(0, 0, 0, 0), local: false))
    }

    @Test func randomCorruptionsDecideOnce() {
        var g = SplitMix(state: 9)
        var seeds: [[UInt8]] = [bytes("PROXY UNKNOWN\r\n"), Self.v2(0x20, 0, [])]
        for v2 in [false, true] {
            seeds.append(writeProxy(v2: v2, v4(192, 0, 2, 1, port: 1234), v4(10, 0, 0, 5, port: 443))!)
            seeds.append(
                writeProxy(
                    v2: v2, v6([0x2001, 0xDB8, 0, 0, 0, 0, 0, 1], port: 1), v6([0, 0, 0, 0, 0, 0, 0, 1], port: 2))!)
        }
        for _ in 0..<500 {
            var input = seeds.randomElement(using: &g)!
            input[Int.random(in: 0..<input.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            let whole = parseProxy(input)
            var decided: ProxyParse?
            for end in 0...input.count {
                let r = parseProxy(Array(input[0..<end]))
                if let decided {
                    #expect(r == decided)
                } else if r != .needMore {
                    decided = r
                }
            }
            #expect((decided ?? .needMore) == whole)
            if case .header(let length, let source, let destination, let local) = whole, !local, let source,
                let destination
            {
                // What parsed must write back to the same header (v1) or the same addresses (v2).
                let v2 = input[0] == 0x0D
                let again = writeProxy(v2: v2, source, destination)!
                #expect(
                    parseProxy(again)
                        == .header(length: Int32(again.count), source: source, destination: destination, local: false))
                if !v2 { #expect(length > 0) }
            }
        }
    }
}
