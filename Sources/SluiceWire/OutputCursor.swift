/// Appends bytes to a caller-owned buffer, remembering whether anything did not fit (later
/// writes are then skipped, so a writer checks once at the end).
struct OutputCursor {
    let out: UnsafeMutableRawBufferPointer
    var count = 0
    var overflow = false

    init(_ out: UnsafeMutableRawBufferPointer) {
        self.out = out
    }

    /// The bytes written, or nil when some did not fit.
    var result: Int? { overflow ? nil : count }

    @inline(__always)
    mutating func reserve(_ n: Int) -> UnsafeMutableRawPointer? {
        guard !overflow, n <= out.count &- count, let base = out.baseAddress else {
            if n > 0 { overflow = true }
            return nil
        }
        // SAFETY: count + n <= out.count was checked just above.
        let p = base + count
        count &+= n
        return p
    }

    @inline(__always)
    mutating func write(_ bytes: StaticString) {
        let n = bytes.utf8CodeUnitCount
        guard let p = reserve(n) else { return }
        // SAFETY: `p` has room for n bytes; a StaticString's bytes live for the whole program.
        p.copyMemory(from: bytes.utf8Start, byteCount: n)
    }

    @inline(__always)
    mutating func write(_ source: UnsafeRawBufferPointer, _ range: Range<Int32>) {
        let lo = Int(range.lowerBound)
        let hi = Int(range.upperBound)
        precondition(lo >= 0 && lo <= hi && hi <= source.count, "range outside the parsed buffer")
        write(UnsafeRawBufferPointer(rebasing: source[lo..<hi]))
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard let p = reserve(bytes.count), let from = bytes.baseAddress else { return }
        // SAFETY: `p` has room for bytes.count bytes; `bytes` is a valid buffer of the caller.
        p.copyMemory(from: from, byteCount: bytes.count)
    }

    @inline(__always)
    mutating func write(byte: UInt8) {
        guard let p = reserve(1) else { return }
        p.storeBytes(of: byte, as: UInt8.self)
    }

    /// Writes `value` in decimal.
    @inline(__always)
    mutating func write(decimal value: UInt64) {
        var digits = 1
        var v = value
        while v >= 10 {
            v /= 10
            digits &+= 1
        }
        guard let p = reserve(digits) else { return }
        v = value
        var i = digits
        while i > 0 {
            i &-= 1
            p.storeBytes(of: UInt8(truncatingIfNeeded: v % 10) &+ 0x30, toByteOffset: i, as: UInt8.self)
            v /= 10
        }
    }
}
