/// Fixed-size byte buffers for connections that cannot splice, pooled per loop: a buffer is
/// held only while a flow has bytes in it. Blocks are allocated on first need and kept (up
/// to `maxIdle` idle ones). Owned by one loop thread.
struct BufferPool: ~Copyable {
    let bufferSize: Int
    let maxIdle: Int
    private var blocks: [UnsafeMutableRawPointer?] = []
    /// Released indices whose block is kept (at most `maxIdle`), and those whose block was
    /// freed: a block is allocated again only when no kept one is left.
    private var idle: [Int32] = []
    private var emptied: [Int32] = []

    init(bufferSize: Int, maxIdle: Int = 256) {
        self.bufferSize = bufferSize
        self.maxIdle = maxIdle
    }

    deinit {
        for block in blocks { block?.deallocate() }
    }

    /// A buffer index; allocates a block when none is idle (rare: copy mode is the fallback).
    mutating func acquire() -> Int32 {
        if let index = idle.popLast() { return index }
        if let index = emptied.popLast() {
            blocks[Int(index)] = .allocate(byteCount: bufferSize, alignment: 64)
            return index
        }
        blocks.append(.allocate(byteCount: bufferSize, alignment: 64))
        return Int32(blocks.count - 1)
    }

    mutating func release(_ index: Int32) {
        if idle.count >= maxIdle {
            blocks[Int(index)]?.deallocate()
            blocks[Int(index)] = nil
            emptied.append(index)
        } else {
            idle.append(index)
        }
    }

    // SAFETY: `index` is a block acquired and not yet released; its holder alone writes it.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer { blocks[Int(index)]! }
}
