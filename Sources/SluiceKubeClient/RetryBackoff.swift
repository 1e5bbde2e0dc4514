/// The wait before retrying the API server after an error: exponential from `initial`,
/// doubling up to `maximum`, with "equal jitter" (a uniformly random point in the upper half
/// of the current step) so that many load balancers restarted together do not retry in step.
/// A `Retry-After` from a 429 (or 503) wins when it is longer, capped at `maximum`.
///
/// A failure that reached no server (`Failure.unreachable`: refused, reset, timed out, TLS)
/// grows the step only to `unreachableMaximum` (1 s): a server that is down is not asking
/// to be spared, and every watcher must be back within about a second of it returning, not
/// after whatever step its own run of failures had reached. Errors the server answered
/// (`Failure.answered`: a status, a bad body) grow it to `maximum`.
///
/// A value; the random draw is injected (`unit` returns a number in 0..<1) so tests can pin it.
public struct RetryBackoff: Sendable {
    /// What kind of failure a wait follows.
    public enum Failure: Sendable, Equatable {
        /// The server answered, with an error status or a body that could not be used.
        case answered
        /// No answer: the connection or the TLS handshake failed, or the connection broke.
        case unreachable
    }

    public let initial: Duration
    public let maximum: Duration
    /// The longest step after an `.unreachable` failure.
    public let unreachableMaximum: Duration
    /// The un-jittered step the next failure waits (before its kind's cap).
    public private(set) var step: Duration

    public init(
        initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30),
        unreachableMaximum: Duration = .seconds(1)
    ) {
        precondition(initial > .zero && maximum >= initial && unreachableMaximum > .zero)
        self.initial = initial
        self.maximum = maximum
        self.unreachableMaximum = unreachableMaximum
        step = initial
    }

    /// The wait after one more failure of kind `failure`: in `s/2 ... s`, where `s` is the
    /// step capped for that kind (or `retryAfter` when longer, capped at `maximum`). The next
    /// step doubles, up to the same cap, so an outage leaves no long step behind.
    public mutating func next(
        _ failure: Failure = .answered, retryAfter: Duration? = nil,
        unit: () -> Double = { Double.random(in: 0..<1) }
    ) -> Duration {
        let cap = failure == .unreachable ? min(unreachableMaximum, maximum) : maximum
        let current = min(step, cap)
        step = min(current * 2, cap)
        let jittered = current / 2 + (current / 2) * min(max(unit(), 0), 1)
        if let retryAfter, retryAfter > jittered { return min(retryAfter, maximum) }
        return jittered
    }

    /// After a success: the next failure waits `initial` again.
    public mutating func reset() { step = initial }

    /// A `Retry-After` header's delay-seconds (HTTP-dates are not used by the API server).
    public static func retryAfter(header: String?) -> Duration? {
        guard let header, let seconds = Int(header.trimmingSpacesAndTabs), seconds >= 0 else { return nil }
        return .seconds(seconds)
    }
}

extension String {
    var trimmingSpacesAndTabs: String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
