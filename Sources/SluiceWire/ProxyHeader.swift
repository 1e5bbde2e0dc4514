/// What `ProxyHeader.parse` found at the start of a connection.
public enum ProxyParse: Equatable, Sendable {
    /// A prefix of a header: read more and call again.
    case needMore
    /// The first bytes match neither signature ("PROXY " nor the v2 signature).
    case notProxy
    /// A signature, then something the specification does not allow: close.
    case invalid
    /// `length` bytes are the header; `local` for v2 LOCAL (health checks): keep the real peer.
    /// Addresses are nil for "PROXY UNKNOWN", v2 LOCAL, and v2 families other than TCP over
    /// IPv4 or IPv6 (AF_UNSPEC, UDP, AF_UNIX): the real peer stands then too.
    case header(length: Int32, source: ProxyAddress?, destination: ProxyAddress?, local: Bool)
}

/// PROXY protocol v1 (text) and v2 (binary), to tell an upstream the client's address
/// (haproxy's doc/proxy-protocol.txt).
///
/// Parsing, read from the first byte; every answer is decided by the bytes seen so far, so a
/// prefix yields `.needMore` or the answer the whole input gives:
///
/// | bytes                        | rule                                                    | else          |
/// | ---------------------------- | ------------------------------------------------------- | ------------- |
/// | first 6 / 12                 | "PROXY " (v1) or \r\n\r\n\0\r\nQUIT\n (v2)             | `.notProxy`   |
/// | v1 line                      | ≤ 107 bytes with CRLF; single spaces; "UNKNOWN" then    | `.invalid`    |
/// |                              | anything, or TCP4/TCP6, src, dst, sport, dport          |               |
/// | v1 addresses, ports          | dotted quads without leading zeros, IPv6 text of the    | `.invalid`    |
/// |                              | family named; ports 0–65535 without leading zeros      |               |
/// | v2 byte 12 (version/command) | 0x20 LOCAL or 0x21 PROXY                                | `.invalid`    |
/// | v2 byte 13 (family/protocol) | 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32 (PROXY only)   | `.invalid`    |
/// | v2 bytes 14–15 (length)      | room for the family's addresses; TLVs after them are    | `.invalid`    |
/// |                              | skipped unread; the header is 16 + length bytes         |               |
///
/// A v2 header may be up to 16 + 65535 bytes: a caller whose buffer fills while the answer is
/// still `.needMore` should close.
public enum ProxyHeader {
    /// The v2 signature.
    static let signatureV2: StaticString = "\r\n\r\n\0\r\nQUIT\n"
    static let signatureV1: StaticString = "PROXY "
    /// The longest v1 line, CRLF included.
    static let maxV1Bytes = 107

    /// "PROXY TCP4 src dst sport dport\r\n" (TCP6 for IPv6, RFC 5952 text); when one address
    /// is IPv4 and the other IPv6, the IPv4 one is written IPv4-mapped under TCP6.
    /// - Returns: bytes written into `out` (at most 104), or nil if `out` is too small.
    public static func writeV1(
        source: ProxyAddress,
        destination: ProxyAddress,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let v6 = source.v6 || destination.v6
        let src = v6 ? source.asV6 : source
        let dst = v6 ? destination.asV6 : destination
        var o = OutputCursor(out)
        o.write(v6 ? "PROXY TCP6 " : "PROXY TCP4 ")
        o.write(address: src)
        o.write(byte: asciiSP)
        o.write(address: dst)
        o.write(byte: asciiSP)
        o.write(decimal: UInt64(src.port))
        o.write(byte: asciiSP)
        o.write(decimal: UInt64(dst.port))
        o.write("\r\n")
        return o.result
    }

    /// v2 signature, version 2 command PROXY, AF_INET/AF_INET6 + STREAM, addresses and ports
    /// big-endian, no TLVs (IPv4-mapped IPv6 when the families differ).
    /// - Returns: bytes written into `out` (28 for IPv4, 52 for IPv6), or nil if it is too small.
    public static func writeV2(
        source: ProxyAddress,
        destination: ProxyAddress,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let v6 = source.v6 || destination.v6
        let src = v6 ? source.asV6 : source
        let dst = v6 ? destination.asV6 : destination
        var o = OutputCursor(out)
        o.write(Self.signatureV2)
        o.write(byte: 0x21)
        if v6 {
            o.write(byte: 0x21)
            o.write(bigEndian: 36, bytes: 2)
            o.write(bigEndian: src.hi, bytes: 8)
            o.write(bigEndian: src.lo, bytes: 8)
            o.write(bigEndian: dst.hi, bytes: 8)
            o.write(bigEndian: dst.lo, bytes: 8)
        } else {
            o.write(byte: 0x11)
            o.write(bigEndian: 12, bytes: 2)
            o.write(bigEndian: src.lo, bytes: 4)
            o.write(bigEndian: dst.lo, bytes: 4)
        }
        o.write(bigEndian: UInt64(src.port), bytes: 2)
        o.write(bigEndian: UInt64(dst.port), bytes: 2)
        return o.result
    }

    /// Parses a v1 or v2 header at the start of `buffer` (every byte received so far; call
    /// again with more). Pure: no allocation, no state, any thread.
    /// - Returns: see `ProxyParse` and the table above; after `.header(length:…)` the
    ///   connection's own bytes start at `length`.
    public static func parse(_ buffer: UnsafeRawBufferPointer) -> ProxyParse {
        let s = Span<UInt8>(_unsafeBytes: buffer)
        guard s.count > 0 else { return .needMore }
        let signature = s[0] == 0x50 ? Self.signatureV1 : Self.signatureV2
        let p = signature.utf8Start
        let signatureBytes = signature.utf8CodeUnitCount
        var i = 0
        while i < signatureBytes {
            if i == s.count { return .needMore }
            guard s[i] == p[i] else { return .notProxy }
            i &+= 1
        }
        return signatureBytes == 6 ? Self.parseV1(s) : Self.parseV2(s)
    }

    /// The v2 header after its signature.
    static func parseV2(_ s: Span<UInt8>) -> ProxyParse {
        let n = s.count
        if n < 13 { return .needMore }
        let command = s[12]
        guard command == 0x20 || command == 0x21 else { return .invalid }
        let local = command == 0x20
        if n < 14 { return .needMore }
        let family = s[13]
        var addressBytes = 0
        if !local {
            switch family {
            case 0x00: addressBytes = 0
            case 0x11, 0x12: addressBytes = 12
            case 0x21, 0x22: addressBytes = 36
            case 0x31, 0x32: addressBytes = 216
            default: return .invalid
            }
        }
        if n < 16 { return .needMore }
        let length = Int(s[14]) << 8 | Int(s[15])
        guard length >= addressBytes else { return .invalid }
        let total = 16 &+ length
        if n < total { return .needMore }
        let size = Int32(truncatingIfNeeded: total)
        if local || (family != 0x11 && family != 0x21) {
            return .header(length: size, source: nil, destination: nil, local: local)
        }
        @inline(__always) func read(_ at: Int, _ bytes: Int) -> UInt64 {
            var v: UInt64 = 0
            var k = 0
            while k < bytes {
                v = v << 8 | UInt64(s[at &+ k])
                k &+= 1
            }
            return v
        }
        let source: ProxyAddress
        let destination: ProxyAddress
        if family == 0x11 {
            source = .ipv4(UInt32(truncatingIfNeeded: read(16, 4)), port: UInt16(truncatingIfNeeded: read(24, 2)))
            destination = .ipv4(UInt32(truncatingIfNeeded: read(20, 4)), port: UInt16(truncatingIfNeeded: read(26, 2)))
        } else {
            source = .ipv6(hi: read(16, 8), lo: read(24, 8), port: UInt16(truncatingIfNeeded: read(48, 2)))
            destination = .ipv6(hi: read(32, 8), lo: read(40, 8), port: UInt16(truncatingIfNeeded: read(50, 2)))
        }
        return .header(length: size, source: source, destination: destination, local: false)
    }
}
