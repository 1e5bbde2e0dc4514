import SluiceRouting
import Testing

/// `text` as an address, for tests.
private func ip(_ text: String) -> SocketAddress.IP {
    SocketAddress.parseIP(Array(text.utf8))!
}

private func block(_ text: String) throws -> CIDR {
    try CIDR.parse(text).get()
}

@Suite struct CIDRTests {
    /// Input, and the block as `description` prints it (host bits cleared, RFC 5952).
    static let valid: [(String, String)] = [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("192.168.1.77/24", "192.168.1.0/24"),
        ("1.2.3.4", "1.2.3.4/32"),
        ("1.2.3.4/32", "1.2.3.4/32"),
        ("255.255.255.255/0", "0.0.0.0/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("172.31.255.255/12", "172.16.0.0/12"),
        ("::1/128", "::1/128"),
        ("::1", "::1/128"),
        ("::/0", "::/0"),
        ("ffff::1/0", "::/0"),
        ("2001:DB8::1/32", "2001:db8::/32"),
        ("2001:db8:aaaa:bbbb:cccc::1/64", "2001:db8:aaaa:bbbb::/64"),
        ("2001:db8:aaaa:bbbb:cccc::1/65", "2001:db8:aaaa:bbbb:8000::/65"),
        ("fe80::1/10", "fe80::/10"),
        ("::ffff:10.0.0.1/104", "::ffff:a00:0/104"),
    ]

    @Test(arguments: valid)
    func parsesMasksAndPrints(input: String, printed: String) throws {
        let parsed = try block(input)
        #expect(parsed.description == printed)
        #expect(try block(printed) == parsed)
    }

    @Test func refusesMalformedBlocks() {
        let cases: [(String, CIDR.ParseError)] = [
            ("", .empty),
            ("10.0.0.0/33", .badPrefixLength(maximum: 32)),
            ("10.0.0.0/", .badPrefixLength(maximum: 32)),
            ("10.0.0.0/-1", .badPrefixLength(maximum: 32)),
            ("10.0.0.0/8/8", .badPrefixLength(maximum: 32)),
            ("10.0.0.0/0008", .badPrefixLength(maximum: 32)),
            ("::1/129", .badPrefixLength(maximum: 128)),
            ("::1/x", .badPrefixLength(maximum: 128)),
            ("10.0.0/8", .badAddress),
            ("10.0.0.256/8", .badAddress),
            ("010.0.0.0/8", .badAddress),
            ("[::1]/128", .badAddress),
            ("localhost", .badAddress),
            ("example.com/8", .badAddress),
            ("/8", .badAddress),
            ("1::2::3/64", .badAddress),
        ]
        for (text, error) in cases {
            #expect(CIDR.parse(text) == .failure(error), "\(text)")
        }
        #expect(
            CIDR.ParseError.badAddress.description
                == "expected an IPv4 or IPv6 address, optionally followed by /PREFIX-LENGTH")
        #expect(
            CIDR.ParseError.badPrefixLength(maximum: 32).description
                == "the prefix length must be a number from 0 to 32")
    }

    @Test func ipv4Containment() throws {
        let ten = try block("10.0.0.0/8")
        #expect(ten.contains(ip("10.0.0.0")))
        #expect(ten.contains(ip("10.255.255.255")))
        #expect(ten.contains(ip("10.1.2.3")))
        #expect(!ten.contains(ip("11.0.0.0")))
        #expect(!ten.contains(ip("9.255.255.255")))

        let host = try block("192.0.2.7")
        #expect(host.contains(ip("192.0.2.7")))
        #expect(!host.contains(ip("192.0.2.6")))
        #expect(!host.contains(ip("192.0.2.8")))

        let odd = try block("192.0.2.128/25")
        #expect(odd.contains(ip("192.0.2.128")))
        #expect(odd.contains(ip("192.0.2.255")))
        #expect(!odd.contains(ip("192.0.2.127")))
    }

    @Test func prefixZeroContainsItsWholeFamilyOnly() throws {
        let all4 = try block("0.0.0.0/0")
        #expect(all4.contains(ip("0.0.0.0")))
        #expect(all4.contains(ip("255.255.255.255")))
        #expect(!all4.contains(ip("::")))
        #expect(!all4.contains(ip("::ffff:1.2.3.4")))

        let all6 = try block("::/0")
        #expect(all6.contains(ip("::")))
        #expect(all6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
        #expect(!all6.contains(ip("0.0.0.0")))
        #expect(!all6.contains(ip("1.2.3.4")))
    }

    @Test func ipv6Containment() throws {
        let loopback = try block("::1/128")
        #expect(loopback.contains(ip("::1")))
        #expect(!loopback.contains(ip("::")))
        #expect(!loopback.contains(ip("::2")))
        #expect(!loopback.contains(ip("127.0.0.1")))

        let doc = try block("2001:db8::/32")
        #expect(doc.contains(ip("2001:db8::")))
        #expect(doc.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")))
        #expect(!doc.contains(ip("2001:db9::")))

        // Prefixes on both sides of the 64-bit halves.
        let p63 = try block("2001:db8:0:fffe::/63")
        #expect(p63.contains(ip("2001:db8:0:ffff:1::")))
        #expect(!p63.contains(ip("2001:db8:0:fffd::")))
        let p64 = try block("2001:db8:0:1::/64")
        #expect(p64.contains(ip("2001:db8:0:1:ffff:ffff:ffff:ffff")))
        #expect(!p64.contains(ip("2001:db8:0:2::")))
        let p65 = try block("2001:db8:0:1::/65")
        #expect(p65.contains(ip("2001:db8:0:1:7fff:ffff:ffff:ffff")))
        #expect(!p65.contains(ip("2001:db8:0:1:8000::")))
        let p127 = try block("::2/127")
        #expect(p127.contains(ip("::2")))
        #expect(p127.contains(ip("::3")))
        #expect(!p127.contains(ip("::4")))
        #expect(!p127.contains(ip("::1")))
    }

    /// An IPv4-mapped IPv6 address is an IPv6 address here: the caller unmaps if it wants.
    @Test func mappedAddressesAreNotSpecial() throws {
        let ten = try block("10.0.0.0/8")
        #expect(!ten.contains(ip("::ffff:10.0.0.1")))
        let mapped = try block("::ffff:0:0/96")
        #expect(mapped.contains(ip("::ffff:10.0.0.1")))
        #expect(!mapped.contains(ip("10.0.0.1")))
        let mappedTen = try block("::ffff:10.0.0.0/104")
        #expect(mappedTen.contains(ip("::ffff:10.9.8.7")))
        #expect(!mappedTen.contains(ip("10.9.8.7")))
    }

    @Test func madeFromAnAddressAndLength() {
        let made = CIDR(address: .v4(0x0A01_0203), prefixLength: 16)
        #expect(made.address == .v4(0x0A01_0000))
        #expect(made.prefixLength == 16)
        #expect(!made.isIPv6)
        #expect(made == CIDR(address: .v4(0x0A01_FFFF), prefixLength: 16))
        #expect(made != CIDR(address: .v4(0x0A01_0000), prefixLength: 17))
        let six = CIDR(address: .v6(0x2001_0DB8_0000_0001, 0xFFFF), prefixLength: 48)
        #expect(six.address == .v6(0x2001_0DB8_0000_0000, 0))
        #expect(six.isIPv6)
        #expect(CIDR(address: .v6(0, 0), prefixLength: 0) != CIDR(address: .v4(0), prefixLength: 0))
    }

    @Test func listenerAsksItsBlocks() throws {
        let address = try SocketAddress.parse("0.0.0.0:443").get()
        let listener = Listener(
            name: "tls", address: address, protocol: .tls, service: -1, routes: 0,
            acceptProxy: [try block("10.0.0.0/8"), try block("::1")])
        #expect(listener.expectsProxyHeader(from: ip("10.2.3.4")))
        #expect(listener.expectsProxyHeader(from: ip("::1")))
        #expect(!listener.expectsProxyHeader(from: ip("192.0.2.1")))
        #expect(!listener.expectsProxyHeader(from: ip("::ffff:10.2.3.4")))
        let plain = Listener(name: "tcp", address: address, protocol: .tcp, service: 0)
        #expect(plain.acceptProxy.isEmpty)
        #expect(!plain.expectsProxyHeader(from: ip("10.2.3.4")))
    }
}
