/// Cuts a watch response body into lines, whatever its chunking.
///
/// The API server writes one JSON event per line, but the chunks of a chunked (or HTTP/2)
/// body do not follow event boundaries: an event may span chunks and a chunk may hold several
/// events. Bytes after the last newline are held until more arrive.
///
/// State: `pending` holds the bytes of the unfinished line, never a newline (so each byte is
/// scanned once, O(total bytes) however finely the body is cut). Invariant: `pending` holds
/// at most `maxLineBytes` bytes, plus a final `\r`. Single-threaded; one splitter per response body.
public struct WatchLineSplitter: Sendable {
    public enum SplitError: Error, Equatable, CustomStringConvertible {
        /// A line grew past the limit without a newline. The body cannot be trusted any
        /// further: drop the connection and watch again.
        case lineTooLong(limit: Int)

        public var description: String {
            switch self {
            case .lineTooLong(let limit): return "a watch event is longer than \(limit) bytes"
            }
        }
    }

    /// The longest line accepted, newline excluded. One event is one object; 16 MiB is far
    /// above the largest legal one (an EndpointSlice of 1,000 endpoints is a few hundred kB).
    public let maxLineBytes: Int
    private var pending: [UInt8] = []

    public init(maxLineBytes: Int = 16 << 20) {
        precondition(maxLineBytes > 0, "the line limit must be positive")
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes of an unfinished line held from earlier chunks.
    public var pendingByteCount: Int { pending.count }

    /// Takes the next chunk and returns the lines it completes, in order, without their `\n`
    /// (and without a `\r` before it). Empty lines are skipped. After `lineTooLong` the held
    /// bytes are dropped; the splitter may be reused for a new body.
    public mutating func feed(_ chunk: some Collection<UInt8>) throws(SplitError) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var start = chunk.startIndex
        var index = start
        while index != chunk.endIndex {
            if chunk[index] == UInt8(ascii: "\n") {
                pending.append(contentsOf: chunk[start..<index])
                if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
                try checkLength()
                if !pending.isEmpty { lines.append(pending) }
                pending.removeAll(keepingCapacity: true)
                start = chunk.index(after: index)
            }
            index = chunk.index(after: index)
        }
        pending.append(contentsOf: chunk[start..<chunk.endIndex])
        try checkLength()
        return lines
    }

    /// At the end of the body: the final line if it had no newline (nil if nothing is held).
    /// The splitter is empty afterwards.
    public mutating func finish() -> [UInt8]? {
        defer { pending.removeAll() }
        if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
        return pending.isEmpty ? nil : pending
    }

    /// Drops any held bytes (a new response body starts).
    public mutating func reset() {
        pending.removeAll()
    }

    /// Throws (and drops the held bytes) once the line is longer than the limit; a `\r` that
    /// may start a `\r\n` line end is not counted.
    private mutating func checkLength() throws(SplitError) {
        let length = pending.last == UInt8(ascii: "\r") ? pending.count - 1 : pending.count
        guard length <= maxLineBytes else {
            pending.removeAll()
            throw .lineTooLong(limit: maxLineBytes)
        }
    }
}
