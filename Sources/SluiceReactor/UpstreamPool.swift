import SluiceSystem

/// Idle keep-alive upstream connections, per endpoint, owned by one loop.
///
/// An entry is a connected socket whose last response was read whole. It stays registered
/// in epoll (for IN|RDHUP only, under a `.pooled` token): any event while pooled means the
/// server closed it or sent bytes nobody asked for, and the entry is closed. Entries older
/// than the idle limit are closed by `sweep`. On a routing change every entry is filed again
/// under its endpoint's new index (`remap`, by identity); entries of endpoints that left are
/// closed.
///
/// Invariants: at most `perEndpoint` entries per endpoint; an entry is in exactly one list
/// (an endpoint's or the free list); `generation` changes when an entry is freed, so a
/// queued event for a reused entry is recognised as stale. No allocation after `init`
/// except when the endpoint count grows on a reload.
struct UpstreamPool: ~Copyable {
    struct Entry {
        var fd: Int32 = -1
        var endpoint: Int32 = -1
        var next: Int32 = -1
        var generation: UInt32 = 0
        var since: Int64 = 0
    }

    let capacity: Int
    private let entries: UnsafeMutablePointer<Entry>
    private var freeHead: Int32 = -1
    private var heads: [Int32] = []
    private var counts: [Int32] = []
    private(set) var count = 0
    var perEndpoint = 32

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

    /// Files every entry under its endpoint's index in a new snapshot: `map[old]` is the new
    /// index or -1 (the endpoint left: the entry's descriptor goes to `close`), `endpoints` the
    /// new snapshot's endpoint count. Entries beyond `perEndpoint` are closed too. Entry
    /// indices and generations stay, so the epoll tokens of kept entries stay valid. Swaps only.
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
            if endpoint >= 0 && counts[Int(endpoint)] < perEndpoint {
                entries[Int(index)].endpoint = endpoint
                entries[Int(index)].next = heads[Int(endpoint)]
                heads[Int(endpoint)] = index
                counts[Int(endpoint)] += 1
            } else {
                close(entries[Int(index)].fd)
                release(index)
            }
        }
    }

    /// Takes an idle connection to `endpoint`: its entry index and descriptor.
    @inline(__always)
    mutating func take(endpoint: Int) -> (index: Int32, fd: Int32)? {
        guard endpoint < heads.count, heads[endpoint] >= 0 else { return nil }
        let index = heads[endpoint]
        heads[endpoint] = entries[Int(index)].next
        counts[endpoint] -= 1
        let fd = entries[Int(index)].fd
        release(index)
        return (index, fd)
    }

    /// Adds an idle connection; nil when the endpoint's list or the pool is full (the caller
    /// closes the socket then). Returns the entry index and its generation for the token.
    @inline(__always)
    mutating func put(fd: Int32, endpoint: Int, now: Int64) -> (index: Int32, generation: UInt32)? {
        guard endpoint < heads.count, counts[endpoint] < perEndpoint, freeHead >= 0 else { return nil }
        let index = freeHead
        freeHead = entries[Int(index)].next
        entries[Int(index)].fd = fd
        entries[Int(index)].endpoint = Int32(endpoint)
        entries[Int(index)].since = now
        entries[Int(index)].next = heads[endpoint]
        heads[endpoint] = index
        counts[endpoint] += 1
        count += 1
        return (index, entries[Int(index)].generation)
    }

    /// Unlinks entry `index` if it is live with `generation`; returns its descriptor.
    mutating func remove(_ index: Int32, generation: UInt32) -> Int32? {
        guard index >= 0, Int(index) < capacity, entries[Int(index)].generation == generation,
            entries[Int(index)].fd >= 0
        else { return nil }
        let endpoint = Int(entries[Int(index)].endpoint)
        var cursor = heads[endpoint]
        var previous: Int32 = -1
        while cursor >= 0 && cursor != index {
            previous = cursor
            cursor = entries[Int(cursor)].next
        }
        guard cursor == index else { return nil }
        if previous >= 0 {
            entries[Int(previous)].next = entries[Int(index)].next
        } else {
            heads[endpoint] = entries[Int(index)].next
        }
        counts[endpoint] -= 1
        let fd = entries[Int(index)].fd
        release(index)
        return fd
    }

    /// Descriptors of entries idle since before `cutoff`, removed from the pool; the caller
    /// closes them.
    mutating func sweep(olderThan cutoff: Int64, _ close: (Int32) -> Void) {
        for endpoint in heads.indices {
            var cursor = heads[endpoint]
            while cursor >= 0 {
                let next = entries[Int(cursor)].next
                if entries[Int(cursor)].since < cutoff,
                    let fd = remove(cursor, generation: entries[Int(cursor)].generation)
                {
                    close(fd)
                }
                cursor = next
            }
        }
    }

    /// Every idle descriptor, removed; the caller closes them.
    mutating func drainAll(_ close: (Int32) -> Void) {
        sweep(olderThan: .max, close)
    }

    private mutating func release(_ index: Int32) {
        entries[Int(index)].fd = -1
        entries[Int(index)].generation &+= 1
        entries[Int(index)].next = freeHead
        freeHead = index
        count -= 1
    }
}
