/// The timing and retry decisions of one proxied connection, kept apart from its I/O: the
/// loop reports what happened with the current time and performs the returned action. Time
/// is passed in (monotonic ms), so tests drive it with a clock of their own.
///
/// State table:
///
/// | state         | event                         | next state    | action                       |
/// | ------------- | ----------------------------- | ------------- | ---------------------------- |
/// | `.idle`       | `start`                       | `.connecting` | `.connect(deadline:)`        |
/// | `.connecting` | `connected`                   | `.tunnel`     | `.arm(deadline: now+tunnel)` |
/// | `.connecting` | `connectFailed`, tries left,  | `.connecting` | `.connectNext(deadline:)`    |
/// |               | another endpoint              |               |                              |
/// | `.connecting` | `connectFailed`, otherwise    | `.closed`     | `.close`                     |
/// | `.connecting` | `timerFired` at the deadline  | (as `connectFailed`, counted as a timeout)     |
/// | `.tunnel`     | `activity`                    | `.tunnel`     | none (the timer is lazy)     |
/// | `.tunnel`     | `timerFired`, active since    | `.tunnel`     | `.arm(deadline: last+tunnel)`|
/// | `.tunnel`     | `timerFired`, idle ≥ tunnel   | `.closed`     | `.close`                     |
///
/// Invariants: at most `maxTries` connects are started; `lastActivity` never goes back; the
/// tunnel timer is not moved on every byte (an activity only stamps the time), so a busy
/// connection costs no timer work until its deadline comes round.
struct ConnectionLifecycle: Equatable, BitwiseCopyable {
    enum State: UInt8 {
        case idle
        case connecting
        case tunnel
        case closed
    }

    enum Action: Equatable {
        /// Connect to the chosen endpoint; fail it if not connected by `deadline`.
        case connect(deadline: Int64)
        /// Close the failed upstream socket and connect to the next endpoint.
        case connectNext(deadline: Int64)
        /// Set the connection's one timer.
        case arm(deadline: Int64)
        /// Close the connection (no endpoint left, or idle too long).
        case close
    }

    private(set) var state: State = .idle
    private(set) var tries: UInt8 = 0
    private(set) var lastActivity: Int64 = 0

    mutating func start(now: Int64, connectMillis: Int64) -> Action {
        state = .connecting
        tries = 1
        lastActivity = now
        return .connect(deadline: now + connectMillis)
    }

    /// A connect was refused, reset or timed out. `hasNextEndpoint` says whether the picker
    /// has another endpoint to offer.
    mutating func connectFailed(now: Int64, maxTries: Int, hasNextEndpoint: Bool, connectMillis: Int64) -> Action {
        guard state == .connecting, Int(tries) < maxTries, hasNextEndpoint else {
            state = .closed
            return .close
        }
        tries += 1
        return .connectNext(deadline: now + connectMillis)
    }

    mutating func connected(now: Int64, tunnelMillis: Int64) -> Action {
        state = .tunnel
        lastActivity = now
        return .arm(deadline: now + tunnelMillis)
    }

    @inline(__always)
    mutating func activity(now: Int64) {
        if now > lastActivity { lastActivity = now }
    }

    /// The connection's timer fired. In `.connecting` the caller treats `.connectNext` or
    /// `.close` as the outcome of a connect timeout.
    mutating func timerFired(
        now: Int64, maxTries: Int, hasNextEndpoint: Bool, timeouts: (connect: Int64, tunnel: Int64)
    ) -> Action {
        switch state {
        case .connecting:
            return connectFailed(
                now: now, maxTries: maxTries, hasNextEndpoint: hasNextEndpoint, connectMillis: timeouts.connect)
        case .tunnel:
            let idleUntil = lastActivity + timeouts.tunnel
            if idleUntil > now { return .arm(deadline: idleUntil) }
            state = .closed
            return .close
        case .idle, .closed:
            return .close
        }
    }
}
