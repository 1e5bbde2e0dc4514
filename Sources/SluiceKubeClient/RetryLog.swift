/// Which retry warnings are worth a line. While the API server is down each watcher retries
/// about once a second (`RetryBackoff`); logging each retry would fill the log. The first
/// failure of a run, a failure with a new reason, and one failure every `interval` are
/// warnings; the others are debug lines, counted in the next warning.
///
/// A value owned by one watcher task; instants are passed in.
public struct RetryLog: Sendable {
    public typealias Instant = ContinuousClock.Instant

    /// The longest time between two warnings while the same failure repeats.
    public let interval: Duration
    private var lastReason: String?
    private var lastWarned: Instant?
    private var quiet = 0

    public init(interval: Duration = .seconds(30)) {
        self.interval = interval
    }

    /// Whether the failure `reason` at `now` is a warning; when it is, also how many retries
    /// were logged at debug level since the previous warning (0 otherwise).
    public mutating func failed(_ reason: String, at now: Instant) -> (warn: Bool, quietSince: Int) {
        if reason == lastReason, let lastWarned, now - lastWarned < interval {
            quiet += 1
            return (false, 0)
        }
        let since = quiet
        lastReason = reason
        lastWarned = now
        quiet = 0
        return (true, since)
    }

    /// A success ends the run: the next failure is a warning whatever its reason.
    public mutating func succeeded() {
        lastReason = nil
        lastWarned = nil
        quiet = 0
    }
}
