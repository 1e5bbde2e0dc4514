/// An IPv4 or IPv6 address block, such as `10.0.0.0/8` or `::1/128`: the sources a listener
/// accepts a PROXY protocol header from.
///
/// Stored as the network address and its mask in two 64-bit halves (IPv4 in the low 32 bits
/// of `lo`), so `contains` is two ANDs and two compares, with no allocation. Bits beyond the
/// prefix are cleared when the block is made: `10.1.2.3/8` is `10.0.0.0/8`, as `ip route`
/// and most firewalls read it.
///
/// The families are separate: an IPv4 block never contains an IPv6 address, and an
/// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is only in IPv6 blocks such as
/// `::ffff:0:0/96`. A caller whose sockets report IPv4 peers in mapped form unmaps them first.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    /// True for an IPv6 block.
    public let isIPv6: Bool
    /// Leading bits that must match: 0...32 (IPv4) or 0...128 (IPv6).
    public let prefixLength: Int
    private let networkHi: UInt64
    private let networkLo: UInt64
    private let maskHi: UInt64
    private let maskLo: UInt64

    /// The block of `address` and its first `prefixLength` bits; the rest of `address` is
    /// cleared. `prefixLength` must be within the family's width (a precondition).
    public init(address: SocketAddress.IP, prefixLength: Int) {
        self.prefixLength = prefixLength
        switch address {
        case .v4(let value):
            precondition((0...32).contains(prefixLength), "an IPv4 prefix length is 0...32")
            isIPv6 = false
            maskHi = 0
            maskLo = prefixLength == 0 ? 0 : UInt64(UInt32.max << UInt32(32 - prefixLength))
            networkHi = 0
            networkLo = UInt64(value) & maskLo
        case .v6(let hi, let lo):
            precondition((0...128).contains(prefixLength), "an IPv6 prefix length is 0...128")
            isIPv6 = true
            maskHi = Self.mask(bits: min(prefixLength, 64))
            maskLo = Self.mask(bits: max(prefixLength - 64, 0))
            networkHi = hi & maskHi
            networkLo = lo & maskLo
        }
    }

    /// The `bits` (0...64) high bits of a 64-bit word set.
    private static func mask(bits: Int) -> UInt64 {
        bits == 0 ? 0 : UInt64.max << UInt64(64 - bits)
    }

    /// The network address: the block's first address.
    public var address: SocketAddress.IP {
        isIPv6 ? .v6(networkHi, networkLo) : .v4(UInt32(truncatingIfNeeded: networkLo))
    }

    /// Whether `ip` is in this block. Pure, allocation-free; any thread.
    @inline(__always)
    public func contains(_ ip: SocketAddress.IP) -> Bool {
        switch ip {
        case .v4(let value):
            return !isIPv6 && UInt64(value) & maskLo == networkLo
        case .v6(let hi, let lo):
            return isIPv6 && hi & maskHi == networkHi && lo & maskLo == networkLo
        }
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case badAddress
        /// The text after `/` is not a decimal number up to `maximum` (32 or 128).
        case badPrefixLength(maximum: Int)

        public var description: String {
            switch self {
            case .empty: return "the address block must not be empty"
            case .badAddress: return "expected an IPv4 or IPv6 address, optionally followed by /PREFIX-LENGTH"
            case .badPrefixLength(let maximum): return "the prefix length must be a number from 0 to \(maximum)"
            }
        }
    }

    /// Parses `ADDRESS/BITS` or a bare `ADDRESS` (a block of that one address: /32 or /128).
    /// Addresses are literals without brackets (`::1/128`, not `[::1]/128`); `localhost` is
    /// not accepted. Host bits beyond the prefix are accepted and cleared.
    public static func parse(_ text: String) -> Result<CIDR, ParseError> {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return .failure(.empty) }
        let slash = bytes.firstIndex(of: UInt8(ascii: "/")) ?? bytes.endIndex
        let addressBytes = bytes[..<slash]
        let ip: SocketAddress.IP
        if let v4 = SocketAddress.parseIPv4(addressBytes) {
            ip = .v4(v4)
        } else if let v6 = SocketAddress.parseIPv6(addressBytes) {
            ip = v6
        } else {
            return .failure(.badAddress)
        }
        let maximum: Int
        if case .v4 = ip { maximum = 32 } else { maximum = 128 }
        guard slash < bytes.endIndex else { return .success(CIDR(address: ip, prefixLength: maximum)) }
        // At most three digits: "/0032" is refused rather than read as 32.
        let digits = bytes[(slash + 1)...]
        guard digits.count <= 3, let bits = SocketAddress.parseDecimal(digits, max: maximum) else {
            return .failure(.badPrefixLength(maximum: maximum))
        }
        return .success(CIDR(address: ip, prefixLength: bits))
    }

    /// `10.0.0.0/8`, `::1/128`: the network address (RFC 5952 for IPv6) and the prefix length.
    public var description: String {
        "\(address.text)/\(prefixLength)"
    }
}
