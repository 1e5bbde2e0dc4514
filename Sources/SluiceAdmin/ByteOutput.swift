/// A growable byte buffer that the admin renderers (metrics, JSON, HTML) write into and the
/// admin listener sends from: one memory block, doubled when full, written with `memcpy`-like
/// copies and hand-rolled number formatting (no `String` per line, no `Array` re-checks).
///
/// Ownership: one thread at a time. A renderer on the admin worker thread fills it, then
/// hands it to the admin thread through the completion queue and never touches it again.
public final class ByteOutput: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): see above; the instance moves between threads, it is
    // never used by two at once.
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    public private(set) var count: Int = 0

    public init(capacity: Int = 4096) {
        self.capacity = max(capacity, 64)
        base = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    /// The bytes written so far; valid until the next write.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// A copy of the bytes (tests, small answers).
    public var array: [UInt8] { Array(bytes) }

    /// The bytes as UTF-8 text (tests).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    public func removeAll() { count = 0 }

    /// Makes room for `n` more bytes and returns where they go.
    @inline(__always)
    private func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        if capacity &- count < n { grow(n) }
        // SAFETY: capacity - count >= n after `grow`, so [count, count + n) is inside the block.
        let p = base + count
        count &+= n
        return p
    }

    private func grow(_ n: Int) {
        var next = capacity * 2
        while next - count < n { next *= 2 }
        let block = UnsafeMutableRawPointer.allocate(byteCount: next, alignment: 16)
        // SAFETY: both blocks hold at least `count` bytes; they do not overlap.
        block.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = block
        capacity = next
    }

    @inline(__always)
    public func write(_ text: StaticString) {
        let n = text.utf8CodeUnitCount
        // SAFETY: a StaticString's bytes live for the whole program; `reserve` gave n bytes.
        reserve(n).copyMemory(from: text.utf8Start, byteCount: n)
    }

    @inline(__always)
    public func write(_ raw: UnsafeRawBufferPointer) {
        guard let from = raw.baseAddress, raw.count > 0 else { return }
        // SAFETY: `raw` is valid for the call; `reserve` gave raw.count bytes.
        reserve(raw.count).copyMemory(from: from, byteCount: raw.count)
    }

    @inline(__always)
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func write(_ text: String) {
        var copy = text
        copy.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    public func write(byte: UInt8) {
        reserve(1).storeBytes(of: byte, as: UInt8.self)
    }

    /// `value` in decimal.
    @inline(__always)
    public func write(unsigned value: UInt64) {
        var digits = 1
        var v = value
        while v >= 10 {
            v /= 10
            digits &+= 1
        }
        let p = reserve(digits)
        v = value
        var i = digits
        while i > 0 {
            i &-= 1
            p.storeBytes(of: UInt8(truncatingIfNeeded: v % 10) &+ 0x30, toByteOffset: i, as: UInt8.self)
            v /= 10
        }
    }

    /// `value` in decimal, with a minus sign when negative.
    @inline(__always)
    public func write(decimal value: Int) {
        if value < 0 {
            write(byte: 0x2D)
            write(unsigned: value.magnitude.toUInt64)
        } else {
            write(unsigned: UInt64(value))
        }
    }

    /// `micros` microseconds as seconds, exactly: `1.25` for 1,250,000, `0.000001` for 1,
    /// `3` for 3,000,000 (no trailing zeros, no exponent).
    public func write(microsAsSeconds micros: UInt64) {
        write(unsigned: micros / 1_000_000)
        var fraction = micros % 1_000_000
        guard fraction != 0 else { return }
        var digits = 6
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        write(byte: 0x2E)
        let p = reserve(digits)
        var i = digits
        while i > 0 {
            i &-= 1
            p.storeBytes(of: UInt8(truncatingIfNeeded: fraction % 10) &+ 0x30, toByteOffset: i, as: UInt8.self)
            fraction /= 10
        }
    }

    /// `value` with up to `places` decimals, trailing zeros dropped unless `keepZeros` (for
    /// HTML and JSON figures; NaN and infinities are written as `null`).
    public func write(fixed value: Double, places: Int = 3, keepZeros: Bool = false) {
        guard value.isFinite else { return write("null") }
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let negative = value < 0
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9.0e18 else { return write("null") }
        if negative && scaled > 0 { write(byte: 0x2D) }
        let whole = UInt64(scaled)
        var unit: UInt64 = 1
        for _ in 0..<places { unit *= 10 }
        write(unsigned: whole / unit)
        var fraction = whole % unit
        guard fraction != 0 || (keepZeros && places > 0) else { return }
        var digits = places
        while !keepZeros && fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        write(byte: 0x2E)
        let p = reserve(digits)
        var i = digits
        while i > 0 {
            i &-= 1
            p.storeBytes(of: UInt8(truncatingIfNeeded: fraction % 10) &+ 0x30, toByteOffset: i, as: UInt8.self)
            fraction /= 10
        }
    }
}

extension UInt {
    fileprivate var toUInt64: UInt64 { UInt64(self) }
}
