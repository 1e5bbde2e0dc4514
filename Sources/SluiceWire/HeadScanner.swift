/// What `HeadScanner.scan` found.
public enum HeadScan: Equatable, Sendable {
    /// The head ends after this many bytes (the final empty line included).
    case complete(Int32)
    /// No end yet: call again when more bytes have arrived.
    case needMore
    /// `maxHeadBytes` bytes arrived without an end: answer 431.
    case tooLarge
}

/// Finds the end of a head across reads, resumably: O(total bytes) however the head is split.
///
/// State (one value per connection, reset before each head):
///
/// | `state` | meaning                                  | LF           | CR        | other |
/// | ------- | ---------------------------------------- | ------------ | --------- | ----- |
/// | 0       | inside a line                            | → 1          | 0         | 0     |
/// | 1       | just after a LF                          | end of head  | → 2       | → 0   |
/// | 2       | after LF CR                              | end of head  | → 0       | → 0   |
///
/// The head ends at the first empty line, where a line ends in LF with an optional CR before
/// it. A head written with CRLF (the only valid form) therefore ends at CRLF CRLF; one with a
/// bare LF ends early too, so that the parser sees it at once and refuses it with 400 instead
/// of the client waiting for a CRLF CRLF that may never come.
public struct HeadScanner: Sendable, BitwiseCopyable {
    @usableFromInline var scanned: Int = 0
    @usableFromInline var state: UInt8 = 0

    public init() {}

    /// Forgets all progress; call before the next head on the same connection.
    public mutating func reset() {
        scanned = 0
        state = 0
    }

    /// Looks for the end of the head in `buffer`.
    ///
    /// `buffer` holds every byte received since the head began (the same start on every call,
    /// growing as reads arrive); only the bytes not seen by an earlier call are examined.
    /// Bytes after the end (a pipelined request, a body) are left alone.
    /// - Returns: `.complete(headLength)` once the final empty line is found within the first
    ///   `limits.maxHeadBytes` bytes, `.tooLarge` once `buffer.count` reaches `maxHeadBytes`
    ///   without an end, else `.needMore`. Calling again after `.complete` answers the same.
    public mutating func scan(_ buffer: UnsafeRawBufferPointer, limits: HTTPLimits) -> HeadScan {
        let end = min(buffer.count, limits.maxHeadBytes)
        var i = scanned
        var s = state
        if i < end {
            // SAFETY: `buffer` is non-empty here (end > i >= 0); every read is below `end`.
            let p = buffer.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self)
            while i < end {
                // The bytes up to the next LF, as the table reads them one by one: none leave
                // the state alone, a single CR after a LF gives 2, anything else 0.
                let lf = ByteClass.firstLF(p, from: i, to: end)
                if lf > i { s = s == 1 && lf == i &+ 1 && p[i] == asciiCR ? 2 : 0 }
                if lf == end {
                    i = end
                    break
                }
                if s != 0 {
                    scanned = lf  // rescanning from here finds the same end
                    state = s
                    return .complete(Int32(truncatingIfNeeded: lf &+ 1))
                }
                s = 1
                i = lf &+ 1
            }
        }
        if i > scanned {
            scanned = i
            state = s
        }
        return buffer.count >= limits.maxHeadBytes ? .tooLarge : .needMore
    }

    /// The offset of the LF that ends the first CR LF CR LF in `buffer` (a head written with
    /// CRLF line ends, as Sluice writes them), or nil when there is none.
    public static func crlfHeadEnd(_ buffer: UnsafeRawBufferPointer) -> Int? {
        let n = buffer.count
        guard n >= 4 else { return nil }
        // SAFETY: `buffer` holds `n` >= 4 bytes; every read is below `n`, none before 0.
        let p = buffer.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: UInt8.self)
        var i = 3
        while true {
            let lf = ByteClass.firstLF(p, from: i, to: n)
            if lf == n { return nil }
            if p[lf &- 1] == asciiCR && p[lf &- 2] == asciiLF && p[lf &- 3] == asciiCR { return lf }
            i = lf &+ 1
        }
    }
}
