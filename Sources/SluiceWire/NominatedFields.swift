/// Which fields of a head its Connection fields nominate as hop-by-hop (RFC 9110 §7.6.1),
/// found in one pass over the field names and one over the Connection values, with no heap.
///
/// The set is built over the field names rather than over the Connection tokens: the names
/// are bounded by the caller's field array, the tokens only by the head size, so a fixed table
/// of names can hold them all while one of tokens could overflow. Each token then costs one
/// hash and (nearly always) one probe.
///
/// The table is 256 slots of `UInt32` on the stack (1 KiB), for up to 128 fields at a time:
///
/// | bits   | meaning                                                            |
/// | ------ | ------------------------------------------------------------------ |
/// | 0...7  | 0: empty slot; else 1 + the index in the batch of a field with this name |
/// | 8...30 | bits 8...30 of the name's hash, so most probes skip the compare    |
/// | 31     | a Connection token names it                                        |
///
/// Fields with the same name (ignoring case) share one slot. A head with more than 128 fields
/// is done in batches of 128, each reading the Connection values again: linear in the head
/// for any field limit up to 128 (the default is 100). Names crafted to share a hash make
/// probes longer, up to the old cost of comparing every token with every name, never more.
enum NominatedFields {
    static let batchSize = 128
    static let slotCount = 256
    static let emptySlot: UInt32 = 0
    static let indexMask: UInt32 = 0xFF
    static let tagMask: UInt32 = 0x7FFF_FF00
    static let nominatedBit: UInt32 = 0x8000_0000

    /// Calls `body(k, nominated)` for each `k` in `0..<count`, in order, `nominated` telling
    /// whether a Connection field lists the name of `fields[k]` (ASCII case ignored).
    ///
    /// `source` is the parsed head and `fields` its fields (offsets into `source`); both stay
    /// the caller's. When `anyConnection` is false (no Connection field has a value) nothing
    /// is built and every field is reported as not nominated. Allocation-free: the working
    /// table lives on the stack for the duration of the call. Any thread.
    @inline(__always)
    static func forEach(
        _ source: UnsafeRawBufferPointer,
        _ fields: UnsafeBufferPointer<HTTPField>,
        count: Int,
        anyConnection: Bool,
        _ body: (Int, Bool) -> Void
    ) {
        guard anyConnection, count > 0 else {
            for k in 0..<count { body(k, false) }
            return
        }
        // 1 KiB and 128 bytes: both under the size the standard library always puts on the
        // stack, so neither call reaches malloc.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: slotCount) { slots in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: batchSize) { slotOfField in
                let s = Span<UInt8>(_unsafeBytes: source)
                var start = 0
                while start < count {
                    let end = min(count, start &+ batchSize)
                    slots.initialize(repeating: emptySlot)
                    for k in start..<end {
                        slotOfField[k &- start] = insert(s, fields, k, batchStart: start, into: slots)
                    }
                    markNominated(s, fields, count: count, batchStart: start, in: slots)
                    for k in start..<end {
                        body(k, slots[Int(slotOfField[k &- start])] & nominatedBit != 0)
                    }
                    start = end
                }
            }
        }
    }

    /// Puts the name of `fields[k]` into `slots` unless a field of the batch with the same
    /// name is there already.
    /// - Returns: the slot holding that name.
    @inline(__always)
    static func insert(
        _ s: Span<UInt8>, _ fields: UnsafeBufferPointer<HTTPField>, _ k: Int, batchStart: Int,
        into slots: UnsafeMutableBufferPointer<UInt32>
    ) -> UInt8 {
        let name = range(fields[k].name)
        let h = hash(s, name)
        let tag = h & tagMask
        var i = Int(h) & (slotCount &- 1)
        while true {
            let entry = slots[i]
            if entry == emptySlot {
                slots[i] = tag | UInt32(k &- batchStart &+ 1)
                return UInt8(truncatingIfNeeded: i)
            }
            if entry & tagMask == tag
                && s.equalsIgnoringCase(name, range(fields[batchStart &+ Int(entry & indexMask) &- 1].name))
            {
                return UInt8(truncatingIfNeeded: i)
            }
            i = (i &+ 1) & (slotCount &- 1)
        }
    }

    /// Sets the nominated bit of every name in `slots` that a token of a Connection field
    /// among the first `count` fields lists. One hash per token.
    @inline(__always)
    static func markNominated(
        _ s: Span<UInt8>, _ fields: UnsafeBufferPointer<HTTPField>, count: Int, batchStart: Int,
        in slots: UnsafeMutableBufferPointer<UInt32>
    ) {
        for c in 0..<count {
            let f = fields[c]
            guard !f.value.isEmpty, KnownField.classify(s, range(f.name)) == .connection else { continue }
            var list = ListCursor(range(f.value))
            while let token = list.next(s) {
                let h = hash(s, token)
                let tag = h & tagMask
                var i = Int(h) & (slotCount &- 1)
                while true {
                    let entry = slots[i]
                    if entry == emptySlot { break }
                    if entry & tagMask == tag
                        && s.equalsIgnoringCase(token, range(fields[batchStart &+ Int(entry & indexMask) &- 1].name))
                    {
                        slots[i] = entry | nominatedBit
                        break
                    }
                    i = (i &+ 1) & (slotCount &- 1)
                }
            }
        }
    }

    /// FNV-1a over the bytes of `s[r]` with ASCII letters folded to lower case, so that two
    /// ranges `equalsIgnoringCase` calls equal always hash alike, then MurmurHash3's final
    /// mix (FNV's low bits, which pick the slot, depend only on the inputs' low bits).
    @inline(__always)
    static func hash(_ s: Span<UInt8>, _ r: Range<Int>) -> UInt32 {
        var h: UInt32 = 0x811C_9DC5
        for j in r {
            let b = s[j]
            let lower = b | 0x20
            h = (h ^ UInt32(lower &- 0x61 < 26 ? lower : b)) &* 0x0100_0193
        }
        h ^= h >> 16
        h &*= 0x85EB_CA6B
        h ^= h >> 13
        h &*= 0xC2B2_AE35
        h ^= h >> 16
        return h
    }

    @inline(__always)
    static func range(_ r: Range<Int32>) -> Range<Int> {
        Int(r.lowerBound)..<Int(r.upperBound)
    }
}
