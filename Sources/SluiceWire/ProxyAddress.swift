/// An endpoint named in a PROXY protocol header.
///
/// IPv6: `hi` and `lo` are the sixteen address bytes in network order as two big-endian
/// halves (bytes 0–7 in `hi`). IPv4: `hi` is 0 and `lo` holds the address as a number
/// (a.b.c.d is a << 24 | b << 16 | c << 8 | d).
public struct ProxyAddress: Equatable, Sendable {
    public var v6: Bool
    public var hi: UInt64
    public var lo: UInt64
    public var port: UInt16

    public init(v6: Bool, hi: UInt64, lo: UInt64, port: UInt16) {
        self.v6 = v6
        self.hi = hi
        self.lo = lo
        self.port = port
    }

    /// An IPv4 endpoint; `address` in host order.
    public static func ipv4(_ address: UInt32, port: UInt16) -> ProxyAddress {
        ProxyAddress(v6: false, hi: 0, lo: UInt64(address), port: port)
    }

    /// An IPv6 endpoint from its two big-endian halves.
    public static func ipv6(hi: UInt64, lo: UInt64, port: UInt16) -> ProxyAddress {
        ProxyAddress(v6: true, hi: hi, lo: lo, port: port)
    }

    /// The same endpoint as IPv6: an IPv4 address becomes IPv4-mapped (::ffff:a.b.c.d).
    var asV6: ProxyAddress {
        v6 ? self : ProxyAddress(v6: true, hi: 0, lo: 0xFFFF_0000_0000 | (lo & 0xFFFF_FFFF), port: port)
    }
}

extension OutputCursor {
    /// Writes the address of `a` as text: a dotted quad, or RFC 5952 IPv6 text (lower-case
    /// hex, no leading zeros, the longest run of two or more zero groups, the first of equal
    /// runs, as "::"; IPv4-mapped addresses end in a dotted quad, RFC 5952 §5).
    mutating func write(address a: ProxyAddress) {
        guard a.v6 else {
            write(dottedQuad: UInt32(truncatingIfNeeded: a.lo))
            return
        }
        if a.hi == 0 && a.lo >> 32 == 0xFFFF {
            write("::ffff:")
            write(dottedQuad: UInt32(truncatingIfNeeded: a.lo))
            return
        }
        @inline(__always) func group(_ k: Int) -> UInt16 {
            UInt16(truncatingIfNeeded: (k < 4 ? a.hi : a.lo) >> UInt64(48 &- 16 &* (k & 3)))
        }
        var bestStart = -1
        var bestLength = 1
        var k = 0
        while k < 8 {
            var end = k
            while end < 8 && group(end) == 0 { end &+= 1 }
            if end &- k > bestLength {
                bestStart = k
                bestLength = end &- k
            }
            k = end > k ? end : k &+ 1
        }
        k = 0
        while k < 8 {
            if k == bestStart {
                write("::")
                k &+= bestLength
                continue
            }
            if k > 0 && k != bestStart &+ bestLength { write(byte: asciiColon) }
            write(hexGroup: group(k))
            k &+= 1
        }
    }

    @inline(__always)
    mutating func write(dottedQuad v: UInt32) {
        write(decimal: UInt64(v >> 24))
        write(byte: 0x2E)
        write(decimal: UInt64(v >> 16 & 0xFF))
        write(byte: 0x2E)
        write(decimal: UInt64(v >> 8 & 0xFF))
        write(byte: 0x2E)
        write(decimal: UInt64(v & 0xFF))
    }

    @inline(__always)
    mutating func write(hexGroup g: UInt16) {
        var shift = 12
        while shift > 0 && g >> UInt16(shift) == 0 { shift &-= 4 }
        while shift >= 0 {
            let d = UInt8(truncatingIfNeeded: g >> UInt16(shift) & 0xF)
            write(byte: d < 10 ? d &+ 0x30 : d &+ 0x57)
            shift &-= 4
        }
    }

    /// Writes `v` big-endian in `bytes` bytes.
    @inline(__always)
    mutating func write(bigEndian v: UInt64, bytes: Int) {
        var k = bytes
        while k > 0 {
            k &-= 1
            write(byte: UInt8(truncatingIfNeeded: v >> UInt64(k &* 8)))
        }
    }
}

/// Address text as a PROXY v1 line carries it, read strictly.
enum ProxyAddressText {
    /// A dotted quad in `s[range]`: four decimal octets 0–255, no leading zeros, nothing else.
    static func ipv4(_ s: Span<UInt8>, _ range: Range<Int>) -> UInt32? {
        var i = range.lowerBound
        let end = range.upperBound
        var value: UInt32 = 0
        var octet = 0
        while true {
            let start = i
            var v: UInt32 = 0
            while i < end && ByteClass.isDigit(s[i]) && i &- start < 3 {
                v = v &* 10 &+ UInt32(s[i] &- 0x30)
                i &+= 1
            }
            let digits = i &- start
            guard digits >= 1, v <= 255, digits == 1 || s[start] != 0x30 else { return nil }
            value = value << 8 | v
            octet &+= 1
            if octet == 4 { return i == end ? value : nil }
            guard i < end, s[i] == 0x2E else { return nil }
            i &+= 1
        }
    }

    /// IPv6 text in `s[range]` (RFC 4291 §2.2): eight groups of 1–4 hex digits, at most one
    /// "::" standing for one or more zero groups, the last 32 bits optionally a dotted quad.
    /// No zone, no brackets.
    /// - Returns: the two big-endian halves, or nil.
    static func ipv6(_ s: Span<UInt8>, _ range: Range<Int>) -> (hi: UInt64, lo: UInt64)? {
        var i = range.lowerBound
        let end = range.upperBound
        guard end &- i >= 2, end &- i <= 45 else { return nil }
        var head: (hi: UInt64, lo: UInt64) = (0, 0)  // groups before "::", shifted in
        var headCount = 0
        var tail: (hi: UInt64, lo: UInt64) = (0, 0)  // groups after "::"
        var tailCount = 0
        var compressed = false

        @inline(__always) func push(_ g: UInt64, _ acc: inout (hi: UInt64, lo: UInt64), _ count: inout Int) {
            acc.hi = acc.hi << 16 | acc.lo >> 48
            acc.lo = acc.lo << 16 | g
            count &+= 1
        }

        if s[i] == asciiColon {
            guard s[i &+ 1] == asciiColon else { return nil }
            compressed = true
            i &+= 2
        }
        while i < end {
            // A dotted quad may stand for the last two groups.
            var j = i
            while j < end && s[j] != asciiColon && s[j] != 0x2E { j &+= 1 }
            if j < end && s[j] == 0x2E {
                guard let v4 = Self.ipv4(s, i..<end), headCount &+ tailCount <= 6 else { return nil }
                if compressed {
                    push(UInt64(v4 >> 16), &tail, &tailCount)
                    push(UInt64(v4 & 0xFFFF), &tail, &tailCount)
                } else {
                    push(UInt64(v4 >> 16), &head, &headCount)
                    push(UInt64(v4 & 0xFFFF), &head, &headCount)
                }
                i = end
                break
            }
            let digits = j &- i
            guard digits >= 1, digits <= 4, headCount &+ tailCount < 8 else { return nil }
            var g: UInt64 = 0
            while i < j {
                guard let d = ByteClass.hexValue(s[i]) else { return nil }
                g = g << 4 | UInt64(d)
                i &+= 1
            }
            if compressed {
                push(g, &tail, &tailCount)
            } else {
                push(g, &head, &headCount)
            }
            if i == end { break }
            i &+= 1  // the ':'
            guard i < end else { return nil }  // a trailing single ':'
            if s[i] == asciiColon {
                guard !compressed else { return nil }
                compressed = true
                i &+= 1
            }
        }
        let groups = headCount &+ tailCount
        guard compressed ? groups <= 7 : groups == 8 else { return nil }
        // Move the head groups to the top: shift left by the groups that follow them.
        let shift = (8 &- headCount) &* 16
        var hi = head.hi
        var lo = head.lo
        if shift >= 128 {
            hi = 0
            lo = 0
        } else if shift >= 64 {
            hi = lo << UInt64(shift &- 64)
            lo = 0
        } else if shift > 0 {
            hi = hi << UInt64(shift) | lo >> UInt64(64 &- shift)
            lo = lo << UInt64(shift)
        }
        return (hi | tail.hi, lo | tail.lo)
    }
}
