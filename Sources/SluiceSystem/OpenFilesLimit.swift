import CShims

/// RLIMIT_NOFILE: every connection holds one descriptor (two with its upstream, more with
/// pipes), and a default soft limit of 1024 would refuse connections long before memory or
/// CPU run out. The hard limit is what the administrator allows; the soft limit goes there.
public enum OpenFilesLimit {
    public struct Change: Equatable, Sendable {
        /// The soft limit found at start.
        public var before: UInt64
        /// The soft limit now.
        public var after: UInt64
        public var hard: UInt64

        public init(before: UInt64, after: UInt64, hard: UInt64) {
            self.before = before
            self.after = after
            self.hard = hard
        }

        /// `open files: soft limit 1024 -> 524288 (the hard limit)`, for the start-up log.
        public var description: String {
            before == after
                ? "open files: soft limit \(after) (the hard limit)"
                : "open files: soft limit \(before) -> \(after) (the hard limit)"
        }
    }

    /// Raises the soft limit to the hard limit. Call once, from the main thread, before the
    /// loops open sockets. Throws the errno of getrlimit/setrlimit; the limit is unchanged then.
    public static func raiseToHard() throws(Errno) -> Change {
        var before: UInt64 = 0
        var after: UInt64 = 0
        var hard: UInt64 = 0
        let result = sluice_raise_nofile_limit(&before, &after, &hard)
        if result < 0 { throw Errno(rawValue: -result) }
        return Change(before: before, after: after, hard: hard)
    }
}
