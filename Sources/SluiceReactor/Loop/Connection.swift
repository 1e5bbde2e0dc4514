import SluiceSystem

/// One proxied TCP connection: a downstream socket, at most one upstream socket, and the two
/// flows between them. Lives in a slot of its loop's `ConnectionTable`.
///
/// State table:
///
/// | `life.state`  | upstream            | timer                 | leaves on                         |
/// | ------------- | ------------------- | --------------------- | --------------------------------- |
/// | `.idle` (free)| –                   | none                  | accept                            |
/// | `.connecting` | connect in progress | connect timeout       | writable+SO_ERROR 0 → `.tunnel`;  |
/// |               |                     |                       | refused/timeout → next endpoint   |
/// |               |                     |                       | or close                          |
/// | `.tunnel`     | connected           | tunnel inactivity     | both flows done, an error, idle   |
///
/// The decisions (retry or give up, re-arm or close) are `ConnectionLifecycle`'s; this file
/// holds the resources.
///
/// Invariants: a slot's `generation` changes when it is freed; descriptors are -1 when not
/// held; a pipe or buffer is held by a flow only while it has pending bytes (or for the
/// duration of one pump); `service`, `endpoint` (and the exchange's route-table, TLS-context
/// and HSTS indices) are indices into the snapshot of `snapshotEpoch` only, which the
/// loop keeps alive while the connection is bound to it (`Loop+Generations`).
struct Connection: BitwiseCopyable {
    var generation: UInt32 = 0
    /// Connecting or tunnel, tries and last activity; `.idle` while the slot is free.
    var life = ConnectionLifecycle()
    /// Whether `endpoint` is counted in the picker's active connections.
    var counted = false
    /// An http-listener connection: its exchange state is in `ConnectionTable.exchanges`.
    var isHTTP = false
    /// Reading a PROXY header or a ClientHello before routing (`Loop+Peek`).
    var peeking = false
    /// Peeked bytes wait in the exchange's `req` queue for the upstream.
    var replay = false
    /// The slot's `HTTPExchange` holds buffers to release on close.
    var usesExchange = false
    /// An HTTP/2 client connection (`session`: the socket, with its streams in other slots),
    /// or one of its streams (`stream`: an HTTP exchange without a socket of its own).
    var h2 = HTTP2Role.none
    /// An HTTP exchange whose upstream is an HTTP/2 stream on a session slot
    /// (`HTTPExchange.up2`), not a socket of its own.
    var h2Upstream = false
    /// A TLS session terminated here (OpenSSL `SSL *`): the client's bytes go through it.
    /// Freed by `close` before the socket.
    var tls: OpaquePointer? = nil
    var downFD: Int32 = -1
    var upFD: Int32 = -1
    var service: Int32 = -1
    var endpoint: Int32 = -1
    var nextFree: Int32 = -1
    /// The loop epoch (`Loop.epoch`) of the snapshot every index this connection holds refers to.
    var snapshotEpoch: UInt64 = 0
    /// Position of the connection's listener in the loop's `listeners`, kept up to date by
    /// swaps; -1 once the listener is gone (or changed protocol).
    var listener: Int32 = -1
    /// HTTP between requests: the pool entry of the upstream this client parked (registered
    /// under its token), with the entry's generation; -1 when none (`Loop+UpstreamReuse`).
    var parked: Int32 = -1
    var parkedGeneration: UInt32 = 0
    /// downstream → upstream
    var toUp = FlowState()
    /// upstream → downstream
    var toDown = FlowState()
    var toUpPipe = Pipe.none
    var toDownPipe = Pipe.none
    /// Copy-mode buffers, indices into the loop's `BufferPool`; -1 when not held.
    var toUpBuffer: Int32 = -1
    var toDownBuffer: Int32 = -1
    /// Bytes, times and the close reason, for the metrics and the access log (`Observe/`).
    var stats = ConnectionStats()

    /// The slot holds a connection: a client socket, an HTTP/2 stream of one, or an HTTP/2
    /// connection to an endpoint.
    @inline(__always) var isLive: Bool { downFD >= 0 || h2 == .stream || h2 == .upstream }
}

enum HTTP2Role: UInt8 {
    case none
    case session
    case stream
    /// An HTTP/2 connection to an endpoint (`Loop+HTTP2Upstream`): its socket is `upFD`.
    case upstream
}

/// Preallocated connection slots with a free list. Slots above `highWater` have never been
/// used and are not touched, so the table costs resident memory only for connections that
/// existed. Owned by one loop thread. Its fields are constants (the free list and counts live
/// behind `state`), so a loop keeps it in a `let` and reaching a slot costs no exclusivity
/// check.
struct ConnectionTable: ~Copyable {
    let capacity: Int
    let slots: UnsafeMutablePointer<Connection>
    /// HTTP exchange state, by slot; initialised when an http connection takes the slot, so
    /// slots used only for TCP never touch it.
    let exchanges: UnsafeMutablePointer<HTTPExchange>
    private let state: UnsafeMutablePointer<State>

    /// The free list's head, the slots ever used and the live ones.
    private struct State {
        var freeHead: Int32 = -1
        var highWater: Int32 = 0
        var live = 0
    }

    var highWater: Int32 { state.pointee.highWater }
    var live: Int { state.pointee.live }

    init(capacity: Int) {
        precondition(capacity > 0 && capacity < 1 << 30)
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        exchanges = .allocate(capacity: capacity)
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        slots.deinitialize(count: Int(state.pointee.highWater))
        slots.deallocate()
        exchanges.deallocate()
        state.deallocate()
    }

    /// A free slot, or nil when all `capacity` are live. `isFirstUse` tells the caller to
    /// initialise per-slot state kept elsewhere (timer links).
    // SAFETY: `state` is this table's own block, used by the loop thread only.
    @inline(__always)
    func allocate() -> (slot: Int32, isFirstUse: Bool)? {
        if state.pointee.freeHead >= 0 {
            let slot = state.pointee.freeHead
            state.pointee.freeHead = slots[Int(slot)].nextFree
            state.pointee.live += 1
            return (slot, false)
        }
        guard Int(state.pointee.highWater) < capacity else { return nil }
        let slot = state.pointee.highWater
        state.pointee.highWater += 1
        (slots + Int(slot)).initialize(to: Connection())
        state.pointee.live += 1
        return (slot, true)
    }

    /// Returns a slot to the free list and bumps its generation, so queued events for the
    /// old connection are recognised as stale.
    // SAFETY: `state` is this table's own block, used by the loop thread only.
    @inline(__always)
    func free(_ slot: Int32) {
        let generation = slots[Int(slot)].generation &+ 1
        slots[Int(slot)] = Connection()
        slots[Int(slot)].generation = generation
        slots[Int(slot)].nextFree = state.pointee.freeHead
        state.pointee.freeHead = slot
        state.pointee.live -= 1
    }

    // SAFETY: `slot` < `highWater` (initialised); only the loop thread holds the pointer, and not across a free.
    @inline(__always)
    func pointer(_ slot: Int32) -> UnsafeMutablePointer<Connection> { slots + Int(slot) }
}
