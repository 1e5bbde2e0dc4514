import SluiceKubeClient
import Testing

@Suite("Back-off schedule")
struct RetryBackoffTests {
    @Test func doublesFromHalfASecondToThirtySecondsWithinJitterBounds() {
        var backoff = RetryBackoff()
        var step = Duration.milliseconds(500)
        for _ in 0..<12 {
            let low = backoff.next(unit: { 0 })
            #expect(low == step / 2)
            step = min(step * 2, .seconds(30))
        }
        var fresh = RetryBackoff()
        let expectedSteps: [Duration] = [
            .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30),
            .seconds(30),
        ]
        for expected in expectedSteps {
            let high = fresh.next(unit: { 0.999_999 })
            #expect(high <= expected && high > expected * 0.99)
        }
    }

    @Test func randomJitterStaysInTheUpperHalf() {
        var backoff = RetryBackoff()
        var step = Duration.milliseconds(500)
        for _ in 0..<20 {
            let delay = backoff.next()
            #expect(delay >= step / 2 && delay <= step)
            step = min(step * 2, .seconds(30))
        }
    }

    @Test func resetStartsOver() {
        var backoff = RetryBackoff()
        _ = backoff.next()
        _ = backoff.next()
        #expect(backoff.step == .seconds(2))
        backoff.reset()
        #expect(backoff.step == .milliseconds(500))
        #expect(backoff.next(unit: { 0 }) == .milliseconds(250))
    }

    @Test func retryAfterWinsWhenLongerAndIsCapped() {
        var backoff = RetryBackoff()
        #expect(backoff.next(retryAfter: .seconds(7), unit: { 0 }) == .seconds(7))
        #expect(backoff.next(retryAfter: .seconds(120), unit: { 0 }) == .seconds(30))
        // Shorter than the jittered step: the step wins.
        var later = RetryBackoff(initial: .seconds(10), maximum: .seconds(30))
        #expect(later.next(retryAfter: .seconds(1), unit: { 0 }) == .seconds(5))
    }

    @Test func retryAfterHeader() {
        #expect(RetryBackoff.retryAfter(header: "5") == .seconds(5))
        #expect(RetryBackoff.retryAfter(header: " 12 ") == .seconds(12))
        #expect(RetryBackoff.retryAfter(header: "Wed, 21 Oct 2015 07:28:00 GMT") == nil)
        #expect(RetryBackoff.retryAfter(header: "-3") == nil)
        #expect(RetryBackoff.retryAfter(header: nil) == nil)
    }

    @Test func anUnreachableServerIsRetriedAboutEverySecond() {
        var backoff = RetryBackoff()
        let high = { 0.999_999 }
        #expect(backoff.next(.unreachable, unit: high) <= .milliseconds(500))
        for _ in 0..<20 {
            let delay = backoff.next(.unreachable, unit: high)
            #expect(delay <= .seconds(1) && delay > .milliseconds(990))
        }
        // Jittered in the upper half of the capped step.
        for _ in 0..<20 {
            let delay = backoff.next(.unreachable)
            #expect(delay >= .milliseconds(500) && delay <= .seconds(1))
        }
        #expect(backoff.step == .seconds(1))
    }

    @Test func anOutageLeavesNoLongStepBehind() {
        var backoff = RetryBackoff()
        for _ in 0..<10 { _ = backoff.next(.answered) }
        #expect(backoff.step == .seconds(30))
        // The server goes away: the next wait is capped, and so is the step after it.
        #expect(backoff.next(.unreachable, unit: { 0.999_999 }) <= .seconds(1))
        #expect(backoff.step == .seconds(1))
        // It comes back answering errors: exponential again from there.
        #expect(backoff.next(.answered, unit: { 0 }) == .milliseconds(500))
        #expect(backoff.step == .seconds(2))
    }

    /// Both watchers fail while the API server is down, each on its own random schedule
    /// (started at different instants, as a list and a watch fail at different times). When
    /// it comes back, each one's next attempt is at most a second later, whatever the outage.
    @Test(arguments: [5.0, 9.0, 60.0, 600.0])
    func everyWatcherRetriesWithinASecondOfTheServerComingBack(outageSeconds: Double) {
        var generator = SplitMix(seed: UInt64(outageSeconds * 1000))
        let back = Duration.seconds(outageSeconds)
        for watcher in 0..<200 {
            var backoff = RetryBackoff()
            var now = Duration.milliseconds(watcher % 37 * 13)
            while now < back {
                now += backoff.next(.unreachable, unit: { generator.unit() })
            }
            #expect(now - back <= .seconds(1), "watcher \(watcher) retried \(now - back) after the server came back")
        }
    }
}

/// A seeded generator, so the schedule test is the same on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func unit() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }
}

@Suite("Retry warnings")
struct RetryLogTests {
    let t0 = ContinuousClock.now

    @Test func aRepeatedFailureWarnsOnceAHalfMinute() {
        var log = RetryLog()
        #expect(log.failed("refused", at: t0) == (true, 0))
        for second in 1..<30 {
            #expect(log.failed("refused", at: t0 + .seconds(second)) == (false, 0))
        }
        #expect(log.failed("refused", at: t0 + .seconds(30)) == (true, 29))
    }

    @Test func aNewReasonOrASuccessWarnsAtOnce() {
        var log = RetryLog()
        _ = log.failed("refused", at: t0)
        _ = log.failed("refused", at: t0 + .seconds(1))
        #expect(log.failed("HTTP 500", at: t0 + .seconds(2)) == (true, 1))
        log.succeeded()
        #expect(log.failed("HTTP 500", at: t0 + .seconds(3)) == (true, 0))
    }
}
