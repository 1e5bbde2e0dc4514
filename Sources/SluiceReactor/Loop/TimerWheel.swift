/// A hashed timer wheel over connection slots: one timer per slot, O(1) schedule and cancel,
/// no allocation after `init` (the links are arrays indexed by slot).
///
/// Time is in milliseconds. A timer fires at the first `expire` whose `now` is at or past
/// its deadline, rounded up to the tick. Deadlines beyond one revolution stay in their bucket
/// and are checked again each revolution. Owned by one loop thread.
struct TimerWheel: ~Copyable {
    let tickMillis: Int64
    let bucketMask: Int
    private let heads: UnsafeMutablePointer<Int32>
    private let next: UnsafeMutablePointer<Int32>
    private let prev: UnsafeMutablePointer<Int32>
    private let bucketOf: UnsafeMutablePointer<Int32>
    private let deadlines: UnsafeMutablePointer<Int64>
    let capacity: Int
    /// The last tick whose bucket was processed.
    private var processedTick: Int64
    private(set) var count = 0

    init(capacity: Int, tickMillis: Int64 = 50, buckets: Int = 512, now: Int64) {
        precondition(buckets > 0 && buckets & (buckets - 1) == 0, "buckets must be a power of two")
        self.capacity = capacity
        self.tickMillis = tickMillis
        bucketMask = buckets - 1
        heads = .allocate(capacity: buckets)
        heads.initialize(repeating: -1, count: buckets)
        // Per-slot links are set by `reset` when a slot is first used, so untouched slots
        // cost no resident memory.
        next = .allocate(capacity: capacity)
        prev = .allocate(capacity: capacity)
        bucketOf = .allocate(capacity: capacity)
        deadlines = .allocate(capacity: capacity)
        processedTick = now / tickMillis
    }

    deinit {
        heads.deallocate()
        next.deallocate()
        prev.deallocate()
        bucketOf.deallocate()
        deadlines.deallocate()
    }

    /// Marks a slot as having no timer. Call once before a slot's first use.
    @inline(__always)
    mutating func reset(_ slot: Int32) {
        bucketOf[Int(slot)] = -1
    }

    @inline(__always)
    func isScheduled(_ slot: Int32) -> Bool { bucketOf[Int(slot)] >= 0 }

    func deadline(of slot: Int32) -> Int64? { isScheduled(slot) ? deadlines[Int(slot)] : nil }

    /// Sets (or moves) the slot's single timer to `deadline`.
    @inline(__always)
    mutating func schedule(_ slot: Int32, at deadline: Int64) {
        if isScheduled(slot) { cancel(slot) }
        var tick = (deadline + tickMillis - 1) / tickMillis
        if tick <= processedTick { tick = processedTick + 1 }
        let bucket = Int32(truncatingIfNeeded: Int(tick) & bucketMask)
        let s = Int(slot)
        deadlines[s] = deadline
        bucketOf[s] = bucket
        prev[s] = -1
        next[s] = heads[Int(bucket)]
        if next[s] >= 0 { prev[Int(next[s])] = slot }
        heads[Int(bucket)] = slot
        count += 1
    }

    @inline(__always)
    mutating func cancel(_ slot: Int32) {
        let s = Int(slot)
        let bucket = bucketOf[s]
        guard bucket >= 0 else { return }
        if prev[s] >= 0 { next[Int(prev[s])] = next[s] } else { heads[Int(bucket)] = next[s] }
        if next[s] >= 0 { prev[Int(next[s])] = prev[s] }
        bucketOf[s] = -1
        count -= 1
    }

    /// Removes every timer due at `now` and appends its slot to `expired` (which the caller
    /// keeps with enough capacity reserved, so this does not allocate).
    mutating func expire(now: Int64, into expired: inout [Int32]) {
        let nowTick = now / tickMillis
        guard nowTick > processedTick else { return }
        // After a long sleep, one revolution visits every bucket once.
        let first = max(processedTick + 1, nowTick - Int64(bucketMask))
        var tick = first
        while tick <= nowTick {
            var slot = heads[Int(tick) & bucketMask]
            while slot >= 0 {
                let following = next[Int(slot)]
                if deadlines[Int(slot)] <= now {
                    cancel(slot)
                    expired.append(slot)
                }
                slot = following
            }
            tick += 1
        }
        processedTick = nowTick
    }

    /// Milliseconds until the first bucket that holds a timer comes due, or -1 when no timer
    /// is set (sleep unbounded). An idle loop with long timers wakes about once per
    /// revolution instead of every tick. Scans at most one revolution of buckets.
    func sleepMillis(now: Int64) -> Int32 {
        guard count > 0 else { return -1 }
        var tick = processedTick + 1
        let last = processedTick + Int64(bucketMask) + 1
        while tick < last && heads[Int(tick) & bucketMask] < 0 { tick += 1 }
        let wait = tick * tickMillis - now
        return wait <= 0 ? 0 : Int32(min(wait, Int64(Int32.max)))
    }

}
