#if canImport(Glibc)
    import Glibc
#endif

/// Zero-filled per-row storage (metric rows, picker state) whose untouched pages stay the kernel's shared zero page, so a
/// row costs resident memory only once something was counted in it (or near it: a page holds
/// 36 endpoint rows). Large tables are made by leaving their whole pages to the kernel
/// (`MADV_DONTNEED` on private anonymous memory reads back as zeros), and the remap and clear
/// passes write a page only when it is not zero on both sides. Small tables are written as
/// usual. None of this runs on the data path: tables are made and moved on a swap or a scrape.
package enum ZeroPages {
    /// Below this many bytes a table is written plainly.
    package static let threshold = 64 << 10
    package static let pageSize: Int = {
        let size = Int(sysconf(Int32(_SC_PAGESIZE)))
        return size > 0 ? size : 4096
    }()

    /// `count` zeros, the whole pages among them not yet resident.
    package static func zeros<T: FixedWidthInteger>(_ count: Int) -> [T] {
        guard count * MemoryLayout<T>.stride >= threshold else { return Array(repeating: 0, count: count) }
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            clear(UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// `count` zeros in storage for `capacity` elements (more appended later write only
    /// themselves), the whole pages among them not yet resident.
    package static func zeros<T: FixedWidthInteger>(_ count: Int, capacity: Int) -> [T] {
        guard count * MemoryLayout<T>.stride >= threshold else {
            var small: [T] = []
            small.reserveCapacity(max(count, capacity))
            small.append(contentsOf: repeatElement(0, count: count))
            return small
        }
        return [T](unsafeUninitializedCapacity: max(count, capacity)) { buffer, initialized in
            clear(UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<count])))
            initialized = count
        }
    }

    /// Sets every byte to zero: the partial pages at either end by writing, the whole pages
    /// between by handing them back to the kernel (written, if it refuses).
    package static func clear(_ bytes: UnsafeMutableRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        guard bytes.count >= threshold else {
            base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes.count)
            return
        }
        let start = Int(bitPattern: base)
        let end = start + bytes.count
        let first = (start + pageSize - 1) & ~(pageSize - 1)
        let last = end & ~(pageSize - 1)
        // SAFETY: [start, first) and [last, end) are inside the buffer (first ≤ last, as the
        // buffer spans at least one whole page).
        base.initializeMemory(as: UInt8.self, repeating: 0, count: first - start)
        (base + (last - start)).initializeMemory(as: UInt8.self, repeating: 0, count: end - last)
        let pages = UnsafeMutableRawPointer(bitPattern: first)
        if madvise(pages, last - first, Int32(MADV_DONTNEED)) != 0 {
            (base + (first - start)).initializeMemory(as: UInt8.self, repeating: 0, count: last - first)
        }
    }

    /// Whether the `count` bytes at `p` (8-byte aligned, a multiple of 8) are all zero.
    @inline(__always)
    package static func isZero(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
        var offset = 0
        // SAFETY: every load is at offset + 8 ≤ count; the caller's range is readable and
        // 8-byte aligned. Eight words a step, OR-ed, then one test.
        while offset &+ 64 <= count {
            var any = p.load(fromByteOffset: offset, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 8, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 16, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 24, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 32, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 40, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 48, as: UInt64.self)
            any |= p.load(fromByteOffset: offset &+ 56, as: UInt64.self)
            if any != 0 { return false }
            offset &+= 64
        }
        while offset < count {
            if p.load(fromByteOffset: offset, as: UInt64.self) != 0 { return false }
            offset &+= 8
        }
        return true
    }

    /// `memmove` of `count` bytes that leaves
    /// alone each destination page where source and destination are both zero. Pages are
    /// taken in the order that keeps overlapping ranges correct (from the end when moving up).
    /// Plain `memmove` unless both ends are 8-byte aligned and `count` is a multiple of 8.
    package static func move(_ dst: UnsafeMutableRawPointer, from src: UnsafeRawPointer, count: Int) {
        guard count >= threshold, (count | Int(bitPattern: dst) | Int(bitPattern: src)) & 7 == 0 else {
            dst.copyMemory(from: src, byteCount: count)
            return
        }
        let start = Int(bitPattern: dst)
        // SAFETY: every chunk [a, b) lies within [0, count) of both ranges; a chunk's source
        // is not yet overwritten: earlier chunks wrote only beyond it in the direction of travel.
        func chunk(_ a: Int, _ b: Int) {
            if isZero(src + a, b - a) && isZero(dst + a, b - a) { return }
            (dst + a).copyMemory(from: src + a, byteCount: b - a)
        }
        // Chunk boundaries: the destination's page boundaries.
        let firstBoundary = ((start + pageSize - 1) & ~(pageSize - 1)) - start
        if UnsafeRawPointer(dst) > src {
            var b = count
            while b > 0 {
                let a = b > firstBoundary ? max(firstBoundary, ((start + b - 1) & ~(pageSize - 1)) - start) : 0
                chunk(a, b)
                b = a
            }
        } else {
            var a = 0
            while a < count {
                let b = a < firstBoundary ? min(count, firstBoundary) : min(count, a + pageSize)
                chunk(a, b)
                a = b
            }
        }
    }

    /// Zeroes `count` bytes at `p` (written plainly unless 8-byte aligned and a multiple of 8), writing only the pages
    /// that are not zero already.
    package static func zero(_ p: UnsafeMutableRawPointer, count: Int) {
        guard count >= threshold, (count | Int(bitPattern: p)) & 7 == 0 else {
            p.initializeMemory(as: UInt8.self, repeating: 0, count: count)
            return
        }
        let start = Int(bitPattern: p)
        var a = 0
        while a < count {
            let b = min(count, ((start + a + pageSize) & ~(pageSize - 1)) - start)
            // SAFETY: [a, b) lies within [0, count).
            if !isZero(p + a, b - a) { (p + a).initializeMemory(as: UInt8.self, repeating: 0, count: b - a) }
            a = b
        }
    }
}
