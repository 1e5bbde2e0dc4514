import SluiceKubeClient
import Testing

@Suite("When to apply")
struct ApplyCoalescerTests {
    let t0 = ContinuousClock.now

    func synced(hash: UInt64 = 1) -> ApplyCoalescer {
        var coalescer = ApplyCoalescer(servingHash: hash)
        _ = coalescer.listed(.services, at: t0)
        _ = coalescer.listed(.endpointSlices, at: t0)
        return coalescer
    }

    @Test func nothingHappensUntilBothListsAreIn() {
        var coalescer = ApplyCoalescer(servingHash: 1)
        let result1 = coalescer.changed(at: t0)
        #expect(!result1)
        let result2 = coalescer.listed(.services, at: t0 + .seconds(1))
        #expect(!result2)
        let result3 = coalescer.takeWork()
        #expect(result3 == nil)
        let result4 = coalescer.listed(.endpointSlices, at: t0 + .seconds(2))
        #expect(result4)
        // The earliest change counts for the latency, even one from before the sync.
        let result5 = coalescer.takeWork()
        #expect(result5 == ApplyCoalescer.Work(since: t0, firstSync: true))
        #expect(!coalescer.ready)
    }

    @Test func firstSyncWithTheSameHashIsReadyWithoutANewGeneration() {
        var coalescer = synced(hash: 42)
        let work = coalescer.takeWork()
        #expect(work?.firstSync == true)
        #expect(coalescer.decide(hash: 42) == .unchanged)
        let result6 = coalescer.finish(.unchanged)
        #expect(!result6)
        #expect(coalescer.ready)
        #expect(coalescer.generation == 1)
    }

    @Test func idleAppliesAtOnceAndChangesDuringAnApplyAreFoldedIntoOne() {
        var coalescer = synced()
        _ = coalescer.takeWork()
        #expect(coalescer.decide(hash: 2) == .apply(generation: 2))
        // Three events while generation 2 is being applied: no wake-up, one pending batch.
        let result7 = coalescer.changed(at: t0 + .milliseconds(10))
        #expect(!result7)
        let result8 = coalescer.changed(at: t0 + .milliseconds(20))
        #expect(!result8)
        let result9 = coalescer.changed(at: t0 + .milliseconds(30))
        #expect(!result9)
        let result10 = coalescer.takeWork()
        #expect(result10 == nil)
        let result11 = coalescer.finish(.applied(hash: 2))
        #expect(result11)
        #expect(coalescer.generation == 2)
        #expect(coalescer.servingHash == 2)
        let next = coalescer.takeWork()
        #expect(next == ApplyCoalescer.Work(since: t0 + .milliseconds(10), firstSync: false))
        #expect(coalescer.decide(hash: 3) == .apply(generation: 3))
        let result12 = coalescer.finish(.applied(hash: 3))
        #expect(!result12)
        // Idle again: the next event wakes the applier immediately.
        let result13 = coalescer.changed(at: t0 + .seconds(1))
        #expect(result13)
        let result14 = coalescer.takeWork()
        #expect(result14?.since == t0 + .seconds(1))
    }

    @Test func changesThatMoveNoRouteMakeNoGeneration() {
        var coalescer = synced(hash: 7)
        _ = coalescer.takeWork()
        _ = coalescer.finish(.unchanged)
        let result15 = coalescer.changed(at: t0 + .seconds(1))
        #expect(result15)
        _ = coalescer.takeWork()
        #expect(coalescer.decide(hash: 7) == .unchanged)
        _ = coalescer.finish(.unchanged)
        #expect(coalescer.generation == 1)
        #expect(coalescer.pendingSince == nil)
    }

    @Test func aFailedApplyIsNotReadyAndItsGenerationIsNeverReused() {
        var coalescer = synced(hash: 1)
        _ = coalescer.takeWork()
        #expect(coalescer.decide(hash: 9) == .apply(generation: 2))
        // Posted, then a loop did not take it in time: generation 2 may be in the loops.
        _ = coalescer.finish(.failed)
        #expect(!coalescer.ready)
        #expect(coalescer.servingHash == nil)
        #expect(coalescer.generation == 2)
        #expect(coalescer.confirmedGeneration == 1)
        // A re-list tries again, still as the first sync, with a new number.
        let result16 = coalescer.listed(.services, at: t0 + .seconds(5))
        #expect(result16)
        let result17 = coalescer.takeWork()
        #expect(result17?.firstSync == true)
        #expect(coalescer.decide(hash: 9) == .apply(generation: 3))
        _ = coalescer.finish(.applied(hash: 9))
        #expect(coalescer.ready)
        #expect(coalescer.generation == 3)
        #expect(coalescer.confirmedGeneration == 3)
    }

    @Test func afterAFailedApplyTheOldContentIsAppliedAgain() {
        // Generation 2 (hash 9) timed out after posting; the cluster then goes back to the
        // content of generation 1. The loops may run 2, so "unchanged" would be wrong.
        var coalescer = synced(hash: 1)
        _ = coalescer.takeWork()
        #expect(coalescer.decide(hash: 9) == .apply(generation: 2))
        _ = coalescer.finish(.failed)
        _ = coalescer.changed(at: t0 + .seconds(1))
        _ = coalescer.takeWork()
        #expect(coalescer.decide(hash: 1) == .apply(generation: 3))
        _ = coalescer.finish(.applied(hash: 1))
        _ = coalescer.changed(at: t0 + .seconds(2))
        _ = coalescer.takeWork()
        #expect(coalescer.decide(hash: 1) == .unchanged)
        _ = coalescer.finish(.unchanged)
        #expect(coalescer.generation == 3)
    }
}
