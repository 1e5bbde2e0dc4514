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

    /// The offset of the first byte at or after `from` (and before `end`) that may not be in a
    /// field value (see `isFieldValue`), or `end`. Eight bytes at a time: a word is skipped
    /// when none of its bytes is below 0x20 or DEL; a word that has one is walked bytewise
    /// (HTAB is below 0x20 yet allowed).
    @inline(__always)
    static func fieldValueEnd(_ p: UnsafePointer<UInt8>, from: Int, to end: Int) -> Int {
        var i = from
        while true {
            while i &+ 8 <= end {
                // SAFETY: the eight bytes at `i` lie below `end`, inside the caller's buffer.
                let w = UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
                if hasControl(w) { break }
                i &+= 8
            }
            let stop = min(i &+ 8, end)
            while i < stop && isFieldValue(p[i]) { i &+= 1 }
            if i < stop || i == end { return i }
        }
    }

    /// The offset of the first LF at or after `from` (and before `end`), or `end`.
    @inline(__always)
    static func firstLF(_ p: UnsafePointer<UInt8>, from: Int, to end: Int) -> Int {
        var i = from
        while i &+ 8 <= end {
            // SAFETY: the eight bytes at `i` lie below `end`, inside the caller's buffer.
            let w = UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
            let m = zeroBytes(w ^ 0x0a0a_0a0a_0a0a_0a0a)
            if m != 0 { return i &+ (m.trailingZeroBitCount &>> 3) }
            i &+= 8
        }
        while i < end && p[i] != asciiLF { i &+= 1 }
        return i
    }

    /// True when a byte of `w` is below 0x20 or is DEL (0x7F).
    @inline(__always)
    static func hasControl(_ w: UInt64) -> Bool {
        let below = (w &- 0x2020_2020_2020_2020) & ~w & 0x8080_8080_8080_8080
        return below | zeroBytes(w ^ 0x7f7f_7f7f_7f7f_7f7f) != 0
    }

    /// The high bit of the lowest zero byte of `w` (and maybe of higher bytes) set; zero when
    /// no byte is zero.
    @inline(__always)
    static func zeroBytes(_ w: UInt64) -> UInt64 {
        (w &- 0x0101_0101_0101_0101) & ~w & 0x8080_8080_8080_8080
    }

    /// True when the `count` bytes at `p` equal `lower`'s, each OR 0x20 (see
    /// `Span.equalsLowercase`). Compared a word at a time.
    @inline(__always)
    static func equalsLowercase(_ p: UnsafePointer<UInt8>, _ count: Int, _ lower: StaticString) -> Bool {
        guard count == lower.utf8CodeUnitCount else { return false }
        let a = UnsafeRawPointer(p)
        let b = UnsafeRawPointer(lower.utf8Start)
        // SAFETY: every load reads bytes below `count`, inside both `p`'s range and `lower`.
        if count >= 8 {
            var i = 0
            while i &+ 8 < count {
                if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) | 0x2020_2020_2020_2020
                    != b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                {
                    return false
                }
                i &+= 8
            }
            let last = count &- 8
            return a.loadUnaligned(fromByteOffset: last, as: UInt64.self) | 0x2020_2020_2020_2020
                == b.loadUnaligned(fromByteOffset: last, as: UInt64.self)
        }
        if count >= 4 {
            let last = count &- 4
            return a.loadUnaligned(as: UInt32.self) | 0x2020_2020 == b.loadUnaligned(as: UInt32.self)
                && a.loadUnaligned(fromByteOffset: last, as: UInt32.self) | 0x2020_2020
                    == b.loadUnaligned(fromByteOffset: last, as: UInt32.self)
        }
        var i = 0
        while i < count {
            if p[i] | 0x20 != lower.utf8Start[i] { return false }
            i &+= 1
        }
        return true
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
        guard range.count == lower.utf8CodeUnitCount else { return false }
        if range.isEmpty { return true }
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range outside the span")
        // SAFETY: `range` lies inside the span (checked above); the pointer does not escape.
        return withUnsafeBufferPointer { buffer in
            ByteClass.equalsLowercase(buffer.baseAddress.unsafelyUnwrapped + range.lowerBound, range.count, lower)
        }
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
