import SluiceSystem

/// The io_uring driver: the same verbs and outcomes as the epoll driver, so protocol code
/// cannot tell them apart, made of completions instead of readiness.
///
/// - Receives: one multishot receive per connected socket into the loop's ring of provided
///   buffers. A completion queues its buffer on the descriptor and raises a readable event;
///   `read` copies out of the queue and gives emptied buffers back. An idle socket holds no
///   buffer. A descriptor that keeps `pauseBuffers` buffers unread has its receive cancelled
///   (back-pressure stays in the kernel's socket buffer) and re-armed once it is read empty.
///   An empty buffer ring (ENOBUFS) moves that descriptor to polling (below): no
///   connection waits for another's buffers.
/// - Sends of up to `slotSize` bytes are copied into a send slot and submitted with the
///   batch (MSG_WAITALL); the slot stays owned until its completion, and a second send on
///   the descriptor meanwhile is `.wouldBlock`, answered by a writable event when the first
///   completes, so bytes never reorder. Larger sends, and any send with no slot free, are
///   made at once with send(2).
/// - Accepts: multishot accept into a per-listener queue; `accept` pops it (the peer's
///   address from getpeername, since a multishot accept returns none).
/// - Connects: IORING_OP_CONNECT; its completion is the writable event, `connectError` its
///   result.
/// - Polling: a descriptor that splices (and pipes, eventfds) is watched with a multishot
///   poll and read, written and spliced with plain system calls, as under epoll. A socket
///   moves there for good once it splices: its receive is cancelled first, and what was
///   already received goes into the pipe before the socket's own bytes.
/// - Every operation's user data carries the descriptor and its generation (bumped at each
///   close), so a completion arriving after its descriptor was closed and the number reused
///   is recognised and only frees what it held. Closing cancels the descriptor's
///   operations in flight and closes it through the ring, after the operations prepared
///   for it: the number is not reused, and a send not yet submitted not cut short, before.
///   A listener's accept is ended before it closes, at once, as on epoll; a drain stops
///   accepting the same way and serves what the kernel had accepted (`takeQueued`).
///
/// Events are coalesced per descriptor within a batch; a registration raises the event an
/// edge-triggered epoll registration would (writable, and readable when input waits).
final class URingDriver {
    let ring: URing
    static let slotSize = 16 * 1024
    static let slotCount = 1024
    static let pauseBuffers: Int32 = 2
    static let acceptQueueCapacity: Int32 = 4096

    /// Descriptor state in chunks of `chunkSize`, made on first use and never moved, so a
    /// pointer from `state` stays valid while another descriptor's chunk is made.
    private let chunks: UnsafeMutablePointer<UnsafeMutablePointer<URingFD>?>
    /// Connect addresses, each kept until its connect is submitted: one per connect since
    /// the last submission, wrapping at twice the submission queue (by then the entry that
    /// used a slot has gone to the kernel, which copies the address when it starts).
    private let connectAddresses: UnsafeMutableRawPointer
    private let connectAddressCount: Int
    private var nextConnectAddress = 0
    private static let chunkShift = 10
    private static let chunkSize = 1 << chunkShift
    private static let chunkCount = 1 << 12
    private static let addressSize = 128

    private let bufferNext: UnsafeMutablePointer<Int32>
    private let bufferLength: UnsafeMutablePointer<Int32>
    /// Provided buffers handed out by the kernel and not yet given back.
    private(set) var buffersOut = 0

    private let slotMemory: UnsafeMutableRawPointer
    private let slots: UnsafeMutablePointer<SendSlot>
    private let freeSlots: UnsafeMutablePointer<Int32>
    private var freeSlotCount: Int

    private var current: UnsafeMutablePointer<URingEvent>
    private var currentCount = 0
    private var pending: UnsafeMutablePointer<URingEvent>
    private var pendingCount = 0
    private var eventCapacity: Int
    private var stamp: UInt32 = 1

    private var acceptQueues: [AcceptQueue] = []
    private var listenerFDs: [Int32] = []

    /// Counters for the loop's metrics and tests.
    private(set) var stats = URingStats()

    #if DEBUG
        /// Tests: record operations instead of preparing them, and answer with `complete`.
        var recorded: [URingOp]?

        /// Tests: the user data of `fd`'s operation of `kind` as it is now (a send: the one in
        /// flight).
        func userData(_ kind: URingOp.Kind, _ fd: Int32) -> UInt64 {
            let s = state(fd)
            if kind == .send {
                return kind.rawValue << 56 | UInt64(UInt32(s.pointee.sendSlot)) << 32 | UInt64(UInt32(bitPattern: fd))
            }
            return Self.data(kind, s.pointee.generation, fd)
        }

        /// Tests: what the driver holds for `fd`.
        func inspect(_ fd: Int32) -> URingFD { state(fd).pointee }
    #endif

    init(entries: Int = 4096, buffers: Int = 512, bufferSize: Int = 16 * 1024) throws(URingError) {
        ring = try URing(entries: entries, buffers: buffers, bufferSize: bufferSize)
        chunks = .allocate(capacity: Self.chunkCount)
        chunks.initialize(repeating: nil, count: Self.chunkCount)
        connectAddressCount = 2 * entries
        connectAddresses = .allocate(byteCount: connectAddressCount * Self.addressSize, alignment: 16)
        bufferNext = .allocate(capacity: buffers)
        bufferNext.initialize(repeating: -1, count: buffers)
        bufferLength = .allocate(capacity: buffers)
        bufferLength.initialize(repeating: 0, count: buffers)
        slotMemory = .allocate(byteCount: Self.slotSize * Self.slotCount, alignment: 64)
        slots = .allocate(capacity: Self.slotCount)
        slots.initialize(repeating: SendSlot(), count: Self.slotCount)
        freeSlots = .allocate(capacity: Self.slotCount)
        // Lowest slots on top: the few in use stay the same, so their pages stay few.
        for i in 0..<Self.slotCount { freeSlots[i] = Int32(Self.slotCount - 1 - i) }
        freeSlotCount = Self.slotCount
        eventCapacity = 8192
        current = .allocate(capacity: eventCapacity)
        pending = .allocate(capacity: eventCapacity)
        acceptQueues.reserveCapacity(64)
        listenerFDs.reserveCapacity(64)
    }

    deinit {
        for i in 0..<Self.chunkCount { chunks[i]?.deallocate() }
        chunks.deallocate()
        connectAddresses.deallocate()
        bufferNext.deallocate()
        bufferLength.deallocate()
        slotMemory.deallocate()
        slots.deallocate()
        freeSlots.deallocate()
        current.deallocate()
        pending.deallocate()
        for queue in acceptQueues { queue.storage.deallocate() }
    }

    /// The state of every descriptor in use, for SIGUSR1's report.
    func describe() -> String {
        var parts = ["io_uring: buffers_out=\(buffersOut)/\(ring.bufferCount) send_slots_free=\(freeSlotCount)"]
        for c in 0..<Self.chunkCount {
            guard let chunk = chunks[c] else { continue }
            for i in 0..<Self.chunkSize where chunk[i].role != .none {
                let s = chunk[i]
                let fd = c << Self.chunkShift + i
                parts.append(
                    "fd \(fd) \(s.role) recv=\(s.recv) stop=\(s.stopping) polling=\(s.polling) queued=\(s.queued)/\(s.queuedBuffers) eof=\(s.eof) error=\(s.error) send=\(s.sendSlot) wantWrite=\(s.wantWrite) pollOut=\(s.pollOutArmed) idle=\(s.idle)"
                )
            }
        }
        return parts.joined(separator: "; ")
    }

    /// On the loop thread, before the first wait.
    func start() throws(Errno) { try ring.start() }

    // MARK: - Descriptor state

    @inline(__always)
    private func state(_ fd: Int32) -> UnsafeMutablePointer<URingFD> {
        let c = Int(fd) >> Self.chunkShift
        precondition(c < Self.chunkCount, "descriptor \(fd) beyond the io_uring driver's table")
        // SAFETY: the chunk exists (made below) and holds `chunkSize` states; fd's index in it
        // is below that. Chunks live as long as the driver.
        if let chunk = chunks[c] { return chunk + (Int(fd) & (Self.chunkSize - 1)) }
        return makeChunk(c) + (Int(fd) & (Self.chunkSize - 1))
    }

    private func makeChunk(_ c: Int) -> UnsafeMutablePointer<URingFD> {
        let chunk = UnsafeMutablePointer<URingFD>.allocate(capacity: Self.chunkSize)
        chunk.initialize(repeating: URingFD(), count: Self.chunkSize)
        chunks[c] = chunk
        return chunk
    }

    @inline(__always)
    private static func data(_ op: URingOp.Kind, _ generation: UInt32, _ fd: Int32) -> UInt64 {
        op.rawValue << 56 | UInt64(generation & 0xFF_FFFF) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    // MARK: - Events

    /// Raises (or adds to) the descriptor's event in the next batch.
    @inline(__always)
    private func raise(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, _ mask: UInt32) {
        guard s.pointee.watched else { return }
        var mask = mask
        // Writable means connected to the protocol code: never before the connect completes.
        if s.pointee.idle || s.pointee.connecting { mask &= ~Readiness.writable.rawValue }
        if mask == 0 { return }
        if s.pointee.eventStamp == stamp {
            pending[Int(s.pointee.eventIndex)].mask |= mask
            pending[Int(s.pointee.eventIndex)].token = s.pointee.token
            return
        }
        if pendingCount == eventCapacity { growEvents() }
        pending[pendingCount] = URingEvent(token: s.pointee.token, mask: mask)
        s.pointee.eventStamp = stamp
        s.pointee.eventIndex = Int32(pendingCount)
        pendingCount += 1
    }

    private func growEvents() {
        let capacity = eventCapacity * 2
        let a = UnsafeMutablePointer<URingEvent>.allocate(capacity: capacity)
        a.moveInitialize(from: pending, count: pendingCount)
        pending.deallocate()
        pending = a
        let b = UnsafeMutablePointer<URingEvent>.allocate(capacity: capacity)
        b.moveInitialize(from: current, count: currentCount)
        current.deallocate()
        current = b
        eventCapacity = capacity
    }

    /// Submits, waits and turns completions into events; how many events are ready.
    func wait(timeoutMillis: Int32) -> Int {
        for i in 0..<listenerFDs.count {
            let fd = listenerFDs[i]
            let s = state(fd)
            if s.pointee.watched && acceptQueues[Int(s.pointee.acceptQueue)].count > 0 {
                raise(fd, s, Readiness.readable.rawValue)
            }
        }
        let n = ring.submitAndWait(timeoutMillis: pendingCount > 0 ? 0 : timeoutMillis)
        nextConnectAddress = 0
        for i in 0..<n {
            let cqe = ring.completion(at: i)
            complete(data: cqe.data, result: cqe.res, flags: cqe.flags)
        }
        return flushEvents()
    }

    /// Makes the events raised so far the batch `token(at:)` and `readiness(at:)` read.
    func flushEvents() -> Int {
        swap(&current, &pending)
        currentCount = pendingCount
        pendingCount = 0
        stamp &+= 1
        if stamp == 0 { stamp = 1 }
        return currentCount
    }

    @inline(__always)
    func token(at index: Int) -> EventToken { EventToken(raw: current[index].token) }

    @inline(__always)
    func readiness(at index: Int) -> Readiness { Readiness(rawValue: current[index].mask) }

    // MARK: - Completions

    /// One completion: updates the descriptor it belongs to, if it still lives, and raises
    /// its event; frees what a stale one held.
    func complete(data: UInt64, result: Int32, flags: UInt32) {
        let kind = URingOp.Kind(rawValue: data >> 56) ?? .cancel
        let fd = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: data))
        let tag = UInt32(truncatingIfNeeded: data >> 32) & 0xFF_FFFF
        switch kind {
        case .send:
            sendDone(slot: Int32(tag), fd: fd, result: result)
            return
        case .cancel, .close:
            return
        default:
            break
        }
        let s = state(fd)
        let live = s.pointee.generation & 0xFF_FFFF == tag && s.pointee.role != .none
        let more = flags & URing.moreFlag != 0
        if flags & URing.bufferFlag != 0 { buffersOut += 1 }
        switch kind {
        case .recv:
            guard live else {
                if flags & URing.bufferFlag != 0 { giveBack(Int32(flags >> URing.bufferShift)) }
                return
            }
            received(fd, s, result: result, flags: flags, more: more)
        case .accept:
            guard live else {
                if result >= 0 { Syscall.close(result) }
                return
            }
            accepted(fd, s, result: result, more: more)
        case .connect:
            guard live, s.pointee.connecting else { return }
            s.pointee.connecting = false
            if result < 0 {
                s.pointee.connectError = -result
                raise(fd, s, Readiness.writable.rawValue | Readiness.error.rawValue)
            } else {
                armReceive(fd, s)
                raise(fd, s, Readiness.writable.rawValue)
            }
        case .poll:
            guard live, s.pointee.pollArmed else { return }
            if !more {
                s.pointee.pollArmed = false
                if result != -Errno.canceled.rawValue { armPoll(fd, s) }
            }
            if result > 0 { raise(fd, s, UInt32(result)) }
        case .pollOut:
            guard live, s.pointee.pollOutArmed else { return }
            s.pointee.pollOutArmed = false
            if s.pointee.wantWrite {
                s.pointee.wantWrite = false
                raise(fd, s, Readiness.writable.rawValue | (result > 0 ? UInt32(result) : 0))
            }
        case .wake:
            guard live else { return }
            if !more { armWake(fd, s) }
            raise(fd, s, Readiness.readable.rawValue)
        case .send, .cancel, .close:
            break
        }
    }

    private func received(
        _ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, result: Int32, flags: UInt32, more: Bool
    ) {
        if result > 0 {
            let id = Int32(flags >> URing.bufferShift)
            bufferLength[Int(id)] = result
            bufferNext[Int(id)] = -1
            if s.pointee.tail >= 0 { bufferNext[Int(s.pointee.tail)] = id } else { s.pointee.head = id }
            s.pointee.tail = id
            s.pointee.queued += result
            s.pointee.queuedBuffers += 1
            stats.receives += 1
            if !more {
                s.pointee.recv = .off
                if s.pointee.stopping == .poll { startPolling(fd, s) } else { resumeReceive(fd, s) }
            } else if s.pointee.recv == .armed && s.pointee.queuedBuffers >= Self.pauseBuffers {
                stopReceive(fd, s, then: .pause)
            }
            raise(fd, s, Readiness.readable.rawValue)
            return
        }
        if flags & URing.bufferFlag != 0 { giveBack(Int32(flags >> URing.bufferShift)) }
        if more { return }
        s.pointee.recv = .off
        let stopping = s.pointee.stopping
        s.pointee.stopping = .none
        if result == 0 {
            s.pointee.eof = true
            raise(fd, s, Readiness.readable.rawValue | Readiness.readHangup.rawValue)
        } else if result == -Errno.noBuffers.rawValue {
            // The ring is empty: this descriptor reads for itself until it closes.
            stats.starved += 1
            startPolling(fd, s)
        } else if result == -Errno.canceled.rawValue {
            if stopping == .poll {
                startPolling(fd, s)
            } else if stopping == .pause && s.pointee.queued == 0 {
                armReceive(fd, s)
            }
        } else {
            s.pointee.error = -result
            raise(fd, s, Readiness.readable.rawValue | Readiness.error.rawValue | Readiness.hangup.rawValue)
        }
    }

    private func accepted(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, result: Int32, more: Bool) {
        let q = Int(s.pointee.acceptQueue)
        if result >= 0 {
            if acceptQueues[q].count >= Self.acceptQueueCapacity {
                // Cannot happen while the queue stops its accept before filling; a reset
                // beats a leak.
                Socket.abort(result)
            } else {
                acceptQueues[q].push(result)
                if acceptQueues[q].count >= Self.acceptQueueCapacity / 2 && s.pointee.acceptArmed && more {
                    s.pointee.acceptArmed = false
                    s.pointee.acceptStopping = true
                    cancel(Self.data(.accept, s.pointee.generation, fd))
                }
            }
        } else if result != -Errno.canceled.rawValue {
            s.pointee.error = -result
        }
        if !more {
            s.pointee.acceptArmed = false
            s.pointee.acceptStopping = false
            // Watched again meanwhile (a swap re-registers every listener): accept again.
            if s.pointee.watched && s.pointee.error == 0
                && acceptQueues[q].count < Self.acceptQueueCapacity / 2
            {
                armAccept(fd, s)
            }
        }
        raise(fd, s, Readiness.readable.rawValue)
    }

    private func sendDone(slot: Int32, fd: Int32, result: Int32) {
        let entry = slots + Int(slot)
        let s = state(fd)
        let live = s.pointee.generation == entry.pointee.generation && s.pointee.sendSlot == slot
        if live && result >= 0 && result < entry.pointee.length - entry.pointee.offset {
            // A partial send (MSG_WAITALL ends early only on a signal or error): the rest goes.
            entry.pointee.offset += result
            let base = slotMemory + Int(slot) * Self.slotSize + Int(entry.pointee.offset)
            if submitSend(fd, slot: slot, base, count: entry.pointee.length - entry.pointee.offset) { return }
        }
        freeSlots[freeSlotCount] = slot
        freeSlotCount += 1
        guard live else { return }
        s.pointee.sendSlot = -1
        if result < 0 {
            s.pointee.error = -result
            raise(fd, s, Readiness.error.rawValue | Readiness.hangup.rawValue)
            return
        }
        if s.pointee.shutdownPending {
            s.pointee.shutdownPending = false
            do { try Socket.shutdownWrite(fd) } catch {}
        }
        if s.pointee.wantWrite {
            s.pointee.wantWrite = false
            raise(fd, s, Readiness.writable.rawValue)
        }
    }

    // MARK: - Arming

    private func prepare(_ op: URingOp, _ body: () -> Bool) {
        #if DEBUG
            if recorded != nil {
                recorded!.append(op)
                return
            }
        #endif
        if !body() { preconditionFailure("io_uring: no submission entry free after submitting") }
    }

    private func armReceive(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        guard s.pointee.recv == .off, !s.pointee.polling, !s.pointee.eof, s.pointee.error == 0 else { return }
        s.pointee.recv = .armed
        s.pointee.stopping = .none
        let data = Self.data(.recv, s.pointee.generation, fd)
        prepare(URingOp(kind: .recv, fd: fd)) { ring.receiveMultishot(fd, data: data) }
    }

    private func stopReceive(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, then next: URingFD.Stop) {
        s.pointee.recv = .stopping
        s.pointee.stopping = next
        cancel(Self.data(.recv, s.pointee.generation, fd))
    }

    /// Re-arms a paused receive once its queue is read empty.
    @inline(__always)
    private func resumeReceive(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        if s.pointee.recv == .off && s.pointee.queued == 0 && s.pointee.role == .stream { armReceive(fd, s) }
    }

    private func startPolling(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        s.pointee.stopping = .none
        s.pointee.polling = true
        armPoll(fd, s)
        raise(fd, s, Readiness.readable.rawValue)
    }

    private func armPoll(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        guard !s.pointee.pollArmed else { return }
        s.pointee.pollArmed = true
        let data = Self.data(.poll, s.pointee.generation, fd)
        let mask = URing.pollIn | URing.pollReadHangup
        prepare(URingOp(kind: .poll, fd: fd)) { ring.poll(fd, mask: mask, multishot: true, data: data) }
    }

    private func armPollOut(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        s.pointee.wantWrite = true
        guard !s.pointee.pollOutArmed else { return }
        s.pointee.pollOutArmed = true
        let data = Self.data(.pollOut, s.pointee.generation, fd)
        prepare(URingOp(kind: .pollOut, fd: fd)) { ring.poll(fd, mask: URing.pollOut, multishot: false, data: data) }
    }

    private func armWake(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        let data = Self.data(.wake, s.pointee.generation, fd)
        prepare(URingOp(kind: .wake, fd: fd)) { ring.poll(fd, mask: URing.pollIn, multishot: true, data: data) }
    }

    private func armAccept(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        guard !s.pointee.acceptArmed, !s.pointee.acceptStopping else { return }
        s.pointee.acceptArmed = true
        let data = Self.data(.accept, s.pointee.generation, fd)
        prepare(URingOp(kind: .accept, fd: fd)) { ring.acceptMultishot(fd, data: data) }
    }

    private func cancel(_ target: UInt64) {
        let fd = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: target))
        prepare(URingOp(kind: .cancel, fd: fd)) { ring.cancel(target, data: URingOp.Kind.cancel.rawValue << 56) }
    }

    @inline(__always)
    private func submitSend(_ fd: Int32, slot: Int32, _ base: UnsafeRawPointer, count: Int32) -> Bool {
        let data = URingOp.Kind.send.rawValue << 56 | UInt64(UInt32(slot)) << 32 | UInt64(UInt32(bitPattern: fd))
        #if DEBUG
            if recorded != nil {
                recorded!.append(URingOp(kind: .send, fd: fd, count: count))
                return true
            }
        #endif
        return ring.send(fd, from: base, count: count, data: data)
    }

    @inline(__always)
    private func giveBack(_ id: Int32) {
        ring.recycle(id)
        buffersOut -= 1
    }

    // MARK: - Registration

    /// A connection's socket: receive armed (or the connect's completion awaited), and the
    /// first writable event an edge-triggered registration gives.
    func watch(_ fd: Int32, _ token: EventToken) -> Bool {
        let s = state(fd)
        if s.pointee.role != .stream {
            let queue = s.pointee.acceptQueue
            s.pointee.reset(generation: s.pointee.generation &+ 1)
            s.pointee.acceptQueue = queue
            s.pointee.role = .stream
        }
        s.pointee.token = token.raw
        s.pointee.watched = true
        s.pointee.idle = false
        if s.pointee.connecting { return true }
        if s.pointee.polling { armPoll(fd, s) } else { armReceive(fd, s) }
        raise(fd, s, registrationMask(s))
        return true
    }

    func rewatch(_ fd: Int32, _ token: EventToken, idle: Bool) -> Bool {
        let s = state(fd)
        s.pointee.token = token.raw
        s.pointee.watched = true
        s.pointee.idle = idle
        if s.pointee.connecting { return true }
        raise(fd, s, registrationMask(s))
        return true
    }

    private func registrationMask(_ s: UnsafeMutablePointer<URingFD>) -> UInt32 {
        var mask = Readiness.writable.rawValue
        if s.pointee.polling || s.pointee.queued > 0 || s.pointee.eof || s.pointee.error != 0 {
            mask |= Readiness.readable.rawValue
        }
        return mask
    }

    /// A listener (multishot accept into its queue) or, `wake`, the loop's eventfd.
    func watchInput(_ fd: Int32, _ token: EventToken, wake: Bool) {
        let s = state(fd)
        s.pointee.token = token.raw
        s.pointee.watched = true
        if wake {
            s.pointee.role = .wake
            armWake(fd, s)
            return
        }
        if s.pointee.role != .listener {
            s.pointee.role = .listener
            if s.pointee.acceptQueue < 0 {
                s.pointee.acceptQueue = Int32(acceptQueues.count)
                acceptQueues.append(AcceptQueue(capacity: Self.acceptQueueCapacity))
            }
            listenerFDs.append(fd)
        }
        armAccept(fd, s)
    }

    /// A listener stops raising events (connections queued stay for when it is watched again).
    func unwatch(_ fd: Int32) {
        let s = state(fd)
        s.pointee.watched = false
        if s.pointee.role == .listener && s.pointee.acceptArmed {
            s.pointee.acceptArmed = false
            s.pointee.acceptStopping = true
            cancel(Self.data(.accept, s.pointee.generation, fd))
        }
    }

    /// Cancels the listener's multishot accept and waits for its last completion, so that
    /// every connection the kernel accepted for it is in its queue (`takeQueued`) and the
    /// ring no longer holds the socket. On the loop thread.
    func stopAccepting(_ fd: Int32) {
        let s = state(fd)
        s.pointee.watched = false
        guard s.pointee.role == .listener, s.pointee.acceptArmed || s.pointee.acceptStopping else { return }
        if s.pointee.acceptArmed {
            s.pointee.acceptArmed = false
            s.pointee.acceptStopping = true
            cancel(Self.data(.accept, s.pointee.generation, fd))
        }
        #if DEBUG
            if recorded != nil { return }
        #endif
        var rounds = 0
        while s.pointee.acceptStopping && rounds < 50 {
            let n = ring.submitAndWait(timeoutMillis: 20)
            for i in 0..<n {
                let cqe = ring.completion(at: i)
                complete(data: cqe.data, result: cqe.res, flags: cqe.flags)
            }
            rounds += 1
        }
    }

    /// A connection the kernel accepted for a listener that no longer accepts; `.empty`
    /// when there is none. Arms nothing.
    func takeQueued(_ listener: Int32) -> AcceptResult {
        let s = state(listener)
        guard s.pointee.role == .listener else { return .empty }
        let q = Int(s.pointee.acceptQueue)
        while let fd = acceptQueues[q].pop() {
            if let peer = Socket.peer(fd) { return .accepted(AcceptedSocket(fd: fd, peer: peer)) }
            Syscall.close(fd)
        }
        return .empty
    }

    // MARK: - Calls

    func accept(_ listener: Int32) -> AcceptResult {
        let s = state(listener)
        guard s.pointee.role == .listener else { return .empty }
        let q = Int(s.pointee.acceptQueue)
        if let fd = acceptQueues[q].pop() {
            if s.pointee.watched && !s.pointee.acceptArmed { armAccept(listener, s) }
            guard let peer = Socket.peer(fd) else {
                // Reset before we looked: as accept(2) would have said ECONNABORTED.
                Syscall.close(fd)
                return .failed(.connectionAborted)
            }
            return .accepted(AcceptedSocket(fd: fd, peer: peer))
        }
        if s.pointee.error != 0 {
            let error = Errno(rawValue: s.pointee.error)
            s.pointee.error = 0
            return .failed(error)
        }
        if s.pointee.watched && !s.pointee.acceptArmed { armAccept(listener, s) }
        return .empty
    }

    func connect(to address: SystemAddress) -> ConnectResult {
        let fd: Int32
        do { fd = try Socket.open(family: address.family) } catch { return .failed(error) }
        let s = state(fd)
        let queue = s.pointee.acceptQueue
        s.pointee.reset(generation: s.pointee.generation &+ 1)
        s.pointee.acceptQueue = queue
        s.pointee.role = .stream
        s.pointee.connecting = true
        // SAFETY: slot `nextConnectAddress` holds 128 bytes (a sockaddr_storage) and is not
        // reused before this connect is submitted (see `connectAddresses`).
        let store = connectAddresses + nextConnectAddress * Self.addressSize
        nextConnectAddress = (nextConnectAddress + 1) % connectAddressCount
        let data = Self.data(.connect, s.pointee.generation, fd)
        prepare(URingOp(kind: .connect, fd: fd)) { ring.connect(fd, to: address, store: store, data: data) }
        return .inProgress(fd)
    }

    func connectError(_ fd: Int32) -> Errno? {
        let s = state(fd)
        if s.pointee.connecting { return .inProgress }
        return s.pointee.connectError == 0 ? nil : Errno(rawValue: s.pointee.connectError)
    }

    func shutdownWrite(_ fd: Int32) {
        let s = state(fd)
        if s.pointee.sendSlot >= 0 {
            s.pointee.shutdownPending = true
            return
        }
        do { try Socket.shutdownWrite(fd) } catch {}
    }

    /// Cancels the descriptor's operations, gives back its unread buffers (and, for a
    /// listener, resets its queued connections), then closes it.
    func close(_ fd: Int32, abort: Bool) {
        let s = state(fd)
        if s.pointee.role == .listener {
            // At once, as epoll's close is: the accept in flight holds the socket open until
            // it ends; what it took is reset, as a closed listener's backlog is.
            stopAccepting(fd)
            forget(fd, s)
            Syscall.close(fd)
            return
        }
        guard s.pointee.role != .none else {
            if abort { Socket.abort(fd) } else { Syscall.close(fd) }
            return
        }
        forget(fd, s)
        if abort { Socket.lingerZero(fd) }
        #if DEBUG
            if recorded != nil {
                // Tests: the number is free again at once, as after a submission.
                recorded!.append(URingOp(kind: .close, fd: fd))
                Syscall.close(fd)
                return
            }
        #endif
        // Through the ring, after what was prepared for it (a send not yet submitted would
        // otherwise find the descriptor closed, or another socket under its number).
        prepare(URingOp(kind: .close, fd: fd)) { ring.close(fd, data: URingOp.Kind.cancel.rawValue << 56) }
    }

    private func forget(_ fd: Int32, _ s: UnsafeMutablePointer<URingFD>) {
        let generation = s.pointee.generation
        if s.pointee.recv == .armed { cancel(Self.data(.recv, generation, fd)) }
        if s.pointee.pollArmed { cancel(Self.data(.poll, generation, fd)) }
        if s.pointee.pollOutArmed { cancel(Self.data(.pollOut, generation, fd)) }
        if s.pointee.connecting { cancel(Self.data(.connect, generation, fd)) }
        if s.pointee.role == .wake { cancel(Self.data(.wake, generation, fd)) }
        if s.pointee.role == .listener {
            let q = Int(s.pointee.acceptQueue)
            while let queued = acceptQueues[q].pop() { Socket.abort(queued) }
            if let i = listenerFDs.firstIndex(of: fd) { listenerFDs.remove(at: i) }
            // The queue's storage stays for the next listener on this descriptor number.
            s.pointee.reset(generation: generation &+ 1)
            s.pointee.acceptQueue = Int32(q)
            s.pointee.role = .none
            return
        }
        var id = s.pointee.head
        while id >= 0 {
            let next = bufferNext[Int(id)]
            giveBack(id)
            id = next
        }
        let queue = s.pointee.acceptQueue
        s.pointee.reset(generation: generation &+ 1)
        s.pointee.acceptQueue = queue
    }

    @inline(__always)
    func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int32) -> ReadResult {
        let s = state(fd)
        guard s.pointee.role == .stream else { return PlainIO.read(fd, into: buffer, count: count) }
        // What was received goes first, also on a socket that polls now.
        if s.pointee.queued > 0 {
            let n = take(fd, s, into: buffer, count: count)
            if n < count && s.pointee.polling && s.pointee.queued == 0 {
                // A short read tells the caller the socket is drained, but a polling socket
                // keeps what came after the queue in its own buffer, and the poll's edge for
                // it may be spent already: read on from the socket.
                return .bytes(n + readAfterQueue(fd, s, into: buffer + Int(n), count: count - n))
            }
            return .bytes(n)
        }
        if s.pointee.error != 0 { return .failed(Errno(rawValue: s.pointee.error)) }
        if s.pointee.eof { return .eof }
        if s.pointee.polling { return PlainIO.read(fd, into: buffer, count: count) }
        resumeReceive(fd, s)
        return .wouldBlock
    }

    /// A polling socket's bytes behind its emptied queue; an end of stream or error found
    /// there is kept for the next read and raised, since the bytes before it go first.
    private func readAfterQueue(
        _ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, into buffer: UnsafeMutableRawPointer, count: Int32
    ) -> Int32 {
        switch PlainIO.read(fd, into: buffer, count: count) {
        case .bytes(let n):
            return n
        case .wouldBlock:
            return 0
        case .eof:
            s.pointee.eof = true
            raise(fd, s, Readiness.readable.rawValue | Readiness.readHangup.rawValue)
            return 0
        case .failed(let error):
            s.pointee.error = error.rawValue
            raise(fd, s, Readiness.readable.rawValue | Readiness.error.rawValue | Readiness.hangup.rawValue)
            return 0
        }
    }

    /// Copies queued input out; gives emptied buffers back and re-arms a paused receive.
    @inline(__always)
    private func take(
        _ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, into buffer: UnsafeMutableRawPointer, count: Int32
    ) -> Int32 {
        var copied: Int32 = 0
        while copied < count, s.pointee.head >= 0 {
            let id = s.pointee.head
            let n = min(bufferLength[Int(id)] - s.pointee.headOffset, count - copied)
            (buffer + Int(copied)).copyMemory(from: ring.buffer(id) + Int(s.pointee.headOffset), byteCount: Int(n))
            copied += n
            consumed(s, n)
        }
        if s.pointee.queued == 0 { resumeReceive(fd, s) }
        return copied
    }

    /// `n` bytes of the oldest queued buffer were read: on to its next byte, or to the next
    /// buffer (this one given back).
    @inline(__always)
    private func consumed(_ s: UnsafeMutablePointer<URingFD>, _ n: Int32) {
        let id = s.pointee.head
        let offset = s.pointee.headOffset + n
        s.pointee.queued -= n
        guard offset == bufferLength[Int(id)] else {
            s.pointee.headOffset = offset
            return
        }
        s.pointee.head = bufferNext[Int(id)]
        if s.pointee.head < 0 { s.pointee.tail = -1 }
        s.pointee.headOffset = 0
        s.pointee.queuedBuffers -= 1
        giveBack(id)
    }

    @inline(__always)
    func send(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int32) -> WriteResult {
        let s = state(fd)
        guard s.pointee.role == .stream else { return PlainIO.send(fd, from: buffer, count: count) }
        if s.pointee.error != 0 { return .failed(Errno(rawValue: s.pointee.error)) }
        if s.pointee.sendSlot >= 0 || s.pointee.connecting {
            // As a connecting socket's send(2) would: EAGAIN, then the writable edge.
            s.pointee.wantWrite = true
            return .wouldBlock
        }
        if count <= Self.slotSize && freeSlotCount > 0 && !s.pointee.polling {
            freeSlotCount -= 1
            let slot = freeSlots[freeSlotCount]
            let base = slotMemory + Int(slot) * Self.slotSize
            base.copyMemory(from: buffer, byteCount: Int(count))
            slots[Int(slot)] = SendSlot(generation: s.pointee.generation, length: count, offset: 0)
            s.pointee.sendSlot = slot
            if !submitSend(fd, slot: slot, base, count: count) {
                preconditionFailure("io_uring: no submission entry free after submitting")
            }
            stats.sends += 1
            return .bytes(count)
        }
        let result = PlainIO.send(fd, from: buffer, count: count)
        // A short send means the socket's buffer is full, as under epoll: its edge comes when
        // it has room.
        switch result {
        case .wouldBlock: armPollOut(fd, s)
        case .bytes(let n) where n < count: armPollOut(fd, s)
        default: break
        }
        return result
    }

    func splice(from source: Int32, to destination: Int32, count: Int32) -> ReadResult {
        let from = state(source)
        if from.pointee.role == .stream && (!from.pointee.polling || from.pointee.queued > 0) {
            #if DEBUG
                // A refused splice is refused before any byte moves, as the system call is.
                if FaultInjection.spliceErrno != 0 { return .failed(Errno(rawValue: FaultInjection.spliceErrno)) }
            #endif
            // What was received already goes first, into the pipe (also what arrived while
            // the receive was being cancelled).
            if from.pointee.queued > 0 { return drain(source, from, into: destination, count: count) }
            if from.pointee.error != 0 { return .failed(Errno(rawValue: from.pointee.error)) }
            if from.pointee.eof { return .eof }
            if from.pointee.recv != .off {
                if from.pointee.recv == .armed { stopReceive(source, from, then: .poll) }
                from.pointee.stopping = .poll
                return .wouldBlock
            }
            from.pointee.polling = true
            armPoll(source, from)
        }
        let to = state(destination)
        if to.pointee.role == .stream && (to.pointee.sendSlot >= 0 || to.pointee.connecting) {
            to.pointee.wantWrite = true
            return .wouldBlock
        }
        let result = PlainIO.splice(from: source, to: destination, count: count)
        if to.pointee.role == .stream {
            switch result {
            case .wouldBlock: armPollOut(destination, to)
            case .bytes(let n) where n < count: armPollOut(destination, to)
            default: break
            }
        }
        return result
    }

    /// Moves queued input into a pipe.
    private func drain(
        _ fd: Int32, _ s: UnsafeMutablePointer<URingFD>, into pipe: Int32, count: Int32
    ) -> ReadResult {
        var moved: Int32 = 0
        while moved < count, s.pointee.head >= 0 {
            let id = s.pointee.head
            let n = min(bufferLength[Int(id)] - s.pointee.headOffset, count - moved)
            let written = Int32(IO.writePipe(pipe, from: ring.buffer(id) + Int(s.pointee.headOffset), count: Int(n)))
            if written <= 0 { break }
            moved += written
            consumed(s, written)
            if written < n { break }
        }
        return moved > 0 ? .bytes(moved) : .wouldBlock
    }
}

/// What the driver knows of one descriptor (indexed by descriptor number).
struct URingFD: BitwiseCopyable {
    enum Role: UInt8 { case none, stream, listener, wake }
    enum Receive: UInt8 { case off, armed, stopping }
    enum Stop: UInt8 { case none, pause, poll }

    var generation: UInt32 = 0
    var role: Role = .none
    var recv: Receive = .off
    /// What follows the receive's cancellation: nothing until read empty, or polling.
    var stopping: Stop = .none
    var polling = false
    var pollArmed = false
    var pollOutArmed = false
    var connecting = false
    var watched = false
    /// A pooled upstream: only input and hang-up are raised.
    var idle = false
    var eof = false
    /// A write was refused: raise writable when it may go.
    var wantWrite = false
    var shutdownPending = false
    var acceptArmed = false
    var acceptStopping = false
    var error: Int32 = 0
    var connectError: Int32 = 0
    var sendSlot: Int32 = -1
    /// Received buffers not yet read, oldest first (linked through `bufferNext`).
    var head: Int32 = -1
    var tail: Int32 = -1
    var headOffset: Int32 = 0
    var queued: Int32 = 0
    var queuedBuffers: Int32 = 0
    var eventIndex: Int32 = 0
    var eventStamp: UInt32 = 0
    var acceptQueue: Int32 = -1
    var token: UInt64 = 0

    mutating func reset(generation: UInt32) {
        self = URingFD()
        self.generation = generation
    }
}

struct URingEvent: BitwiseCopyable {
    var token: UInt64
    var mask: UInt32
}

struct SendSlot: BitwiseCopyable {
    var generation: UInt32 = 0
    var length: Int32 = 0
    var offset: Int32 = 0
}

/// An operation the driver prepared (recorded by tests).
struct URingOp: Equatable {
    enum Kind: UInt64 { case recv = 1, accept, send, connect, poll, pollOut, wake, cancel, close }
    var kind: Kind
    var fd: Int32
    var count: Int32 = 0
}

struct URingStats {
    var receives = 0
    var sends = 0
    var starved = 0
}

/// Accepted descriptors waiting for `accept`, in arrival order.
struct AcceptQueue {
    let storage: UnsafeMutablePointer<Int32>
    let capacity: Int32
    var head: Int32 = 0
    var count: Int32 = 0

    init(capacity: Int32) {
        self.capacity = capacity
        storage = .allocate(capacity: Int(capacity))
    }

    mutating func push(_ fd: Int32) {
        storage[Int((head + count) % capacity)] = fd
        count += 1
    }

    mutating func pop() -> Int32? {
        guard count > 0 else { return nil }
        let fd = storage[Int(head)]
        head = (head + 1) % capacity
        count -= 1
        return fd
    }
}
