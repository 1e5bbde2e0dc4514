// Byte classes of RFC 9110/9112 as bit masks: a lookup costs a shift and an AND, with no table
// in memory (a global array would pay a lazy-initialisation check on every access).

@usableFromInline let asciiCR: UInt8 = 0x0D
@usableFromInline let asciiLF: UInt8 = 0x0A
@usableFromInline let asciiSP: UInt8 = 0x20
@usableFromInline let asciiHT: UInt8 = 0x09
@usableFromInline let asciiColon: UInt8 = 0x3A
@usableFromInline let asciiComma: UInt8 = 0x2C
@usableFromInline let asciiSemicolon: UInt8 = 0x3B
@usableFromInline let asciiQuote: UInt8 = 0x22
@usableFromInline let asciiBackslash: UInt8 = 0x5C
@usableFromInline let asciiSlash: UInt8 = 0x2F
@usableFromInline let asciiQuestion: UInt8 = 0x3F
@usableFromInline let asciiPercent: UInt8 = 0x25
@usableFromInline let asciiDot: UInt8 = 0x2E

enum ByteClass {
    /// tchar: "!#$%&'*+-.^_`|~", DIGIT, ALPHA (RFC 9110 §5.6.2).
    @inline(__always)
    static func isTchar(_ b: UInt8) -> Bool {
        inMask(b, low: 0x03ff_6cfa_0000_0000, high: 0x57ff_ffff_c7ff_fffe)
    }

    /// reg-name characters of RFC 3986 apart from pct-encoded: unreserved and sub-delims.
    @inline(__always)
    static func isRegName(_ b: UInt8) -> Bool {
        inMask(b, low: 0x2bff_7fd2_0000_0000, high: 0x47ff_fffe_87ff_fffe)
    }

    /// unreserved: ALPHA, DIGIT, "-", ".", "_", "~" (RFC 3986 §2.3).
    @inline(__always)
    static func isUnreserved(_ b: UInt8) -> Bool {
        inMask(b, low: 0x03ff_6000_0000_0000, high: 0x47ff_fffe_87ff_fffe)
    }

    /// field-vchar, SP or HTAB: what a field value may hold (RFC 9110 §5.5). Every other
    /// control byte, NUL, CR and LF included, is refused.
    @inline(__always)
    static func isFieldValue(_ b: UInt8) -> Bool {
        b == asciiHT || (b >= 0x20 && b != 0x7F)
    }

    /// A byte of a request-target: no control, space, DEL or '#' (a fragment is never sent).
    @inline(__always)
    static func isTarget(_ b: UInt8) -> Bool {
        b > 0x20 && b != 0x7F && b != 0x23
    }

    @inline(__always)
    static func isOWS(_ b: UInt8) -> Bool {
        b == asciiSP || b == asciiHT
    }

    @inline(__always)
    static func isDigit(_ b: UInt8) -> Bool {
        b &- 0x30 < 10
    }

    /// The value of a hexadecimal digit, or nil.
    @inline(__always)
    static func hexValue(_ b: UInt8) -> UInt8? {
        if b &- 0x30 < 10 { return b &- 0x30 }
        let l = b | 0x20
        if l &- 0x61 < 6 { return l &- 0x61 &+ 10 }
        return nil
    }

    @inline(__always)
    private static func inMask(_ b: UInt8, low: UInt64, high: UInt64) -> Bool {
        if b < 64 { return (low >> UInt64(b)) & 1 != 0 }
        if b < 128 { return (high >> UInt64(b &- 64)) & 1 != 0 }
        return false
    }
}

extension Span where Element == UInt8 {
    /// True when `self[range]` equals `lower`, ignoring ASCII case. `lower` must be lower-case
    /// letters, digits and '-'; the bytes compared must already be known to hold no control
    /// byte (OR-ing 0x20 maps CR onto '-').
    @inline(__always)
    func equalsLowercase(_ range: Range<Int>, _ lower: StaticString) -> Bool {
        let n = lower.utf8CodeUnitCount
        guard range.count == n else { return false }
        let p = lower.utf8Start
        var i = 0
        while i < n {
            if self[range.lowerBound &+ i] | 0x20 != p[i] { return false }
            i &+= 1
        }
        return true
    }

    /// True when `self[a]` and `self[b]` hold the same token, ignoring ASCII case.
    @inline(__always)
    func equalsIgnoringCase(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        var i = 0
        while i < a.count {
            let x = self[a.lowerBound &+ i]
            let y = self[b.lowerBound &+ i]
            if x != y {
                let lx = x | 0x20
                guard lx == y | 0x20, lx &- 0x61 < 26 else { return false }
            }
            i &+= 1
        }
        return true
    }

    /// `range` without leading and trailing SP/HTAB.
    @inline(__always)
    func trimmingOWS(_ range: Range<Int>) -> Range<Int> {
        var lo = range.lowerBound
        var hi = range.upperBound
        while lo < hi && ByteClass.isOWS(self[lo]) { lo &+= 1 }
        while hi > lo && ByteClass.isOWS(self[hi &- 1]) { hi &-= 1 }
        return lo..<hi
    }
}
