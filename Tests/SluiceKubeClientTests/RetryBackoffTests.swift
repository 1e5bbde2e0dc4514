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
}
