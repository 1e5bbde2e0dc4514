/// Reads a response head that `HTTPHeadWriter` wrote: `HTTP/1.1 DDD[ reason]` CR LF, then
/// `Name: value` lines each ended by CR LF, then CR LF. Nothing is checked but that shape:
/// the writers copy names and values from a head the parsers accepted, or write their own.
/// A line of another shape (no colon, a bare LF, no end) stops the cursor with `failed` set.
public struct WrittenResponseHead {
    /// The three-digit status.
    public let status: UInt16
    /// After `next()` has returned nil without `failed`: the head's length, its last CR LF
    /// included.
    public private(set) var headLength: Int32 = 0
    /// The head is not of the writers' shape.
    public private(set) var failed = false
    private let base: UnsafePointer<UInt8>
    private let count: Int
    private var at: Int

    /// Nil when `bytes` does not open with a status line of the writers' shape.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        // "HTTP/1.1 DDD" then CR LF or " reason" CR LF.
        guard bytes.count >= 14 else { return nil }
        // SAFETY: `bytes` holds at least 14 bytes; every read below is checked against `count`.
        let p = bytes.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self)
        let d0 = p[9] &- 0x30
        let d1 = p[10] &- 0x30
        let d2 = p[11] &- 0x30
        guard p[8] == asciiSP, d0 < 10, d1 < 10, d2 < 10 else { return nil }
        let lf = ByteClass.firstLF(p, from: 12, to: bytes.count)
        guard lf < bytes.count, p[lf &- 1] == asciiCR else { return nil }
        status = UInt16(d0) &* 100 &+ UInt16(d1) &* 10 &+ UInt16(d2)
        base = p
        count = bytes.count
        at = lf &+ 1
    }

    /// The next field's name and value (offsets into the bytes), or nil at the head's end or
    /// when `failed`.
    public mutating func next() -> (name: Range<Int>, value: Range<Int>)? {
        guard !failed else { return nil }
        let p = base
        let i = at
        // SAFETY (every read): `p` holds `count` bytes; each index is checked against `count`.
        guard i &+ 1 < count else {
            failed = true
            return nil
        }
        if p[i] == asciiCR {
            guard p[i &+ 1] == asciiLF else {
                failed = true
                return nil
            }
            headLength = Int32(truncatingIfNeeded: i &+ 2)
            return nil
        }
        let lf = ByteClass.firstLF(p, from: i, to: count)
        var colon = i
        while colon < lf && p[colon] != asciiColon { colon &+= 1 }
        guard lf < count, colon > i, colon < lf, p[lf &- 1] == asciiCR else {
            failed = true
            return nil
        }
        var valueStart = colon &+ 1
        let valueEnd = lf &- 1
        while valueStart < valueEnd && ByteClass.isOWS(p[valueStart]) { valueStart &+= 1 }
        at = lf &+ 1
        return (i..<colon, valueStart..<valueEnd)
    }
}
