/// Fixed-size byte buffers for connections that cannot splice, pooled per loop: a buffer is
/// held only while a flow has bytes in it. Blocks are allocated on first need and kept (up
/// to `maxIdle` idle ones). Owned by one loop thread.
struct BufferPool: ~Copyable {
    let bufferSize: Int
    let maxIdle: Int
    private var blocks: [UnsafeMutableRawPointer?] = []
    private var freeList: [Int32] = []

    init(bufferSize: Int, maxIdle: Int = 256) {
        self.bufferSize = bufferSize
        self.maxIdle = maxIdle
    }

    deinit {
        for block in blocks { block?.deallocate() }
    }

    /// A buffer index; allocates a block when none is idle (rare: copy mode is the fallback).
    mutating func acquire() -> Int32 {
        if let index = freeList.popLast() {
            if blocks[Int(index)] == nil {
                blocks[Int(index)] = .allocate(byteCount: bufferSize, alignment: 64)
            }
            return index
        }
        blocks.append(.allocate(byteCount: bufferSize, alignment: 64))
        return Int32(blocks.count - 1)
    }

    mutating func release(_ index: Int32) {
        if freeList.count >= maxIdle {
            blocks[Int(index)]?.deallocate()
            blocks[Int(index)] = nil
        }
        freeList.append(index)
    }

    // SAFETY: `index` is a block acquired and not yet released; its holder alone writes it.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer { blocks[Int(index)]! }
}
