/// An IPv4 or IPv6 address with a port, parsed from text without the C library.
///
/// `SluiceRouting` is pure, so it cannot call `inet_pton`; this parser accepts exactly the
/// literal forms a configuration file uses: `1.2.3.4:80`, `[::1]:80`, `[fe80::1]:443`, and
/// `localhost:80` (→ 127.0.0.1) for convenience. Host names are not resolved here.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    public enum IP: Hashable, Sendable {
        /// Host byte order.
        case v4(UInt32)
        /// Sixteen bytes, network order, as two big-endian halves.
        case v6(UInt64, UInt64)
    }

    public var ip: IP
    public var port: UInt16

    public init(ip: IP, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingPort
        case badPort
        case badAddress

        public var description: String {
            switch self {
            case .missingPort: return "expected HOST:PORT (IPv6 as [ADDR]:PORT)"
            case .badPort: return "the port must be a number from 1 to 65535"
            case .badAddress: return "not an IPv4 or IPv6 address literal"
            }
        }
    }

    /// Parses `HOST:PORT`. `allowPortZero` is for bind addresses that let the kernel choose.
    public static func parse(_ text: String, allowPortZero: Bool = false) -> Result<SocketAddress, ParseError> {
        let bytes = Array(text.utf8)
        let hostBytes: ArraySlice<UInt8>
        let portBytes: ArraySlice<UInt8>
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return .failure(.badAddress) }
            guard close + 1 < bytes.count, bytes[close + 1] == UInt8(ascii: ":") else {
                return .failure(.missingPort)
            }
            hostBytes = bytes[1..<close]
            portBytes = bytes[(close + 2)...]
        } else {
            guard let colon = bytes.lastIndex(of: UInt8(ascii: ":")) else { return .failure(.missingPort) }
            hostBytes = bytes[..<colon]
            portBytes = bytes[(colon + 1)...]
            if hostBytes.contains(UInt8(ascii: ":")) { return .failure(.missingPort) }
        }
        guard let port = parseDecimal(portBytes, max: 65535), port > 0 || allowPortZero else {
            return .failure(.badPort)
        }
        guard let ip = parseIP(hostBytes) else { return .failure(.badAddress) }
        return .success(SocketAddress(ip: ip, port: UInt16(port)))
    }

    /// Parses an address literal without a port (`10.0.0.1`, `::1`, `localhost`).
    public static func parseIP<C: Collection>(_ host: C) -> IP? where C.Element == UInt8 {
        if host.elementsEqual("localhost".utf8) { return .v4(0x7F00_0001) }
        if let v4 = parseIPv4(host) { return .v4(v4) }
        return parseIPv6(host)
    }

    static func parseDecimal<C: Collection>(_ digits: C, max: Int) -> Int? where C.Element == UInt8 {
        guard !digits.isEmpty, digits.count <= 10 else { return nil }
        var value = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value <= max ? value : nil
    }

    static func parseIPv4<C: Collection>(_ text: C) -> UInt32? where C.Element == UInt8 {
        var result: UInt32 = 0
        var parts = 0
        var value: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for byte in text {
            if byte == UInt8(ascii: ".") {
                // Leading zeros are refused: "010" is octal to some parsers and decimal to others.
                guard digits > 0, !(leadingZero && digits > 1), parts < 3 else { return nil }
                result = result << 8 | value
                parts += 1
                value = 0
                digits = 0
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                if digits == 0 { leadingZero = byte == UInt8(ascii: "0") }
                digits += 1
                value = value * 10 + UInt32(byte - UInt8(ascii: "0"))
                guard digits <= 3, value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, !(leadingZero && digits > 1), parts == 3 else { return nil }
        return result << 8 | value
    }

    static func parseIPv6<C: Collection>(_ text: C) -> IP? where C.Element == UInt8 {
        let chars = Array(text)
        guard chars.count >= 2, chars.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawGap = false
        var i = 0
        if chars.starts(with: [58, 58]) {
            sawGap = true
            i = 2
            if i == chars.count { return .v6(0, 0) }
        } else if chars[0] == 58 {
            return nil
        }
        while i < chars.count {
            var j = i
            while j < chars.count, chars[j] != 58 { j += 1 }
            let group = chars[i..<j]
            if group.contains(46) {
                // Embedded IPv4 in the last 32 bits (::ffff:1.2.3.4).
                guard j == chars.count, let v4 = parseIPv4(group) else { return nil }
                let pair = [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
                if sawGap { tail += pair } else { head += pair }
            } else {
                // Hex digits only: UInt16(_:radix:) would also take a leading "+" or "-".
                guard !group.isEmpty, group.count <= 4, group.allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                    let value = UInt16(String(decoding: group, as: UTF8.self), radix: 16)
                else { return nil }
                if sawGap { tail.append(value) } else { head.append(value) }
            }
            if j == chars.count { break }
            // j points at ':'
            if j + 1 < chars.count, chars[j + 1] == 58 {
                guard !sawGap else { return nil }
                sawGap = true
                i = j + 2
                if i == chars.count { break }
            } else {
                i = j + 1
                guard i < chars.count else { return nil }
            }
        }
        let total = head.count + tail.count
        if sawGap {
            guard total <= 7 else { return nil }
        } else {
            guard total == 8 else { return nil }
        }
        let groups = head + Array(repeating: 0, count: 8 - total) + tail
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        for k in 0..<4 { hi = hi << 16 | UInt64(groups[k]) }
        for k in 4..<8 { lo = lo << 16 | UInt64(groups[k]) }
        return .v6(hi, lo)
    }

    public var description: String {
        switch ip {
        case .v4: return "\(ip.text):\(port)"
        case .v6: return "[\(ip.text)]:\(port)"
        }
    }

    /// RFC 5952 text: the longest run of two or more zero groups becomes "::".
    static func formatIPv6(_ groups: [UInt16]) -> String {
        var bestStart = -1
        var bestLength = 1
        var k = 0
        while k < 8 {
            if groups[k] == 0 {
                var e = k
                while e < 8, groups[e] == 0 { e += 1 }
                if e - k > bestLength {
                    bestStart = k
                    bestLength = e - k
                }
                k = e
            } else {
                k += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    /// A 64-bit hash of the address alone (not the port), stable across runs and loops:
    /// the `source` algorithm must send a client to the same endpoint from every loop.
    public var addressHash: UInt64 {
        switch ip {
        case .v4(let a): return Self.mix(UInt64(a))
        case .v6(let hi, let lo): return Self.mix(hi ^ Self.mix(lo))
        }
    }

    /// splitmix64's finaliser: cheap, and every input bit reaches every output bit.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SocketAddress.IP {
    /// The address alone: dotted quad, or RFC 5952 IPv6 text without brackets.
    var text: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
        case .v6(let hi, let lo):
            var groups: [UInt16] = []
            for k in (0..<4).reversed() { groups.append(UInt16(truncatingIfNeeded: hi >> (16 * UInt64(k)))) }
            for k in (0..<4).reversed() { groups.append(UInt16(truncatingIfNeeded: lo >> (16 * UInt64(k)))) }
            return SocketAddress.formatIPv6(groups)
        }
    }
}
