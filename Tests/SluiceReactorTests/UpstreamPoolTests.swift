import Testing

@testable import SluiceReactor

@Suite struct UpstreamPoolTests {
    @Test func parkedEntriesAreTakenBackByTheirOwnerAndStaleReferencesAreRecognised() {
        var pool = UpstreamPool(capacity: 8)
        pool.resize(endpoints: 2, perEndpoint: 1)
        // Parking is not capped by perEndpoint.
        let a = pool.put(fd: 10, endpoint: 0, owner: 3, capped: false, now: 0)!
        let b = pool.put(fd: 11, endpoint: 0, owner: 4, capped: false, now: 0)!
        #expect(pool.count == 2)
        #expect(pool.entry(a.index, generation: a.generation)?.owner == 3)
        // A capped put (a client that left) is refused at the cap.
        #expect(pool.put(fd: 12, endpoint: 0, owner: -1, capped: true, now: 0) == nil)
        // Another client takes the newest: slot 4's connection, registered under 4's token.
        let taken = pool.take(endpoint: 0)!
        #expect(taken.fd == 11 && taken.owner == 4)
        #expect(pool.entry(b.index, generation: b.generation) == nil)
        #expect(pool.remove(b.index, generation: b.generation) == nil)
        // Slot 3 takes its own back in O(1).
        #expect(pool.remove(a.index, generation: a.generation) == 10)
        #expect(pool.count == 0)
        #expect(pool.take(endpoint: 0) == nil)
    }

    @Test func removingFromTheMiddleKeepsTheListIntact() {
        var pool = UpstreamPool(capacity: 8)
        pool.resize(endpoints: 1, perEndpoint: 8)
        let entries = (0..<4).map { pool.put(fd: Int32(20 + $0), endpoint: 0, owner: -1, capped: true, now: 0)! }
        #expect(pool.remove(entries[2].index, generation: entries[2].generation) == 22)
        #expect(pool.remove(entries[0].index, generation: entries[0].generation) == 20)
        var fds: [Int32] = []
        while let (fd, _) = pool.take(endpoint: 0) { fds.append(fd) }
        #expect(fds == [23, 21])
    }

    @Test func sweepClosesOldEntriesAndTrimsListsBeyondTheCap() {
        var pool = UpstreamPool(capacity: 16)
        pool.resize(endpoints: 1, perEndpoint: 2)
        for i in 0..<5 { _ = pool.put(fd: Int32(30 + i), endpoint: 0, owner: Int32(i), capped: false, now: Int64(i)) }
        var closed: [Int32] = []
        // Nothing is old enough to trim yet.
        pool.sweep(olderThan: -1, trimBefore: 0) { closed.append($0) }
        #expect(closed.isEmpty)
        // Trim what is beyond the two newest and idle since before 3: fds 32, 31, 30.
        pool.sweep(olderThan: -1, trimBefore: 3) { closed.append($0) }
        #expect(closed.sorted() == [30, 31, 32])
        #expect(pool.count == 2)
        pool.sweep(olderThan: .max) { closed.append($0) }
        #expect(pool.count == 0)
    }

    @Test func remapRefilesByNewIndexAndClosesEntriesOfEndpointsThatLeft() {
        var pool = UpstreamPool(capacity: 8)
        pool.resize(endpoints: 3, perEndpoint: 4)
        let kept = pool.put(fd: 40, endpoint: 0, owner: 7, capped: false, now: 0)!
        _ = pool.put(fd: 41, endpoint: 1, owner: -1, capped: true, now: 0)
        _ = pool.put(fd: 42, endpoint: 2, owner: -1, capped: true, now: 0)
        var closed: [Int32] = []
        // Endpoint 0 is now 1, endpoint 1 left, endpoint 2 is now 0.
        pool.remap([1, -1, 0], endpoints: 2, perEndpoint: 4) { closed.append($0) }
        #expect(closed == [41])
        // Entry and generation stay: the owner's parked reference is still valid.
        #expect(pool.entry(kept.index, generation: kept.generation)?.endpoint == 1)
        #expect(pool.take(endpoint: 0)?.fd == 42)
        #expect(pool.take(endpoint: 1)?.fd == 40)
    }
}
