import Testing

@testable import SluiceRouting

@Suite struct SocketAddressTests {
    /// Input, and the address as `description` prints it (RFC 5952 for IPv6).
    static let valid: [(String, String)] = [
        ("1.2.3.4:80", "1.2.3.4:80"),
        ("0.0.0.0:1", "0.0.0.0:1"),
        ("255.255.255.255:65535", "255.255.255.255:65535"),
        ("10.0.0.1:0080", "10.0.0.1:80"),
        ("localhost:8080", "127.0.0.1:8080"),
        ("[::]:80", "[::]:80"),
        ("[::1]:80", "[::1]:80"),
        ("[1::]:80", "[1::]:80"),
        ("[fe80::1:2]:443", "[fe80::1:2]:443"),
        ("[FE80::A:B]:443", "[fe80::a:b]:443"),
        ("[2001:db8:0:0:0:0:2:1]:1", "[2001:db8::2:1]:1"),
        ("[2001:db8:0:1:1:1:1:1]:1", "[2001:db8:0:1:1:1:1:1]:1"),
        ("[2001:0:0:1:0:0:0:1]:1", "[2001:0:0:1::1]:1"),
        ("[1:2:3:4:5:6:7:8]:9", "[1:2:3:4:5:6:7:8]:9"),
        ("[0001:0002::0003]:9", "[1:2::3]:9"),
        ("[::ffff:1.2.3.4]:80", "[::ffff:102:304]:80"),
        ("[64:ff9b::192.0.2.33]:80", "[64:ff9b::c000:221]:80"),
        ("[1:2:3:4:5:6:1.2.3.4]:80", "[1:2:3:4:5:6:102:304]:80"),
    ]

    @Test(arguments: valid)
    func parsesAndPrints(input: String, printed: String) throws {
        let address = try SocketAddress.parse(input).get()
        #expect(address.description == printed)
        // What it prints, it reads back as the same address.
        #expect(try SocketAddress.parse(printed).get() == address)
    }

    @Test func valuesAreInTheDocumentedByteOrder() throws {
        #expect(try SocketAddress.parse("1.2.3.4:80").get() == SocketAddress(ip: .v4(0x0102_0304), port: 80))
        #expect(try SocketAddress.parse("[::]:1").get().ip == .v6(0, 0))
        #expect(try SocketAddress.parse("[::1]:1").get().ip == .v6(0, 1))
        #expect(try SocketAddress.parse("[fe80::1:2]:1").get().ip == .v6(0xFE80_0000_0000_0000, 0x0000_0000_0001_0002))
        #expect(try SocketAddress.parse("[::ffff:1.2.3.4]:1").get().ip == .v6(0, 0x0000_FFFF_0102_0304))
    }

    static let invalid: [(String, SocketAddress.ParseError)] = [
        ("", .missingPort),
        ("1.2.3.4", .missingPort),
        ("1.2.3.4:", .badPort),
        ("1.2.3.4:0", .badPort),
        ("1.2.3.4:65536", .badPort),
        ("1.2.3.4:99999999999", .badPort),
        ("1.2.3.4:-1", .badPort),
        ("1.2.3.4:+80", .badPort),
        ("1.2.3.4:8o", .badPort),
        ("1.2.3:80", .badAddress),
        ("1.2.3.4.5:80", .badAddress),
        ("256.0.0.1:80", .badAddress),
        ("01.2.3.4:80", .badAddress),
        ("1.2.3.04:80", .badAddress),
        ("1..3.4:80", .badAddress),
        ("example.com:80", .badAddress),
        (":80", .badAddress),
        ("::1:80", .missingPort),
        ("[::1]", .missingPort),
        ("[::1]80", .missingPort),
        ("[::1]:", .badPort),
        ("[::1:80", .badAddress),
        ("[]:80", .badAddress),
        ("[:]:80", .badAddress),
        ("[:::]:80", .badAddress),
        ("[1::2::3]:80", .badAddress),
        ("[1:2:3:4:5:6:7]:80", .badAddress),
        ("[1:2:3:4:5:6:7:8:9]:80", .badAddress),
        ("[1::2:3:4:5:6:7:8]:80", .badAddress),
        ("[12345::1]:80", .badAddress),
        ("[g::1]:80", .badAddress),
        ("[1:2:3:4:5:6:7:]:80", .badAddress),
        ("[:1:2:3:4:5:6:7]:80", .badAddress),
        ("[::1.2.3.4.5]:80", .badAddress),
        ("[::1.2.3.4:1]:80", .badAddress),
        ("[::+1]:80", .badAddress),
        ("[::-0]:80", .badAddress),
    ]

    @Test(arguments: invalid)
    func refuses(input: String, error: SocketAddress.ParseError) {
        #expect(SocketAddress.parse(input) == .failure(error))
    }

    @Test func portZeroOnlyWhenAllowed() {
        #expect(
            SocketAddress.parse("127.0.0.1:0", allowPortZero: true)
                == .success(SocketAddress(ip: .v4(0x7F00_0001), port: 0)))
        #expect(SocketAddress.parse("[::1]:0") == .failure(.badPort))
        #expect(SocketAddress.parse("[::1]:65536", allowPortZero: true) == .failure(.badPort))
    }

    @Test func errorsDescribeThemselves() {
        #expect(SocketAddress.ParseError.missingPort.description == "expected HOST:PORT (IPv6 as [ADDR]:PORT)")
        #expect(SocketAddress.ParseError.badPort.description == "the port must be a number from 1 to 65535")
        #expect(SocketAddress.ParseError.badAddress.description == "not an IPv4 or IPv6 address literal")
    }

    @Test func addressHashIgnoresThePortAndSeparatesAddresses() throws {
        let a = try SocketAddress.parse("10.0.0.1:1000").get()
        let b = try SocketAddress.parse("10.0.0.1:2000").get()
        let c = try SocketAddress.parse("10.0.0.2:1000").get()
        let v6 = try SocketAddress.parse("[::a00:1]:1000").get()
        #expect(a.addressHash == b.addressHash)
        #expect(a.addressHash != c.addressHash)
        #expect(a.addressHash != v6.addressHash)
    }
}
