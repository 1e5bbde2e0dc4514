import Testing

@testable import SluiceReactor

@Suite struct TimerWheelTests {
    @Test func firesAtDeadlineNotBefore() {
        var wheel = TimerWheel(capacity: 8, tickMillis: 10, buckets: 16, now: 1000)
        for slot in 0..<8 { wheel.reset(Int32(slot)) }
        wheel.schedule(3, at: 1055)
        var expired: [Int32] = []
        wheel.expire(now: 1050, into: &expired)
        #expect(expired.isEmpty)
        wheel.expire(now: 1060, into: &expired)
        #expect(expired == [3])
        #expect(wheel.count == 0)
        let scheduled = wheel.isScheduled(3)
        #expect(!scheduled)
    }

    @Test func cancelAndRescheduleMoveTheOneTimer() {
        var wheel = TimerWheel(capacity: 8, tickMillis: 10, buckets: 16, now: 0)
        for slot in 0..<8 { wheel.reset(Int32(slot)) }
        wheel.schedule(1, at: 50)
        wheel.schedule(2, at: 50)
        wheel.schedule(1, at: 500)  // moves, does not duplicate
        #expect(wheel.count == 2)
        wheel.cancel(2)
        var expired: [Int32] = []
        wheel.expire(now: 100, into: &expired)
        #expect(expired.isEmpty)
        wheel.expire(now: 500, into: &expired)
        #expect(expired == [1])
    }

    /// A deadline many revolutions ahead stays put until its time, even after a long sleep
    /// that skips whole revolutions.
    @Test func farDeadlinesSurviveRevolutionsAndLongSleeps() {
        var wheel = TimerWheel(capacity: 4, tickMillis: 10, buckets: 8, now: 0)
        for slot in 0..<4 { wheel.reset(Int32(slot)) }
        wheel.schedule(0, at: 3_600_000)
        wheel.schedule(1, at: 35)
        var expired: [Int32] = []
        var now: Int64 = 0
        while now < 1000 {
            now += 10
            wheel.expire(now: now, into: &expired)
        }
        #expect(expired == [1])
        wheel.expire(now: 3_599_990, into: &expired)
        #expect(expired == [1])
        wheel.expire(now: 3_600_000, into: &expired)
        #expect(expired == [1, 0])
    }

    @Test func sleepsUntilTheFirstBucketWithATimer() {
        var wheel = TimerWheel(capacity: 2, tickMillis: 50, buckets: 64, now: 0)
        wheel.reset(0)
        wheel.reset(1)
        let unbounded = wheel.sleepMillis(now: 123)
        #expect(unbounded == -1)
        // The only timer is in the bucket of tick 20 (1000 ms): sleep until then, not a tick.
        wheel.schedule(0, at: 1000)
        let bounded = wheel.sleepMillis(now: 123)
        #expect(bounded == 877)
        // A deadline beyond one revolution (64 × 50 ms) sits in bucket 200 % 64 = 8: the loop
        // wakes at tick 8, finds it not due, and sleeps again.
        wheel.schedule(1, at: 10_000)
        let far = wheel.sleepMillis(now: 123)
        #expect(far == 277)
    }

    @Test func manyTimersExpireInDeadlineBuckets() {
        var wheel = TimerWheel(capacity: 1000, tickMillis: 5, buckets: 64, now: 0)
        var rng = SplitMix(seed: 3)
        var deadlines: [Int64] = []
        for slot in 0..<1000 {
            wheel.reset(Int32(slot))
            let deadline = Int64(rng.next() % 5000) + 1
            deadlines.append(deadline)
            wheel.schedule(Int32(slot), at: deadline)
        }
        var expired: [Int32] = []
        var now: Int64 = 0
        while now <= 5000 {
            now += 7
            let before = expired.count
            wheel.expire(now: now, into: &expired)
            for slot in expired[before...] {
                #expect(deadlines[Int(slot)] <= now)
                #expect(deadlines[Int(slot)] > now - 7 - 5)
            }
        }
        #expect(Set(expired).count == 1000)
    }
}
