/// Fixed-size byte buffers for connections that cannot splice, pooled per loop: a buffer is
/// held only while a flow has bytes in it. Blocks are allocated on first need and kept while
/// idle; `trim` (once a second) frees the idle ones beyond `maxIdle` that no acquire needed
/// since the last trim. So a load that holds more than `maxIdle` at once reuses its blocks
/// instead of freeing and allocating one per release, and a peak's blocks go back within
/// about two trims once it is over. Owned by one loop thread. Its fields are constants (the
/// lists live behind `state`), so a loop keeps it in a `let` and reaching a block costs no
/// exclusivity check.
struct BufferPool: ~Copyable {
    let bufferSize: Int
    let maxIdle: Int
    private let state: UnsafeMutablePointer<State>

    private struct State {
        var blocks: [UnsafeMutableRawPointer?] = []
        /// Released indices whose block is kept, and those whose block was freed: a block is
        /// allocated again only when no kept one is left.
        var idle: [Int32] = []
        var emptied: [Int32] = []
        /// The fewest idle blocks since the last trim: the ones above it were not needed.
        var fewestIdle = 0
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

    /// Blocks allocated now (held or idle).
    var allocated: Int { state.pointee.blocks.count - state.pointee.emptied.count }

    /// A buffer index; allocates a block when none is idle.
    // SAFETY: `state` is this pool's own block, used by the loop thread only.
    func acquire() -> Int32 {
        if let index = state.pointee.idle.popLast() {
            state.pointee.fewestIdle = min(state.pointee.fewestIdle, state.pointee.idle.count)
            return index
        }
        state.pointee.fewestIdle = 0
        if let index = state.pointee.emptied.popLast() {
            state.pointee.blocks[Int(index)] = .allocate(byteCount: bufferSize, alignment: 64)
            return index
        }
        state.pointee.blocks.append(.allocate(byteCount: bufferSize, alignment: 64))
        return Int32(state.pointee.blocks.count - 1)
    }

    // SAFETY: `state` is this pool's own block, used by the loop thread only.
    @inline(__always)
    func release(_ index: Int32) {
        state.pointee.idle.append(index)
    }

    /// Frees the idle blocks beyond `maxIdle` that stayed idle since the last trim.
    // SAFETY: `state` is this pool's own block, used by the loop thread only.
    func trim() {
        let spare = min(state.pointee.idle.count, state.pointee.fewestIdle) - maxIdle
        if spare > 0 {
            // The oldest released go first; the most recent stay warm in the cache.
            for index in state.pointee.idle[..<spare] {
                state.pointee.blocks[Int(index)]?.deallocate()
                state.pointee.blocks[Int(index)] = nil
                state.pointee.emptied.append(index)
            }
            state.pointee.idle.removeFirst(spare)
        }
        state.pointee.fewestIdle = state.pointee.idle.count
    }

    // SAFETY: `index` is a block acquired and not yet released; its holder alone writes it.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer { state.pointee.blocks[Int(index)]! }
}
