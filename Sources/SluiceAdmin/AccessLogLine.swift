/// Writes one log line into memory the caller owns: literals, decimals, escaped strings,
/// addresses. No allocation, no `String`. Bounds-checked: what does not fit past `capacity`
/// is not written and `overflow` says so (the formatter sizes lines so that it never happens).
///
/// Runs on the access-log writer thread only.
struct AccessLogLine {
    private let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    private(set) var count = 0
    private(set) var overflow = false

    init(_ base: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inline(__always)
    mutating func put(_ byte: UInt8) {
        guard count < capacity else {
            overflow = true
            return
        }
        // SAFETY: count < capacity, and `base` points at `capacity` writable bytes (init).
        base[count] = byte
        count &+= 1
    }

    @inline(__always)
    mutating func put(_ text: StaticString) {
        put(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// `bytes` as they are.
    @inline(__always)
    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n <= capacity &- count else {
            overflow = true
            return
        }
        guard let from = bytes.baseAddress else { return }
        // SAFETY: `n` bytes are free past `count` (checked just above). Short copies (field
        // names, most values) are cheaper as a loop than as a call to memcpy.
        let to = base + count
        if n <= 16 {
            for k in 0..<n { to[k] = from.load(fromByteOffset: k, as: UInt8.self) }
        } else {
            UnsafeMutableRawPointer(to).copyMemory(from: from, byteCount: n)
        }
        count &+= n
    }

    /// "00" to "99", for writing decimals two digits at a time.
    private static let digitPairs: StaticString =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    /// `value` in decimal.
    mutating func put(decimal value: UInt64) {
        var digits = 1
        var bound: UInt64 = 10
        while digits < 20 && value >= bound {
            digits &+= 1
            bound = bound &* 10
        }
        guard digits <= capacity &- count else {
            overflow = true
            return
        }
        let pairs = Self.digitPairs.utf8Start
        var v = value
        var i = count &+ digits
        // SAFETY (the stores): count <= i - 1 < count + digits <= capacity, checked above;
        // (the loads) a pair's index is 2 * (v % 100) + {0, 1} < 200, the table's length.
        while v >= 100 {
            let pair = Int(v % 100) &* 2
            v /= 100
            i &-= 2
            base[i] = pairs[pair]
            base[i &+ 1] = pairs[pair &+ 1]
        }
        if v >= 10 {
            let pair = Int(v) &* 2
            base[i &- 2] = pairs[pair]
            base[i &- 1] = pairs[pair &+ 1]
        } else {
            base[i &- 1] = UInt8(truncatingIfNeeded: v) &+ 0x30
        }
        count &+= digits
    }

    mutating func put(decimal value: Int64) {
        if value < 0 {
            put(UInt8(ascii: "-"))
            put(decimal: value.magnitude)
        } else {
            put(decimal: UInt64(value))
        }
    }

    /// `value` with exactly two digits (0-99).
    @inline(__always)
    mutating func put(twoDigits value: Int) {
        put(UInt8(truncatingIfNeeded: value / 10) &+ 0x30)
        put(UInt8(truncatingIfNeeded: value % 10) &+ 0x30)
    }

    /// `value` with exactly three digits (0-999).
    @inline(__always)
    mutating func put(threeDigits value: Int) {
        put(UInt8(truncatingIfNeeded: value / 100) &+ 0x30)
        put(twoDigits: value % 100)
    }

    /// Microseconds as milliseconds with three decimals: 1234 → `1.234`, 5 → `0.005`.
    mutating func put(millisFromMicros micros: Int64) {
        put(decimal: micros / 1_000)
        put(UInt8(ascii: "."))
        put(threeDigits: Int(micros % 1_000))
    }

    @inline(__always)
    mutating func put(hexDigit value: UInt8) {
        put(value < 10 ? value &+ 0x30 : value &+ 0x57)
    }

    /// `value` in lower-case hexadecimal without leading zeros.
    mutating func put(hex value: UInt16) {
        var started = false
        for shift in stride(from: 12, through: 0, by: -4) {
            let digit = UInt8(truncatingIfNeeded: value >> UInt16(shift)) & 0xF
            if digit != 0 || started || shift == 0 {
                put(hexDigit: digit)
                started = true
            }
        }
    }
}

// MARK: - Strings

extension AccessLogLine {
    /// `bytes` as a JSON string, quotes included. `"` and `\` are escaped, control bytes and
    /// DEL become `\n`, `\t`… or `\u00XX`; valid UTF-8 is copied; each byte of an invalid
    /// sequence becomes `\u00XX` (its Latin-1 reading), so nothing is lost and the line
    /// stays valid JSON.
    mutating func putJSONString(_ bytes: UnsafeBufferPointer<UInt8>) {
        put(UInt8(ascii: "\""))
        putEscaped(bytes, json: true)
        put(UInt8(ascii: "\""))
    }

    /// `bytes` quoted for the text form: `"` and `\` escaped with a backslash, control bytes,
    /// DEL and bytes of invalid UTF-8 as `\xHH`, valid UTF-8 copied. `cut` appends `...`
    /// inside the quotes (a value longer than its field held).
    mutating func putQuoted(_ bytes: UnsafeBufferPointer<UInt8>, cut: Bool = false) {
        put(UInt8(ascii: "\""))
        putEscaped(bytes, json: false)
        if cut { put("...") }
        put(UInt8(ascii: "\""))
    }

    /// The escaping of `putJSONString` (`json`) or `putQuoted`. Runs of bytes that need no
    /// escape (printable ASCII but `"` and `\`, well-formed UTF-8) are copied whole.
    private mutating func putEscaped(_ bytes: UnsafeBufferPointer<UInt8>, json: Bool) {
        var i = 0
        var run = 0
        while i < bytes.count {
            // Eight plain bytes at a time while there are eight.
            if i &+ 8 <= bytes.count, let start = bytes.baseAddress,
                !Self.needsLook(UnsafeRawPointer(start + i).loadUnaligned(as: UInt64.self))
            {
                i &+= 8
                continue
            }
            let byte = bytes[i]
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                i &+= 1
                continue
            }
            if byte >= 0x80 {
                let length = Self.utf8SequenceLength(bytes, at: i)
                if length > 0 {
                    i &+= length
                    continue
                }
            }
            put(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[run..<i])))
            if json { putJSONEscape(byte) } else { putTextEscape(byte) }
            i &+= 1
            run = i
        }
        put(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[run..<i])))
    }

    /// Whether any of the eight bytes in `word` is a control byte, DEL, `"`, `\\` or not
    /// ASCII (the bytes `putEscaped` must look at one by one).
    @inline(__always)
    static func needsLook(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func hasZero(_ x: UInt64) -> Bool { (x &- ones) & ~x & highs != 0 }
        let below32 = (word &- 0x2020_2020_2020_2020) & ~word & highs != 0
        return word & highs != 0 || below32 || hasZero(word ^ 0x7F7F_7F7F_7F7F_7F7F)
            || hasZero(word ^ 0x2222_2222_2222_2222) || hasZero(word ^ 0x5C5C_5C5C_5C5C_5C5C)
    }

    private mutating func putJSONEscape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): put("\\\"")
        case UInt8(ascii: "\\"): put("\\\\")
        case 0x0A: put("\\n")
        case 0x0D: put("\\r")
        case 0x09: put("\\t")
        case 0x08: put("\\b")
        case 0x0C: put("\\f")
        default: putUnicodeEscape(byte)
        }
    }

    private mutating func putTextEscape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): put("\\\"")
        case UInt8(ascii: "\\"): put("\\\\")
        default: putHexEscape(byte)
        }
    }

    private mutating func putUnicodeEscape(_ byte: UInt8) {
        put("\\u00")
        put(hexDigit: byte >> 4)
        put(hexDigit: byte & 0xF)
    }

    private mutating func putHexEscape(_ byte: UInt8) {
        put("\\x")
        put(hexDigit: byte >> 4)
        put(hexDigit: byte & 0xF)
    }

    /// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no
    /// surrogates, nothing above U+10FFFF) that starts at `i` with a byte ≥ 0x80, or 0.
    static func utf8SequenceLength(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        let lead = bytes[i]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        default: return 0
        }
        guard i &+ length <= bytes.count else { return 0 }
        let second = bytes[i &+ 1]
        guard second >= low && second <= high else { return 0 }
        for k in 2..<length where bytes[i &+ k] & 0xC0 != 0x80 { return 0 }
        return length
    }
}

// MARK: - Addresses

extension AccessLogLine {
    /// `ip:port`: an IPv4 address (also one carried IPv4-mapped) as dotted decimal, an IPv6
    /// address in RFC 5952 form within brackets.
    mutating func putAddress(v6: Bool, hi: UInt64, lo: UInt64, port: UInt16) {
        let mapped = hi == 0 && lo >> 32 == 0xFFFF
        if !v6 || mapped {
            let v4 = UInt32(truncatingIfNeeded: lo)
            put(octet: UInt8(truncatingIfNeeded: v4 >> 24))
            put(UInt8(ascii: "."))
            put(octet: UInt8(truncatingIfNeeded: v4 >> 16))
            put(UInt8(ascii: "."))
            put(octet: UInt8(truncatingIfNeeded: v4 >> 8))
            put(UInt8(ascii: "."))
            put(octet: UInt8(truncatingIfNeeded: v4))
        } else {
            put(UInt8(ascii: "["))
            putIPv6(hi: hi, lo: lo)
            put(UInt8(ascii: "]"))
        }
        put(UInt8(ascii: ":"))
        put(decimal: UInt64(port))
    }

    /// 0-255 in decimal, without leading zeros.
    @inline(__always)
    private mutating func put(octet: UInt8) {
        if octet >= 100 {
            put(threeDigits: Int(octet))
        } else if octet >= 10 {
            put(twoDigits: Int(octet))
        } else {
            put(octet &+ 0x30)
        }
    }

    /// RFC 5952: lower case, no leading zeros, the longest run of two or more zero groups
    /// (the first of equals) as `::`.
    private mutating func putIPv6(hi: UInt64, lo: UInt64) {
        var groups: InlineArray<8, UInt16> = .init(repeating: 0)
        for k in 0..<4 {
            groups[k] = UInt16(truncatingIfNeeded: hi >> UInt64(48 - 16 * k))
            groups[k + 4] = UInt16(truncatingIfNeeded: lo >> UInt64(48 - 16 * k))
        }
        var bestStart = -1
        var bestLength = 1
        var k = 0
        while k < 8 {
            guard groups[k] == 0 else {
                k += 1
                continue
            }
            var end = k
            while end < 8 && groups[end] == 0 { end += 1 }
            if end - k > bestLength {
                bestStart = k
                bestLength = end - k
            }
            k = end
        }
        k = 0
        while k < 8 {
            if k == bestStart {
                put("::")
                k += bestLength
                continue
            }
            if k > 0 && k != bestStart + bestLength { put(UInt8(ascii: ":")) }
            put(hex: groups[k])
            k += 1
        }
    }
}

// MARK: - Time

/// RFC 3339 UTC time stamps with milliseconds, `2025-01-31T23:59:59.123Z`. Remembers the
/// text of the last second, since consecutive records mostly share it.
struct AccessLogClock {
    private var second = Int64.min
    private var stamp: InlineArray<19, UInt8> = .init(repeating: 0)

    /// Writes `micros` (since the Unix epoch) to `line`.
    mutating func put(_ micros: Int64, to line: inout AccessLogLine) {
        let (seconds, fraction) = Self.floorDivide(micros, 1_000_000)
        if seconds != second {
            second = seconds
            render(seconds)
        }
        stamp.span.withUnsafeBytes { line.put($0) }
        line.put(UInt8(ascii: "."))
        line.put(threeDigits: Int(fraction / 1_000))
        line.put(UInt8(ascii: "Z"))
    }

    private mutating func render(_ seconds: Int64) {
        let (days, secondOfDay) = Self.floorDivide(seconds, 86_400)
        let (year, month, day) = Self.civil(fromDays: days)
        var line = InlineArray<19, UInt8>(repeating: 0)
        func digits(_ value: Int, at offset: Int, width: Int) {
            var v = value
            for k in stride(from: width - 1, through: 0, by: -1) {
                line[offset + k] = UInt8(truncatingIfNeeded: v % 10) &+ 0x30
                v /= 10
            }
        }
        digits(Int(year), at: 0, width: 4)
        line[4] = UInt8(ascii: "-")
        digits(month, at: 5, width: 2)
        line[7] = UInt8(ascii: "-")
        digits(day, at: 8, width: 2)
        line[10] = UInt8(ascii: "T")
        digits(Int(secondOfDay / 3_600), at: 11, width: 2)
        line[13] = UInt8(ascii: ":")
        digits(Int(secondOfDay / 60 % 60), at: 14, width: 2)
        line[16] = UInt8(ascii: ":")
        digits(Int(secondOfDay % 60), at: 17, width: 2)
        stamp = line
    }

    static func floorDivide(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        var quotient = value / divisor
        var remainder = value % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }

    /// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's algorithm).
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
