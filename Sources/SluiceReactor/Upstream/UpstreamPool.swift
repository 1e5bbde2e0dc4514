import SluiceSystem

/// Idle keep-alive upstream connections, per endpoint, owned by one loop.
///
/// An entry is a connected socket whose last response was read whole. It stays registered
/// in epoll, in one of two ways:
///
/// | `owner` | registered as                                   | any input or hang-up        |
/// | ------- | ----------------------------------------------- | --------------------------- |
/// | slot s  | `.upstream` token of client s (parked: the      | reaches s, which drops it   |
/// |         | client that used it last; no epoll_ctl to park) |                             |
/// | -1      | `.pooled` token of the entry (IN/RDHUP only)    | `onPooled` drops it         |
///
/// Parking is what keeps an idle client from holding an upstream connection: after each
/// response the connection goes into the pool, where any client of the loop can take it; the
/// client that parked it takes it back without a system call. Entries older than the idle
/// limit are closed by `sweep`, which also trims each endpoint's list to `perEndpoint`
/// entries once they have been idle for `trimAfterMillis` (parking itself is not capped, so
/// a busy keep-alive load does not close connections it is about to reuse). On a routing
/// change every entry is filed again under its endpoint's new index (`remap`, by identity);
/// entries of endpoints that left are closed.
///
/// Invariants: an entry is in exactly one list (an endpoint's, doubly linked, newest first,
/// or the free list); `generation` changes when an entry is freed, so a queued event or a
/// client's parked reference to a reused entry is recognised as stale. No allocation after
/// `init` except on a swap.
struct UpstreamPool: ~Copyable {
    struct Entry {
        var fd: Int32 = -1
        var endpoint: Int32 = -1
        var next: Int32 = -1
        var previous: Int32 = -1
        var generation: UInt32 = 0
        /// The client slot whose `.upstream` token the socket is registered under; -1: the
        /// entry's own `.pooled` token.
        var owner: Int32 = -1
        var since: Int64 = 0
    }

    let capacity: Int
    private let entries: UnsafeMutablePointer<Entry>
    private var freeHead: Int32 = -1
    private var heads: [Int32] = []
    private var counts: [Int32] = []
    private(set) var count = 0
    var perEndpoint = 32
    /// Entries beyond `perEndpoint` in a list are closed by `sweep` after this long idle.
    static let trimAfterMillis: Int64 = 1_000

    init(capacity: Int) {
        self.capacity = capacity
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: Entry(), count: capacity)
        for index in 0..<capacity { entries[index].next = index + 1 < capacity ? Int32(index + 1) : -1 }
        freeHead = capacity > 0 ? 0 : -1
    }

    deinit {
        entries.deallocate()
    }

    /// Sizes the per-endpoint lists for a snapshot; the pool must be empty.
    mutating func resize(endpoints: Int, perEndpoint: Int) {
        precondition(count == 0)
        heads = Array(repeating: -1, count: endpoints)
        counts = Array(repeating: 0, count: endpoints)
        self.perEndpoint = perEndpoint
    }

    /// The entry `index` if it is live with `generation`.
    @inline(__always)
    func entry(_ index: Int32, generation: UInt32) -> Entry? {
        guard index >= 0, Int(index) < capacity, entries[Int(index)].generation == generation,
            entries[Int(index)].fd >= 0
        else { return nil }
        return entries[Int(index)]
    }

    /// Takes the newest idle connection to `endpoint`: its descriptor and the slot whose
    /// token it is registered under (-1: the pooled token). The caller registers it anew.
    @inline(__always)
    mutating func take(endpoint: Int) -> (fd: Int32, owner: Int32)? {
        guard endpoint < heads.count, heads[endpoint] >= 0 else { return nil }
        let index = heads[endpoint]
        let taken = entries[Int(index)]
        unlink(index)
        release(index)
        return (taken.fd, taken.owner)
    }

    /// Adds an idle connection registered under `owner`'s token (or the pooled one, -1).
    /// `capped`: refuse when the endpoint already has `perEndpoint` entries (a connection
    /// whose client left); parked ones are trimmed later by `sweep`. Nil when refused or the
    /// pool is full: the caller closes the socket. Returns the entry and its generation.
    @inline(__always)
    mutating func put(fd: Int32, endpoint: Int, owner: Int32, capped: Bool, now: Int64) -> (
        index: Int32, generation: UInt32
    )? {
        guard endpoint < heads.count, freeHead >= 0, !capped || counts[endpoint] < perEndpoint else { return nil }
        let index = freeHead
        freeHead = entries[Int(index)].next
        entries[Int(index)].fd = fd
        entries[Int(index)].endpoint = Int32(endpoint)
        entries[Int(index)].owner = owner
        entries[Int(index)].since = now
        link(index, endpoint: endpoint)
        count += 1
        return (index, entries[Int(index)].generation)
    }

    /// The entry is now registered under the pooled token (its parking client moved on).
    mutating func disown(_ index: Int32, generation: UInt32) {
        guard entry(index, generation: generation) != nil else { return }
        entries[Int(index)].owner = -1
    }

    /// Unlinks entry `index` if it is live with `generation`; returns its descriptor. O(1).
    mutating func remove(_ index: Int32, generation: UInt32) -> Int32? {
        guard let live = entry(index, generation: generation) else { return nil }
        unlink(index)
        release(index)
        return live.fd
    }

    /// Closes entries idle since before `cutoff`, and entries beyond `perEndpoint` in their
    /// list idle since before `trimCutoff`; `close` gets their descriptors.
    mutating func sweep(olderThan cutoff: Int64, trimBefore trimCutoff: Int64 = .min, _ close: (Int32) -> Void) {
        for endpoint in heads.indices {
            var cursor = heads[endpoint]
            var position = 0
            while cursor >= 0 {
                let next = entries[Int(cursor)].next
                let since = entries[Int(cursor)].since
                if since < cutoff || (position >= perEndpoint && since < trimCutoff),
                    let fd = remove(cursor, generation: entries[Int(cursor)].generation)
                {
                    close(fd)
                } else {
                    position += 1
                }
                cursor = next
            }
        }
    }

    /// Every idle descriptor, removed; the caller closes them.
    mutating func drainAll(_ close: (Int32) -> Void) {
        sweep(olderThan: .max, close)
    }

    /// Files every entry under its endpoint's index in a new snapshot: `map[old]` is the new
    /// index or -1 (the endpoint left: the entry's descriptor goes to `close`), `endpoints` the
    /// new snapshot's endpoint count. Entry indices, generations and owners stay, so tokens and
    /// parked references stay valid. Swaps only.
    mutating func remap(_ map: [Int32], endpoints: Int, perEndpoint: Int, _ close: (Int32) -> Void) {
        var live: [(index: Int32, endpoint: Int32)] = []
        live.reserveCapacity(count)
        for endpoint in heads.indices {
            var cursor = heads[endpoint]
            while cursor >= 0 {
                live.append((cursor, endpoint < map.count ? map[endpoint] : -1))
                cursor = entries[Int(cursor)].next
            }
        }
        heads = Array(repeating: -1, count: endpoints)
        counts = Array(repeating: 0, count: endpoints)
        self.perEndpoint = perEndpoint
        // Oldest first, so that each list keeps its most recently used entry at the head.
        for (index, endpoint) in live.reversed() {
            if endpoint >= 0 {
                entries[Int(index)].endpoint = endpoint
                link(index, endpoint: Int(endpoint))
            } else {
                close(entries[Int(index)].fd)
                release(index)
            }
        }
    }

    private mutating func link(_ index: Int32, endpoint: Int) {
        let head = heads[endpoint]
        entries[Int(index)].previous = -1
        entries[Int(index)].next = head
        if head >= 0 { entries[Int(head)].previous = index }
        heads[endpoint] = index
        counts[endpoint] += 1
    }

    private mutating func unlink(_ index: Int32) {
        let endpoint = Int(entries[Int(index)].endpoint)
        let previous = entries[Int(index)].previous
        let next = entries[Int(index)].next
        if previous >= 0 { entries[Int(previous)].next = next } else { heads[endpoint] = next }
        if next >= 0 { entries[Int(next)].previous = previous }
        counts[endpoint] -= 1
    }

    /// Frees an unlinked entry. The caller has taken its descriptor.
    private mutating func release(_ index: Int32) {
        entries[Int(index)].fd = -1
        entries[Int(index)].owner = -1
        entries[Int(index)].generation &+= 1
        entries[Int(index)].next = freeHead
        entries[Int(index)].previous = -1
        freeHead = index
        count -= 1
    }
}
