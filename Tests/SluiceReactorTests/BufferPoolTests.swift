import Testing

@testable import SluiceReactor

@Suite struct BufferPoolTests {
    /// Past `maxIdle` released blocks are freed; a later acquire takes a kept block before it
    /// allocates one for a freed index, so a peak does not leave every acquire allocating.
    @Test func keptBlocksGoFirstAfterAPeak() {
        var pool = BufferPool(bufferSize: 64, maxIdle: 2)
        let taken = (0..<4).map { _ in pool.acquire() }
        #expect(taken == [0, 1, 2, 3])
        for index in taken { pool.release(index) }
        // 0 and 1 were kept, 2 and 3 freed.
        #expect(pool.acquire() == 1)
        #expect(pool.acquire() == 0)
        let again = pool.acquire()
        #expect(again == 3 || again == 2)
        pool.base(again).storeBytes(of: 7, as: UInt8.self)
        #expect(pool.base(again).load(as: UInt8.self) == 7)
        #expect(pool.acquire() != again)
        #expect(pool.acquire() == 4)
    }
}
