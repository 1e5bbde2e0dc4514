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
        let bytes = Span<UInt8>(_unsafeBytes: buffer)
        let end = min(bytes.count, limits.maxHeadBytes)
        var i = scanned
        var s = state
        while i < end {
            let b = bytes[i]
            i &+= 1
            if b == asciiLF {
                if s != 0 {
                    scanned = i &- 1  // rescanning from here finds the same end
                    state = s
                    return .complete(Int32(truncatingIfNeeded: i))
                }
                s = 1
            } else if b == asciiCR {
                s = s == 1 ? 2 : 0
            } else {
                s = 0
            }
        }
        if i > scanned {
            scanned = i
            state = s
        }
        return bytes.count >= limits.maxHeadBytes ? .tooLarge : .needMore
    }
}
