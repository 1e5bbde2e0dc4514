import Testing

@testable import SluiceWire

/// What `ClientHelloParser.parse` answered, in plain values.
enum HelloOutcome: Equatable, CustomStringConvertible {
    case needMore
    case notTLS
    case tooLarge
    case hello(sni: String?, alpn: [String]?, recordBytes: Int)

    var description: String {
        switch self {
        case .needMore: return "needMore"
        case .notTLS: return "notTLS"
        case .tooLarge: return "tooLarge"
        case .hello(let sni, let alpn, let n): return "hello(sni: \(sni ?? "nil"), alpn: \(alpn ?? []), \(n))"
        }
    }
}

/// Parses `input` with a scratch buffer of exactly `maxBytes` bytes.
func parseHello(_ input: [UInt8], maxBytes: Int = 16384) -> HelloOutcome {
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(maxBytes, 1), alignment: 1)
    defer { scratch.deallocate() }
    let sized = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<maxBytes])
    let result = input.withUnsafeBytes { ClientHelloParser.parse($0, scratch: sized, maxBytes: maxBytes) }
    switch result {
    case .needMore: return .needMore
    case .notTLS: return .notTLS
    case .tooLarge: return .tooLarge
    case .hello(let info):
        let b = UnsafeRawBufferPointer(sized)
        var names: [String]?
        if let list = info.alpn {
            names = []
            ClientHelloParser.forEachALPN(list, in: b) { names!.append(text(b, $0)) }
        }
        return .hello(sni: info.serverName.map { text(b, $0) }, alpn: names, recordBytes: Int(info.recordBytes))
    }
}

/// Checks the whole input, then every prefix of it as a connection would see them one byte
/// at a time: each answers `.needMore` until the first prefix that decides, and from there
/// on the whole input's answer.
func expectHello(
    _ input: [UInt8], _ expected: HelloOutcome, maxBytes: Int = 16384, decidedBy: Int? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(parseHello(input, maxBytes: maxBytes) == expected, sourceLocation: sourceLocation)
    var decided: Int?
    for end in 0..<input.count {
        let r = parseHello(Array(input[0..<end]), maxBytes: maxBytes)
        if decided == nil && r != .needMore { decided = end }
        if decided != nil {
            #expect(r == expected, "prefix of \(end) bytes", sourceLocation: sourceLocation)
            if r != expected { return }
        }
    }
    if case .hello = expected, decidedBy == nil {
        #expect(decided == nil, "a proper prefix of a hello decided", sourceLocation: sourceLocation)
    }
    if let decidedBy {
        #expect((decided ?? input.count) == decidedBy, "decided after", sourceLocation: sourceLocation)
    }
}

func hex(_ s: String) -> [UInt8] {
    let digits = Array(s.utf8).filter { $0 > 0x20 }
    return stride(from: 0, to: digits.count, by: 2).map {
        UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)!
    }
}

func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
func u24(_ v: Int) -> [UInt8] { [UInt8(v >> 16 & 0xFF)] + u16(v) }

/// Hand-built ClientHellos.
enum Hello {
    static func sni(_ name: [UInt8], type: UInt8 = 0) -> [UInt8] {
        let entry = [type] + u16(name.count) + name
        return u16(entry.count) + entry
    }

    static func alpn(_ names: [String]) -> [UInt8] {
        let list = names.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        return u16(list.count) + list
    }

    static func ext(_ type: Int, _ data: [UInt8]) -> [UInt8] { u16(type) + u16(data.count) + data }

    /// A ClientHello body; `extensions` nil leaves the block out entirely.
    static func body(
        sessionID: Int = 32, suites: [UInt8] = [0x13, 0x01, 0xC0, 0x2F], compression: [UInt8] = [0],
        extensions: [[UInt8]]? = [ext(0, sni(bytes("example.com"))), ext(16, alpn(["h2", "http/1.1"]))]
    ) -> [UInt8] {
        var b: [UInt8] = [3, 3] + [UInt8](repeating: 0xAB, count: 32)
        b += [UInt8(sessionID)] + [UInt8](repeating: 0x5A, count: min(sessionID, 255))
        b += u16(suites.count) + suites + [UInt8(compression.count)] + compression
        if let extensions {
            let block = extensions.flatMap { $0 }
            b += u16(block.count) + block
        }
        return b
    }

    static func handshake(_ body: [UInt8]) -> [UInt8] { [1] + u24(body.count) + body }

    /// `message` in records of the given payload sizes (the last takes the rest).
    static func records(_ message: [UInt8], sizes: [Int] = [], version: [UInt8] = [3, 1]) -> [UInt8] {
        var out: [UInt8] = []
        var start = 0
        for size in sizes + [message.count] where start < message.count {
            let end = min(message.count, start + size)
            out += [22] + version + u16(end - start) + message[start..<end]
            start = end
        }
        return out
    }

    static func wire(_ body: [UInt8] = body(), sizes: [Int] = []) -> [UInt8] {
        records(handshake(body), sizes: sizes)
    }
}

let exampleHello = HelloOutcome.hello(sni: "example.com", alpn: ["h2", "http/1.1"], recordBytes: 0)

func with(recordBytes n: Int, _ o: HelloOutcome) -> HelloOutcome {
    guard case .hello(let sni, let alpn, _) = o else { return o }
    return .hello(sni: sni, alpn: alpn, recordBytes: n)
}

/// ClientHellos as sent by real clients to a local server.
enum Captured {
    /// openssl s_client -servername example.com -alpn h2,http/1.1 (TLS 1.3)
    static let opensslTLS13 = hex(
        """
        160301014a01000146030310eeb472d64599c48560b1952cc4170b60584befb07a125e0a001ce0d5f30769209d95ed239a1e6e8c
        fa13fc4e21daedcb8f6390fa3f8fc3be00d6d1cb1d969436003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024
        c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000bf00000010000e00000b657861
        6d706c652e636f6d000b000403000102000a00160014001d0017001e0019001801000101010201030104002300000010000e000c
        02683208687474702f312e310016000000170000000d002a0028040305030603080708080809080a080b08040805080604010501
        0601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d002017f60ebc81a21f639a
        80516ed37b0ffd72ad3439306852334128c78a42555347
        """)

    /// openssl s_client -servername example.com -alpn h2,http/1.1 -tls1_2
    static let opensslTLS12 = hex(
        """
        16030100dd010000d903038270b4c38a67e97f1ece359aa86ee4274878b3527adabb01901777ff4f8d7577000038c02cc030009f
        cca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff0100
        007800000010000e00000b6578616d706c652e636f6d000b000403000102000a000c000a001d0017001e00190018002300000010
        000e000c02683208687474702f312e310016000000170000000d002a0028040305030603080708080809080a080b080408050806
        040105010601030303010302040205020602
        """)

    /// curl --resolve example.com:PORT:127.0.0.1 https://example.com:PORT/
    static let curl = hex(
        """
        1603010200010001fc0303152530860598a046c5032ded30794b0026233bd00fae8efa8d36b95d295a9c9120fc092cf5219d441a
        4ac8f79bdb5010ff0125605331f55b2d4c86c82aecd98650003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024
        c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff0100017500000010000e00000b657861
        6d706c652e636f6d000b000403000102000a00160014001d0017001e00190018010001010102010301040010000e000c02683208
        687474702f312e31001600000017000000310000000d002a0028040305030603080708080809080a080b08040805080604010501
        0601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d0020f2699af10a6e2a0126
        fe8d33e1836a688204a64805873a3556496574230e211a001500b200000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        """)

    /// Python ssl client, server_hostname example.com, ALPN h2, http/1.1
    static let pythonSSL = hex(
        """
        1603010200010001fc030370e6f8db1e79fe5d146f7649009e28ce5d48748e617be33ba783e104261f0e67208b0d94d9f61f9517
        633fe32012e84f22a8a6d86c039f248b8bf247429c72a0530024130213031301c02cc030c02bc02fcca9cca8c024c028c023c027
        009f009e006b006700ff0100018f00000010000e00000b6578616d706c652e636f6d000b000403000102000a00160014001d0017
        001e0019001801000101010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a0028
        040305030603080708080809080a080b080408050806040105010601030303010302040205020602002b00050403040303002d00
        020101003300260024001d00201555b3d3a7959d30b573af5166b14d9f271dabe8ffb853c3ca05c63b65bc1047001500d0000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        """)

    /// openssl s_client -noservername -tls1_2
    static let opensslNoSNI = hex(
        """
        16030100b7010000b303036a847a8529904eda978a48cb8ae23ea7cd9d835365b1dc715c0886a891998c43000038c02cc030009f
        cca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff0100
        0052000b000403000102000a000c000a001d0017001e00190018002300000016000000170000000d002a00280403050306030807
        08080809080a080b080408050806040105010601030303010302040205020602
        """)
}

@Suite struct ClientHelloTests {
    static let captures: [(String, [UInt8], String?, [String]?)] = [
        ("openssl TLS 1.3", Captured.opensslTLS13, "example.com", ["h2", "http/1.1"]),
        ("openssl TLS 1.2", Captured.opensslTLS12, "example.com", ["h2", "http/1.1"]),
        ("curl", Captured.curl, "example.com", ["h2", "http/1.1"]),
        ("python ssl", Captured.pythonSSL, "example.com", ["h2", "http/1.1"]),
        ("openssl without SNI", Captured.opensslNoSNI, nil, nil),
    ]

    @Test(arguments: 0..<captures.count)
    func capturedHellos(_ k: Int) {
        let (_, input, sni, alpn) = Self.captures[k]
        let expected = HelloOutcome.hello(sni: sni, alpn: alpn, recordBytes: input.count)
        expectHello(input, expected)
        // What follows the hello (a ChangeCipherSpec, early data) is not read.
        expectHello(input + [20, 3, 3, 0, 1, 1, 23, 3, 3], expected, decidedBy: input.count)
        #expect(parseHello(input + [0x47, 0x45, 0x54]) == expected)
    }

    @Test(arguments: 0..<captures.count)
    func capturedHellosRefragmented(_ k: Int) {
        let (_, input, sni, alpn) = Self.captures[k]
        let message = Array(input[5...])
        for sizes in [
            [1], [2], [3], [4], [5], [100], [message.count - 1], [1, 1], [3, 200], [4, 4, 4], [50, 1, 60],
        ] {
            let wire = Hello.records(message, sizes: sizes, version: [3, 3])
            expectHello(wire, .hello(sni: sni, alpn: alpn, recordBytes: wire.count))
        }
    }

    @Test func capturedHelloTooLarge() {
        let input = Captured.curl
        let length = Int(input[6]) << 16 | Int(input[7]) << 8 | Int(input[8])
        expectHello(
            input,
            with(recordBytes: input.count, .hello(sni: "example.com", alpn: ["h2", "http/1.1"], recordBytes: 0)),
            maxBytes: length)
        expectHello(input, .tooLarge, maxBytes: length - 1, decidedBy: 9)
    }

    @Test func handBuiltHello() {
        let wire = Hello.wire()
        expectHello(wire, with(recordBytes: wire.count, exampleHello))
    }

    @Test func everySplitIntoTwoAndThreeRecords() {
        let message = Hello.handshake(Hello.body())
        for a in 1..<message.count {
            let wire = Hello.records(message, sizes: [a])
            expectHello(wire, with(recordBytes: wire.count, exampleHello))
        }
        for a in stride(from: 1, to: message.count, by: 7) {
            for b in stride(from: 1, to: message.count - a, by: 11) {
                let wire = Hello.records(message, sizes: [a, b])
                #expect(parseHello(wire) == with(recordBytes: wire.count, exampleHello), "\(a) \(b)")
            }
        }
        let three = Hello.records(message, sizes: [2, 30])
        expectHello(three, with(recordBytes: three.count, exampleHello))
        let single = Hello.records(message, sizes: [1, 1, 1, 1, 1, 1, 1, 1])
        expectHello(single, with(recordBytes: single.count, exampleHello))
    }

    @Test func recordCarriesMoreThanTheHello() {
        // The hello's last record must be whole; its other bytes are not read.
        let message = Hello.handshake(Hello.body()) + [0x0B, 0, 0, 0]
        let wire = Hello.records(message)
        expectHello(wire, with(recordBytes: wire.count, exampleHello))
    }

    @Test func helloWithoutExtensions() {
        let wire = Hello.wire(Hello.body(extensions: nil))
        expectHello(wire, .hello(sni: nil, alpn: nil, recordBytes: wire.count))
        let empty = Hello.wire(Hello.body(extensions: []))
        expectHello(empty, .hello(sni: nil, alpn: nil, recordBytes: empty.count))
    }

    @Test func helloWithoutSNI() {
        let wire = Hello.wire(Hello.body(extensions: [Hello.ext(16, Hello.alpn(["http/1.1"])), Hello.ext(0x2A2A, [])]))
        expectHello(wire, .hello(sni: nil, alpn: ["http/1.1"], recordBytes: wire.count))
    }

    @Test func serverNamesThatRouteAsNone() {
        let names: [[UInt8]] = [
            [], bytes("exa mple.com"), bytes("a/b"), [0x61, 0x00, 0x62], bytes("ex\u{e9}.com"),
            [UInt8](repeating: 0x61, count: 256), bytes("a:443"),
        ]
        for name in names {
            let wire = Hello.wire(Hello.body(extensions: [Hello.ext(0, Hello.sni(name))]))
            expectHello(wire, .hello(sni: nil, alpn: nil, recordBytes: wire.count))
        }
        // An empty extension (as a server sends it), and an empty list.
        for data in [[], [0, 0]] as [[UInt8]] {
            let wire = Hello.wire(Hello.body(extensions: [Hello.ext(0, data)]))
            expectHello(wire, .hello(sni: nil, alpn: nil, recordBytes: wire.count))
        }
    }

    @Test func serverNamesKept() {
        let long = String(repeating: "a", count: 255)
        for name in ["a", "Example.COM", "_srv.x-y.example.", "10.0.0.1", long] {
            let wire = Hello.wire(Hello.body(extensions: [Hello.ext(0, Hello.sni(bytes(name)))]))
            expectHello(wire, .hello(sni: name, alpn: nil, recordBytes: wire.count))
        }
        // The first entry of type host_name counts.
        let entries: [UInt8] = [7] + u16(3) + bytes("abc") + [0] + u16(1) + bytes("b") + [0] + u16(1) + bytes("c")
        let wire = Hello.wire(Hello.body(extensions: [Hello.ext(0, u16(entries.count) + entries)]))
        expectHello(wire, .hello(sni: "b", alpn: nil, recordBytes: wire.count))
    }

    @Test func alpnLists() {
        let long = String(repeating: "p", count: 255)
        for names in [["h2"], ["x"], [long, "h2"], ["a", "b", "c"]] {
            let wire = Hello.wire(Hello.body(extensions: [Hello.ext(16, Hello.alpn(names))]))
            expectHello(wire, .hello(sni: nil, alpn: names, recordBytes: wire.count))
        }
    }

    @Test func notTLSAtTheFirstByte() {
        expectHello(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .notTLS, decidedBy: 1)
        expectHello(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), .notTLS, decidedBy: 1)
        expectHello([0x80, 0x2E, 0x01, 0x00, 0x02], .notTLS, decidedBy: 1)  // SSLv2 hello
        expectHello([23, 3, 3, 0, 5, 1, 2, 3, 4, 5], .notTLS, decidedBy: 1)
    }

    @Test func notTLSInTheRecordHeader() {
        expectHello([22, 2, 0, 0, 5], .notTLS, decidedBy: 2)
        expectHello([22, 3, 5, 0, 5], .notTLS, decidedBy: 3)
        expectHello([22, 3, 1, 0, 0, 1], .notTLS, decidedBy: 5)
        expectHello([22, 3, 1, 0x48, 0x01, 1], .notTLS, decidedBy: 5)
        expectHello([22, 3, 1, 0, 50, 2, 0, 0, 46], .notTLS, decidedBy: 6)
        let wire = Hello.wire()
        for type: UInt8 in [0, 2, 11, 16, 20] {
            var bad = wire
            bad[5] = type
            expectHello(bad, .notTLS, decidedBy: 6)
        }
        // The largest record payload is accepted.
        var big = Hello.wire()
        big[3] = 0x48
        big[4] = 0x00
        expectHello(Array(big[0..<5]), .needMore)
        #expect(parseHello(big) == .needMore)
    }

    @Test func recordVersions() {
        let message = Hello.handshake(Hello.body())
        for version: [UInt8] in [[3, 0], [3, 1], [3, 2], [3, 3], [3, 4]] {
            let wire = Hello.records(message, version: version)
            #expect(parseHello(wire) == with(recordBytes: wire.count, exampleHello))
            if version[1] > 0 {
                let split = Hello.records(message, sizes: [40], version: version)
                #expect(parseHello(split) == with(recordBytes: split.count, exampleHello))
            }
        }
        // SSL 3.0 is accepted for the first record only.
        var second = Hello.records(message, sizes: [40])
        second[45 + 2] = 0
        expectHello(second, .notTLS, decidedBy: 48)
    }

    @Test func otherRecordBetweenFragments() {
        let message = Hello.handshake(Hello.body())
        for type: UInt8 in [20, 21, 23, 24] {
            var wire = Hello.records(message, sizes: [40])
            wire[45] = type
            expectHello(wire, .notTLS, decidedBy: 46)
        }
    }

    @Test func handshakeLengths() {
        // Shorter than the smallest hello.
        expectHello(Hello.records([1] + u24(40) + [UInt8](repeating: 3, count: 40)), .notTLS, decidedBy: 9)
        // Longer than maxBytes, decided as soon as the length is in, even across records.
        expectHello(Hello.records([1] + u24(20000) + [3, 3], sizes: [2]), .tooLarge, decidedBy: 14)
        expectHello(Hello.records([1] + u24(0xFF_FFFF) + [3, 3]), .tooLarge, decidedBy: 9)
        // The hello is cut short by a non-handshake record.
        let message = Hello.handshake(Hello.body(extensions: [Hello.ext(0x2A2A, [UInt8](repeating: 0, count: 10))]))
        let cut = Hello.records(Array(message.dropLast(10))) + [21, 3, 3, 0, 2, 2, 40]
        expectHello(cut, .notTLS, decidedBy: 5 + message.count - 10 + 1)
    }

    static let malformedBodies: [(String, [UInt8])] = [
        ("legacy version 2.x", [2] + Hello.body().dropFirst()),
        ("session id of 33", Hello.body(sessionID: 33)),
        ("odd cipher suites", Hello.body(suites: [0x13, 0x01, 0xC0])),
        ("no cipher suites", Hello.body(suites: [])),
        ("no compression methods", Hello.body(compression: [])),
        ("one byte after compression", Hello.body(extensions: nil) + [0]),
        ("extensions shorter than said", Array(Hello.body().dropLast())),
        ("extensions longer than said", Hello.body() + [0]),
        ("extension overruns the block", Hello.body(extensions: [u16(0x2A2A) + u16(5) + [1, 2, 3]])),
        ("truncated extension header", Hello.body(extensions: [[0, 5]])),
        (
            "duplicate server_name",
            Hello.body(extensions: [Hello.ext(0, Hello.sni(bytes("a"))), Hello.ext(0, Hello.sni(bytes("b")))])
        ),
        (
            "duplicate ALPN",
            Hello.body(extensions: [Hello.ext(16, Hello.alpn(["h2"])), Hello.ext(16, Hello.alpn(["h2"]))])
        ),
        (
            "server_name list longer than the extension",
            Hello.body(extensions: [Hello.ext(0, u16(9) + [0] + u16(4) + bytes("abcd"))])
        ),
        (
            "server_name list shorter than the extension",
            Hello.body(extensions: [Hello.ext(0, u16(6) + [0] + u16(4) + bytes("abcd"))])
        ),
        (
            "server_name entry overruns the list",
            Hello.body(extensions: [Hello.ext(0, u16(7) + [0] + u16(5) + bytes("abcd"))])
        ),
        ("server_name entry cut in its header", Hello.body(extensions: [Hello.ext(0, u16(2) + [0, 0])])),
        ("server_name of one byte", Hello.body(extensions: [Hello.ext(0, [0])])),
        ("ALPN empty list", Hello.body(extensions: [Hello.ext(16, u16(0))])),
        ("ALPN empty extension", Hello.body(extensions: [Hello.ext(16, [])])),
        ("ALPN empty name", Hello.body(extensions: [Hello.ext(16, u16(3) + [0, 1, 0x61])])),
        ("ALPN name overruns the list", Hello.body(extensions: [Hello.ext(16, u16(3) + [3, 0x61, 0x62])])),
        ("ALPN list length disagrees", Hello.body(extensions: [Hello.ext(16, u16(2) + [2, 0x68, 0x32])])),
    ]

    @Test(arguments: 0..<malformedBodies.count)
    func malformedBody(_ k: Int) {
        let (name, body) = Self.malformedBodies[k]
        let wire = Hello.wire(body)
        expectHello(wire, .notTLS)
        #expect(parseHello(wire) == .notTLS, "\(name)")
        let split = Hello.wire(body, sizes: [7, 40])
        expectHello(split, .notTLS)
    }

    @Test func truncatedHelloWantsMore() {
        let wire = Hello.wire()
        for end in 0..<wire.count {
            #expect(parseHello(Array(wire[0..<end])) == .needMore)
        }
    }

    @Test func alpnWalkStopsAtBadNames() {
        let raw: [UInt8] = [2, 0x68, 0x32, 0, 5, 0x61]
        var names: [Range<Int32>] = []
        raw.withUnsafeBytes { b in ClientHelloParser.forEachALPN(0..<6, in: b) { names.append($0) } }
        #expect(names == [1..<3])
        raw.withUnsafeBytes { b in ClientHelloParser.forEachALPN(0..<9, in: b) { _ in Issue.record("outside") } }
    }

    @Test func randomFragmentsAndCorruptions() {
        var g = SplitMix(state: 7)
        let inputs = ClientHelloTests.captures.map { $0.1 } + [Hello.wire()]
        for _ in 0..<300 {
            let input = inputs.randomElement(using: &g)!
            var corrupted = input
            for _ in 0..<Int.random(in: 1...3, using: &g) {
                corrupted[Int.random(in: 0..<corrupted.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            }
            let whole = parseHello(corrupted)
            var decided: HelloOutcome?
            for end in 0...corrupted.count {
                let r = parseHello(Array(corrupted[0..<end]))
                if let decided {
                    #expect(r == decided)
                } else if r != .needMore {
                    decided = r
                }
            }
            #expect((decided ?? .needMore) == whole)
        }
    }
}
