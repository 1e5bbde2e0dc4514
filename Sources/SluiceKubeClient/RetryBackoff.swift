/// The wait before retrying the API server after an error: exponential from `initial`,
/// doubling up to `maximum`, with "equal jitter" (a uniformly random point in the upper half
/// of the current step) so that many load balancers restarted together do not retry in step.
/// A `Retry-After` from a 429 (or 503) wins when it is longer, capped at `maximum`.
///
/// A value; the random draw is injected (`unit` returns a number in 0..<1) so tests can pin it.
public struct RetryBackoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    /// The un-jittered step the next failure waits.
    public private(set) var step: Duration

    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30)) {
        precondition(initial > .zero && maximum >= initial)
        self.initial = initial
        self.maximum = maximum
        step = initial
    }

    /// The wait after one more failure, in `step/2 ... step` (or `retryAfter`, capped). The
    /// next step doubles, up to `maximum`.
    public mutating func next(retryAfter: Duration? = nil, unit: () -> Double = { Double.random(in: 0..<1) })
        -> Duration
    {
        let current = step
        step = min(step * 2, maximum)
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
