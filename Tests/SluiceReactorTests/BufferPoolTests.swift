import Testing

@testable import SluiceReactor

@Suite struct BufferPoolTests {
    /// Released blocks are kept until a trim; one trim frees only those beyond `maxIdle`
    /// that no acquire needed since the last; an acquire takes a kept block before it
    /// allocates one for a freed index.
    @Test func idleBlocksBeyondMaxIdleGoAtTheTrimAfterTheyWereNotNeeded() {
        let pool = BufferPool(bufferSize: 64, maxIdle: 2)
        let taken = (0..<4).map { _ in pool.acquire() }
        #expect(taken == [0, 1, 2, 3])
        for index in taken { pool.release(index) }
        #expect(pool.allocated == 4)
        // A release beyond maxIdle frees nothing: the next acquires reuse the blocks.
        let again = (0..<4).map { _ in pool.acquire() }
        #expect(Set(again) == [0, 1, 2, 3] && pool.allocated == 4)
        for index in again { pool.release(index) }
        // The first trim after a period in which all four were needed keeps them.
        pool.trim()
        #expect(pool.allocated == 4)
        // No acquire since: the two beyond maxIdle go.
        pool.trim()
        #expect(pool.allocated == 2)
        pool.trim()
        #expect(pool.allocated == 2)
        // Kept blocks first, then a freed index gets a new block, then a new index.
        let a = pool.acquire()
        let b = pool.acquire()
        #expect(Set([a, b]).count == 2 && pool.allocated == 2)
        let c = pool.acquire()
        #expect(![a, b].contains(c) && c < 4 && pool.allocated == 3)
        pool.base(c).storeBytes(of: 7, as: UInt8.self)
        #expect(pool.base(c).load(as: UInt8.self) == 7)
        let d = pool.acquire()
        #expect(d < 4 && d != c)
        #expect(pool.acquire() == 4)
    }

    /// Under a steady load above maxIdle, releases and acquires allocate nothing.
    @Test func aSteadyLoadAboveMaxIdleDoesNotAllocate() {
        let pool = BufferPool(bufferSize: 64, maxIdle: 1)
        var held = (0..<8).map { _ in pool.acquire() }
        for round in 0..<100 {
            for index in held { pool.release(index) }
            held = (0..<8).map { _ in pool.acquire() }
            if round % 10 == 0 { pool.trim() }
        }
        #expect(pool.allocated == 8)
    }
}
