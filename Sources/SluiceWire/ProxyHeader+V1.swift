extension ProxyHeader {
    enum Stop: Error {
        case needMore, invalid
    }

    /// The v1 line after "PROXY ": "UNKNOWN" then anything up to CRLF, or
    /// "TCP4|TCP6 src dst sport dport" and CRLF, single spaces, 107 bytes at most.
    /// Each field is judged as soon as the space or CR after it arrives.
    static func parseV1(_ s: Span<UInt8>) -> ProxyParse {
        do throws(Stop) {
            var i = Self.signatureV1.utf8CodeUnitCount
            let v6: Bool
            switch try Self.byte(s, i) {
            case 0x54:  // "TCP4 " or "TCP6 "
                try Self.expect(s, &i, "TCP")
                let version = try Self.byte(s, i)
                guard version == 0x34 || version == 0x36 else { throw .invalid }
                v6 = version == 0x36
                i &+= 1
                try Self.expect(s, &i, " ")
            case 0x55:
                try Self.expect(s, &i, "UNKNOWN")
                var b = try Self.byte(s, i)
                if b == asciiSP {
                    // Whatever follows is ignored, up to the CR.
                    while b != asciiCR {
                        guard b != asciiLF else { throw .invalid }
                        i &+= 1
                        b = try Self.byte(s, i)
                    }
                }
                try Self.expect(s, &i, "\r\n")
                return .header(length: Int32(truncatingIfNeeded: i), source: nil, destination: nil, local: false)
            default:
                throw .invalid
            }

            let sourceText = try Self.field(s, &i, then: asciiSP)
            let source = try Self.address(s, sourceText, v6: v6)
            let destinationText = try Self.field(s, &i, then: asciiSP)
            let destination = try Self.address(s, destinationText, v6: v6)
            let sourcePort = try Self.port(s, Self.field(s, &i, then: asciiSP))
            let destinationPort = try Self.port(s, Self.field(s, &i, then: asciiCR))
            try Self.expect(s, &i, "\n")
            return .header(
                length: Int32(truncatingIfNeeded: i),
                source: ProxyAddress(v6: v6, hi: source.hi, lo: source.lo, port: sourcePort),
                destination: ProxyAddress(v6: v6, hi: destination.hi, lo: destination.lo, port: destinationPort),
                local: false)
        } catch {
            return error == .needMore ? .needMore : .invalid
        }
    }

    /// The byte at `i` of the line.
    /// - Throws: `.invalid` past the longest line, `.needMore` past the input.
    @inline(__always)
    static func byte(_ s: Span<UInt8>, _ i: Int) throws(Stop) -> UInt8 {
        if i >= Self.maxV1Bytes { throw .invalid }
        if i >= s.count { throw .needMore }
        return s[i]
    }

    /// Consumes `text` at `i`.
    @inline(__always)
    static func expect(_ s: Span<UInt8>, _ i: inout Int, _ text: StaticString) throws(Stop) {
        let p = text.utf8Start
        for k in 0..<text.utf8CodeUnitCount {
            guard try Self.byte(s, i) == p[k] else { throw .invalid }
            i &+= 1
        }
    }

    /// A non-empty run of bytes other than SP, CR and LF, then `end` (consumed).
    /// - Returns: the run's range.
    static func field(_ s: Span<UInt8>, _ i: inout Int, then end: UInt8) throws(Stop) -> Range<Int> {
        let start = i
        var b = try Self.byte(s, i)
        while b != asciiSP && b != asciiCR && b != asciiLF {
            i &+= 1
            b = try Self.byte(s, i)
        }
        guard b == end, i > start else { throw .invalid }
        i &+= 1
        return start..<(i &- 1)
    }

    static func address(_ s: Span<UInt8>, _ range: Range<Int>, v6: Bool) throws(Stop) -> (hi: UInt64, lo: UInt64) {
        if v6 {
            guard let a = ProxyAddressText.ipv6(s, range) else { throw .invalid }
            return a
        }
        guard let a = ProxyAddressText.ipv4(s, range) else { throw .invalid }
        return (0, UInt64(a))
    }

    /// 0–65535 in decimal, without leading zeros.
    static func port(_ s: Span<UInt8>, _ range: Range<Int>) throws(Stop) -> UInt16 {
        guard range.count <= 5, range.count == 1 || s[range.lowerBound] != 0x30 else { throw .invalid }
        var v = 0
        for k in range {
            guard ByteClass.isDigit(s[k]) else { throw .invalid }
            v = v &* 10 &+ Int(s[k] &- 0x30)
        }
        guard v <= 65535 else { throw .invalid }
        return UInt16(v)
    }
}
