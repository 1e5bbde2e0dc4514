/// The host part of an HTTP route: `example.com`, `*.example.com`, `[::1]`, each optionally
/// followed by `:PORT`.
///
/// Parsed once when a table is built; the stored name is lower case, without the `*.` of a
/// wildcard and without a trailing dot, so that lookups compare bytes. An IPv6 literal keeps
/// its brackets and is matched as text (case-insensitively), not as an address: `[::1]` and
/// `[0::1]` are different hosts, as they are different `Host` field values.
public struct HostPattern: Sendable, Hashable, CustomStringConvertible {
    /// Lower case; for a wildcard the domain after `*.`.
    public var name: [UInt8]
    /// `*.name`: matches exactly one more label in front of `name`.
    public var wildcard: Bool
    /// Matches only requests for this port; nil matches any port.
    public var port: UInt16?

    public init(name: [UInt8], wildcard: Bool = false, port: UInt16? = nil) {
        self.name = name
        self.wildcard = wildcard
        self.port = port
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case wildcardPlacement
        case wildcardWithoutDomain
        case emptyLabel
        case badCharacter
        case hyphenAtEdge
        case labelTooLong
        case nameTooLong
        case badPort
        case badIPv6
        case unbracketedIPv6

        public var description: String {
            switch self {
            case .empty: return "the host must not be empty"
            case .wildcardPlacement: return "a wildcard is only allowed as the whole first label"
            case .wildcardWithoutDomain: return "a wildcard needs a domain after it, as in *.example.com"
            case .emptyLabel: return "a label must not be empty"
            case .badCharacter: return "a label may hold only letters, digits and hyphens"
            case .hyphenAtEdge: return "a label must not start or end with a hyphen"
            case .labelTooLong: return "a label must be at most 63 characters"
            case .nameTooLong: return "a host name must be at most 253 characters"
            case .badPort: return "the port must be a number from 1 to 65535"
            case .badIPv6: return "the text between the brackets is not an IPv6 address"
            case .unbracketedIPv6: return "an IPv6 address must be in brackets, as in [::1]"
            }
        }
    }

    /// Parses a route's host as written in a configuration file. One trailing dot is accepted
    /// and dropped (`example.com.` is `example.com`); letters are folded to lower case.
    public static func parse(_ text: String) -> Result<HostPattern, ParseError> {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return .failure(.empty) }
        var nameBytes: ArraySlice<UInt8>
        var portBytes: ArraySlice<UInt8>? = nil
        if bytes[0] == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return .failure(.badIPv6) }
            guard SocketAddress.parseIPv6(bytes[1..<close]) != nil else { return .failure(.badIPv6) }
            nameBytes = bytes[...close]
            if close + 1 < bytes.count {
                guard bytes[close + 1] == UInt8(ascii: ":") else { return .failure(.badPort) }
                portBytes = bytes[(close + 2)...]
            }
            return finish(name: nameBytes, wildcard: false, portBytes: portBytes)
        }
        nameBytes = bytes[...]
        if let colon = bytes.lastIndex(of: UInt8(ascii: ":")) {
            nameBytes = bytes[..<colon]
            portBytes = bytes[(colon + 1)...]
            if nameBytes.contains(UInt8(ascii: ":")) { return .failure(.unbracketedIPv6) }
        }
        if nameBytes.last == UInt8(ascii: ".") { nameBytes = nameBytes.dropLast() }
        if nameBytes.isEmpty { return .failure(.empty) }
        var wildcard = false
        if nameBytes.elementsEqual([UInt8(ascii: "*")]) { return .failure(.wildcardWithoutDomain) }
        if nameBytes.starts(with: [UInt8(ascii: "*"), UInt8(ascii: ".")]) {
            wildcard = true
            nameBytes = nameBytes.dropFirst(2)
            if nameBytes.isEmpty { return .failure(.wildcardWithoutDomain) }
        }
        if nameBytes.contains(UInt8(ascii: "*")) { return .failure(.wildcardPlacement) }
        if nameBytes.count + (wildcard ? 2 : 0) > 253 { return .failure(.nameTooLong) }
        for label in nameBytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard !label.isEmpty else { return .failure(.emptyLabel) }
            guard label.count <= 63 else { return .failure(.labelTooLong) }
            guard label.allSatisfy(isLabelByte) else { return .failure(.badCharacter) }
            guard label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else {
                return .failure(.hyphenAtEdge)
            }
        }
        return finish(name: nameBytes, wildcard: wildcard, portBytes: portBytes)
    }

    private static func finish(name: ArraySlice<UInt8>, wildcard: Bool, portBytes: ArraySlice<UInt8>?)
        -> Result<HostPattern, ParseError>
    {
        var port: UInt16? = nil
        if let portBytes {
            guard let value = SocketAddress.parseDecimal(portBytes, max: 65535), value > 0 else {
                return .failure(.badPort)
            }
            port = UInt16(value)
        }
        return .success(HostPattern(name: name.map(lowercaseASCII), wildcard: wildcard, port: port))
    }

    private static func isLabelByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// ASCII letters to lower case; every other byte unchanged.
    @inline(__always)
    static func lowercaseASCII(_ byte: UInt8) -> UInt8 {
        byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
    }

    /// The pattern as a configuration file would write it, normalised: `*.example.com:8080`.
    public var description: String {
        var text = wildcard ? "*." : ""
        text += String(decoding: name, as: UTF8.self)
        if let port { text += ":\(port)" }
        return text
    }
}
