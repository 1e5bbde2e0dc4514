/// Validation of an authority (RFC 3986 §3.2 without userinfo): a reg-name or IPv4 address,
/// or an IPv6 literal in brackets, then an optional ":port" of 1 to 5 digits up to 65535.
enum Authority {
    /// True when `s[range]` is a valid authority; `requirePort` for CONNECT's authority-form.
    static func isValid(_ s: Span<UInt8>, _ range: Range<Int>, requirePort: Bool) -> Bool {
        var i = range.lowerBound
        let end = range.upperBound
        guard i < end else { return false }
        if s[i] == 0x5B {  // "[" IPv6 "]"; IPvFuture is refused
            i &+= 1
            let start = i
            var colons = 0
            while i < end && s[i] != 0x5D {
                let b = s[i]
                if b == asciiColon {
                    colons &+= 1
                } else if b != 0x2E && ByteClass.hexValue(b) == nil {
                    return false
                }
                i &+= 1
            }
            guard i < end, colons >= 2, i &- start <= 45 else { return false }
            i &+= 1
        } else {
            let start = i
            while i < end && s[i] != asciiColon {
                let b = s[i]
                if b == 0x25 {  // pct-encoded
                    guard i &+ 2 < end, ByteClass.hexValue(s[i &+ 1]) != nil, ByteClass.hexValue(s[i &+ 2]) != nil
                    else { return false }
                    i &+= 3
                    continue
                }
                guard ByteClass.isRegName(b) else { return false }
                i &+= 1
            }
            guard i > start else { return false }
        }
        if i == end { return !requirePort }
        guard s[i] == asciiColon else { return false }
        i &+= 1
        let digits = end &- i
        guard digits >= 1, digits <= 5 else { return false }
        var port = 0
        while i < end {
            let b = s[i]
            guard ByteClass.isDigit(b) else { return false }
            port = port &* 10 &+ Int(b &- 0x30)
            i &+= 1
        }
        return port <= 65535
    }
}
