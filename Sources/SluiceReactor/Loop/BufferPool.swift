/// Fixed-size byte buffers for connections that cannot splice, pooled per loop: a buffer is
/// held only while a flow has bytes in it. Blocks are allocated on first need and kept (up
/// to `maxIdle` idle ones). Owned by one loop thread. Its fields are constants (the lists live
/// behind `state`), so a loop keeps it in a `let` and reaching a block costs no exclusivity
/// check.
struct BufferPool: ~Copyable {
    let bufferSize: Int
    let maxIdle: Int
    private let state: UnsafeMutablePointer<State>

    private struct State {
        var blocks: [UnsafeMutableRawPointer?] = []
        /// Released indices whose block is kept (at most `maxIdle`), and those whose block was
        /// freed: a block is allocated again only when no kept one is left.
        var idle: [Int32] = []
        var emptied: [Int32] = []
    }

    init(bufferSize: Int, maxIdle: Int = 256) {
        self.bufferSize = bufferSize
        self.maxIdle = maxIdle
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        for block in state.pointee.blocks { block?.deallocate() }
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// A buffer index; allocates a block when none is idle (rare: copy mode is the fallback).
    // SAFETY: `state` is this pool's own block, used by the loop thread only.
    func acquire() -> Int32 {
        if let index = state.pointee.idle.popLast() { return index }
        if let index = state.pointee.emptied.popLast() {
            state.pointee.blocks[Int(index)] = .allocate(byteCount: bufferSize, alignment: 64)
            return index
        }
        state.pointee.blocks.append(.allocate(byteCount: bufferSize, alignment: 64))
        return Int32(state.pointee.blocks.count - 1)
    }

    // SAFETY: `state` is this pool's own block, used by the loop thread only.
    func release(_ index: Int32) {
        if state.pointee.idle.count >= maxIdle {
            state.pointee.blocks[Int(index)]?.deallocate()
            state.pointee.blocks[Int(index)] = nil
            state.pointee.emptied.append(index)
        } else {
            state.pointee.idle.append(index)
        }
    }

    // SAFETY: `index` is a block acquired and not yet released; its holder alone writes it.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer { state.pointee.blocks[Int(index)]! }
}
