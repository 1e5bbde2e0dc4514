/// Puts the path of a request target in one canonical form before it is routed, so that
/// spellings of the same path cannot slip past a path route or an ACL: `/pub/../admin`,
/// `/pub/%2e%2e/admin`, `//admin` and `/./admin` all become `/admin`.
///
/// What it does to the path (the bytes before the first `?`), in one pass:
///
/// 1. Percent-escapes (RFC 3986 §6.2.2.1, §6.2.2.2): an escape of an unreserved character
///    (ALPHA, DIGIT, `-`, `.`, `_`, `~`) is decoded (`%2E` → `.`, `%41` → `A`); any other
///    escape is kept, its hex digits in upper case (`%2f` → `%2F`). A `%` not followed by two
///    hex digits makes the path invalid.
/// 2. An encoded slash `%2F` stays encoded and is not a separator: `/a%2F..%2Fb` is one
///    segment, left as it is. Decoding it would name another resource to an upstream that
///    keeps `%2F` apart from `/` (RFC 3986 §2.2), and re-splitting after a decode is the very
///    double interpretation this type exists to remove. The same holds for `%5C` and `%3F`.
/// 3. Repeated slashes collapse to one (`//a///b` → `/a/b`), before dot segments are
///    resolved, so `/a//../b` is `/b` (as for an upstream that merges slashes).
/// 4. Dot segments (RFC 3986 §5.2.4), judged after decoding: `.` is removed, `..` removes
///    itself and the segment before it, and never climbs above the root (`/../a` → `/a`). A
///    path ending in a dot segment keeps its final slash (`/a/.` → `/a/`, `/a/b/..` → `/a/`).
/// 5. An empty path becomes `/` (an absolute-form target such as `http://h?q`).
///
/// Every other byte is copied as it is. The query (from the first `?` on) is copied after
/// the path untouched: neither decoded nor checked.
public enum PathNormalizer {
    /// Writes the normalised form of `path` into `out`.
    ///
    /// `path` is the origin-form path and query of a request target, as
    /// `HTTPRequestHead.path` gives it: it starts with `/`, or is empty or starts with `?`
    /// (an absolute-form target without a path). `out` must not overlap `path`; both stay the
    /// caller's. The output is never longer than `path.count + 1` bytes (only an empty path
    /// grows), and `maxOutputCount(path.count)` bytes are always enough. Pure: no
    /// allocation, no state, any thread.
    /// - Returns: the bytes written to `out`, or nil when the path is invalid (a non-empty
    ///   path not starting with `/`, e.g. `*` or an authority; a `%` not followed by two hex
    ///   digits) or `out` is too small for the work (it may be, for a path whose dot segments
    ///   remove more than they leave, even though the result would fit).
    public static func normalize(_ path: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let s = Span<UInt8>(_unsafeBytes: path)
        let n = s.count
        var pathEnd = 0
        while pathEnd < n && s[pathEnd] != asciiQuestion { pathEnd &+= 1 }
        guard pathEnd == 0 || s[0] == asciiSlash else { return nil }
        var o = PathOutput(out)
        guard o.append(asciiSlash) else { return nil }
        var i = 0
        while i < pathEnd {
            if s[i] == asciiSlash {
                i &+= 1
                continue
            }
            // One segment: from here to the next slash or the end of the path.
            let segmentStart = o.count
            while i < pathEnd {
                let b = s[i]
                if b == asciiSlash { break }
                if b != asciiPercent {
                    guard o.append(b) else { return nil }
                    i &+= 1
                    continue
                }
                guard pathEnd &- i >= 3, let high = ByteClass.hexValue(s[i &+ 1]),
                    let low = ByteClass.hexValue(s[i &+ 2])
                else { return nil }
                let decoded = high << 4 | low
                if ByteClass.isUnreserved(decoded) {
                    guard o.append(decoded) else { return nil }
                } else {
                    guard o.append(asciiPercent), o.append(upperHex(high)), o.append(upperHex(low)) else { return nil }
                }
                i &+= 3
            }
            switch o.dotSegment(from: segmentStart) {
            case 1:
                o.count = segmentStart
            case 2:
                // Back to just after the slash that opens the segment before this one.
                o.count = segmentStart
                if o.count > 1 {
                    o.count &-= 1
                    while o.byte(at: o.count &- 1) != asciiSlash { o.count &-= 1 }
                }
            default:
                if i < pathEnd { guard o.append(asciiSlash) else { return nil } }
            }
        }
        var q = pathEnd
        while q < n {
            guard o.append(s[q]) else { return nil }
            q &+= 1
        }
        return o.count
    }

    /// The room `normalize` needs at most for a path of `inputCount` bytes.
    @inline(__always)
    public static func maxOutputCount(_ inputCount: Int) -> Int {
        inputCount &+ 1
    }

    /// The upper-case hex digit for `v` (0...15).
    @inline(__always)
    static func upperHex(_ v: UInt8) -> UInt8 {
        v < 10 ? 0x30 &+ v : 0x41 &+ (v &- 10)
    }
}

/// The output of `PathNormalizer.normalize`: appends with a bounds check, and can be cut back
/// to an earlier length when a `..` segment removes what was written.
struct PathOutput {
    let out: UnsafeMutableRawBufferPointer
    var count = 0

    init(_ out: UnsafeMutableRawBufferPointer) {
        self.out = out
    }

    /// Appends `b`; false (and nothing written) when `out` is full.
    @inline(__always)
    mutating func append(_ b: UInt8) -> Bool {
        guard count < out.count else { return false }
        // SAFETY: count < out.count was checked just above.
        out[count] = b
        count &+= 1
        return true
    }

    /// The byte written at `index`, which must be below `count`.
    @inline(__always)
    func byte(at index: Int) -> UInt8 {
        precondition(index >= 0 && index < count, "read past the normalised output")
        return out[index]
    }

    /// 1 when the bytes from `start` to `count` are `.`, 2 when they are `..`, else 0.
    @inline(__always)
    func dotSegment(from start: Int) -> Int {
        switch count &- start {
        case 1: return out[start] == asciiDot ? 1 : 0
        case 2: return out[start] == asciiDot && out[start &+ 1] == asciiDot ? 2 : 0
        default: return 0
        }
    }
}
