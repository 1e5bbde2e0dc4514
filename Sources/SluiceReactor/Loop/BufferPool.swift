/// Fixed-size byte buffers for connections that cannot splice, pooled per loop: a buffer is
/// held only while a flow has bytes in it. Blocks are allocated on first need and kept while
/// idle; `trim` (once a second) frees the idle ones beyond `maxIdle` that no acquire needed
/// since the last trim. So a load that holds more than `maxIdle` at once reuses its blocks
/// instead of freeing and allocating one per release, and a peak's blocks go back within
/// about two trims once it is over. Owned by one loop thread.
struct BufferPool: ~Copyable {
    let bufferSize: Int
    let maxIdle: Int
    private var blocks: [UnsafeMutableRawPointer?] = []
    /// Released indices whose block is kept, and those whose block was freed: a block is
    /// allocated again only when no kept one is left.
    private var idle: [Int32] = []
    private var emptied: [Int32] = []
    /// The fewest idle blocks since the last trim: the ones above it were not needed.
    private var fewestIdle = 0

    init(bufferSize: Int, maxIdle: Int = 256) {
        self.bufferSize = bufferSize
        self.maxIdle = maxIdle
    }

    deinit {
        for block in blocks { block?.deallocate() }
    }

    /// Blocks allocated now (held or idle).
    var allocated: Int { blocks.count - emptied.count }

    /// A buffer index; allocates a block when none is idle.
    mutating func acquire() -> Int32 {
        if let index = idle.popLast() {
            fewestIdle = min(fewestIdle, idle.count)
            return index
        }
        fewestIdle = 0
        if let index = emptied.popLast() {
            blocks[Int(index)] = .allocate(byteCount: bufferSize, alignment: 64)
            return index
        }
        blocks.append(.allocate(byteCount: bufferSize, alignment: 64))
        return Int32(blocks.count - 1)
    }

    @inline(__always)
    mutating func release(_ index: Int32) {
        idle.append(index)
    }

    /// Frees the idle blocks beyond `maxIdle` that stayed idle since the last trim.
    mutating func trim() {
        let spare = min(idle.count, fewestIdle) - maxIdle
        if spare > 0 {
            // The oldest released go first; the most recent stay warm in the cache.
            for index in idle[..<spare] {
                blocks[Int(index)]?.deallocate()
                blocks[Int(index)] = nil
                emptied.append(index)
            }
            idle.removeFirst(spare)
        }
        fewestIdle = idle.count
    }

    // SAFETY: `index` is a block acquired and not yet released; its holder alone writes it.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer { blocks[Int(index)]! }
}
