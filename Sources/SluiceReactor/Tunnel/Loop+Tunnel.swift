import SluiceSystem

/// Moving bytes for established tunnels: the steps `FlowState` asks for, through the driver.
extension Loop {
    /// Runs both directions of a tunnel until each waits for an event, then closes the
    /// connection when both are done or one failed.
    /// Each direction makes at most `Loop.stepBudget` reads and writes per wake; one that
    /// had more to do is resumed after the batch (`resumeLater`), so one fast pair cannot
    /// keep the loop from its other connections.
    @inline(__always)
    func pump(_ slot: Int32) {
        let c = table.pointer(slot)
        let up = pumpFlow(c, toUp: true)
        if case .failed(let reason) = up {
            counters.resets += 1
            close(slot, abort: true, reason: reason)
            return
        }
        let down = pumpFlow(c, toUp: false)
        if case .failed(let reason) = down {
            counters.resets += 1
            close(slot, abort: true, reason: reason)
        } else if c.pointee.toUp.isDone && c.pointee.toDown.isDone {
            close(slot, abort: false)
        } else if up == .cutShort || down == .cutShort {
            resumeLater(slot)
        }
    }

    enum FlowPump: Equatable {
        /// The direction waits for an event (or is done).
        case waiting
        /// It used its step budget with work left.
        case cutShort
        /// The connection must be aborted (reset, broken pipe, out of descriptors), for this
        /// reason.
        case failed(CloseReason)
    }

    /// One direction, at most `Loop.stepBudget` steps.
    @inline(__always)
    func pumpFlow(_ c: UnsafeMutablePointer<Connection>, toUp: Bool) -> FlowPump {
        let src = toUp ? c.pointee.downFD : c.pointee.upFD
        let dst = toUp ? c.pointee.upFD : c.pointee.downFD
        for _ in 0..<Self.stepBudget {
            if toUp ? c.pointee.toUp.spliceReady : c.pointee.toDown.spliceReady { moveToPipe(c, toUp: toUp) }
            let step = toUp ? c.pointee.toUp.next : c.pointee.toDown.next
            switch step {
            case .read(let room):
                let copy = toUp ? c.pointee.toUp.copyMode : c.pointee.toDown.copyMode
                let outcome: FlowState.Outcome
                do {
                    outcome =
                        copy
                        ? try copyIn(c, toUp: toUp, from: src, room: room)
                        : try spliceIn(c, toUp: toUp, from: src, room: room)
                } catch let error {
                    if error == .invalid || error == .notSupported, !copy {
                        // This pair cannot splice: copy for the rest of the connection.
                        fallBackToCopy(c, toUp: toUp)
                        continue
                    }
                    // The source failed: the client's side when this direction is upward.
                    return .failed(Self.failure(error, client: toUp))
                }
                if toUp {
                    c.pointee.toUp.didRead(outcome, requested: room)
                } else {
                    c.pointee.toDown.didRead(outcome, requested: room)
                }
                switch outcome {
                case .bytes(let n):
                    c.pointee.life.activity(now: now)
                    if toUp {
                        countClientIn(c, n)
                    } else {
                        countUpstreamIn(c, n)
                        if c.pointee.stats.firstUpstreamAfter < 0 {
                            c.pointee.stats.firstUpstreamAfter = ConnectionStats.after(
                                c.pointee.stats.acceptedMicros, nowMicros)
                        }
                    }
                case .endOfStream:
                    if c.pointee.stats.firstEnd == .none { c.pointee.stats.firstEnd = toUp ? .downstream : .upstream }
                case .wouldBlock:
                    break
                }
            case .write(let count):
                let copy = toUp ? c.pointee.toUp.copyMode : c.pointee.toDown.copyMode
                let outcome: FlowState.Outcome
                do {
                    outcome =
                        copy
                        ? try copyOut(c, toUp: toUp, to: dst, count: count)
                        : try spliceOut(c, toUp: toUp, to: dst, count: count)
                } catch {
                    // The destination failed: the upstream's side when this direction is upward.
                    return .failed(Self.failure(error, client: !toUp))
                }
                if toUp { c.pointee.toUp.didWrite(outcome) } else { c.pointee.toDown.didWrite(outcome) }
                if case .bytes(let n) = outcome {
                    c.pointee.life.activity(now: now)
                    if toUp {
                        counters.bytesToUpstream &+= Int(n)
                        countUpstreamOut(c, n, spliced: !copy)
                    } else {
                        counters.bytesToDownstream &+= Int(n)
                        countClientOut(c, n, spliced: !copy)
                    }
                }
            case .shutdown:
                // The peer may already be gone; the other direction will report it.
                driver.shutdownWrite(dst)
                if toUp { c.pointee.toUp.didShutdown() } else { c.pointee.toDown.didShutdown() }
            case .wait, .done:
                releaseIfEmpty(c, toUp: toUp)
                return .waiting
            }
        }
        return .cutShort
    }

    @inline(__always)
    func spliceIn(_ c: UnsafeMutablePointer<Connection>, toUp: Bool, from src: Int32, room: Int32) throws(Errno)
        -> FlowState.Outcome
    {
        var pipe = toUp ? c.pointee.toUpPipe : c.pointee.toDownPipe
        if pipe.isNone {
            pipe = try pipes.acquire()
            // Pooled pipes may differ in size (a refused F_SETPIPE_SZ): the flow's capacity is
            // this pipe's, or a short splice would be taken for a drained socket.
            let capacity = Int32(pipes.grantedSize)
            if toUp {
                c.pointee.toUpPipe = pipe
                c.pointee.toUp.capacity = capacity
            } else {
                c.pointee.toDownPipe = pipe
                c.pointee.toDown.capacity = capacity
            }
        }
        return try Self.flowOutcome(driver.splice(from: src, to: pipe.writeFD, count: room))
    }

    @inline(__always)
    func spliceOut(_ c: UnsafeMutablePointer<Connection>, toUp: Bool, to dst: Int32, count: Int32) throws(Errno)
        -> FlowState.Outcome
    {
        let pipe = toUp ? c.pointee.toUpPipe : c.pointee.toDownPipe
        let result = driver.splice(from: pipe.readFD, to: dst, count: count)
        // A write of nothing is no end of stream.
        return result == .eof ? .bytes(0) : try Self.flowOutcome(result)
    }

    @inline(__always)
    func copyIn(_ c: UnsafeMutablePointer<Connection>, toUp: Bool, from src: Int32, room: Int32) throws(Errno)
        -> FlowState.Outcome
    {
        var buffer = toUp ? c.pointee.toUpBuffer : c.pointee.toDownBuffer
        if buffer < 0 {
            buffer = buffers.acquire()
            if toUp { c.pointee.toUpBuffer = buffer } else { c.pointee.toDownBuffer = buffer }
        }
        // Copy mode reads only into an empty buffer, so bytes start at 0.
        return try Self.flowOutcome(driver.read(src, into: buffers.base(buffer), count: room))
    }

    @inline(__always)
    func copyOut(_ c: UnsafeMutablePointer<Connection>, toUp: Bool, to dst: Int32, count: Int32) throws(Errno)
        -> FlowState.Outcome
    {
        let buffer = toUp ? c.pointee.toUpBuffer : c.pointee.toDownBuffer
        let offset = toUp ? c.pointee.toUp.offset : c.pointee.toDown.offset
        switch driver.send(dst, from: buffers.base(buffer) + Int(offset), count: count) {
        case .wouldBlock: return .wouldBlock
        case .bytes(let n): return .bytes(n)
        case .failed(let error): throw error
        }
    }

    /// A driver outcome as the flow sees it; a failure is thrown for `pumpFlow` to judge.
    @inline(__always)
    static func flowOutcome(_ result: ReadResult) throws(Errno) -> FlowState.Outcome {
        switch result {
        case .wouldBlock: return .wouldBlock
        case .eof: return .endOfStream
        case .bytes(let n): return .bytes(n)
        case .failed(let error): throw error
        }
    }

    /// A bulk flow with an empty buffer takes a pipe for the rest of its life; the pipe is
    /// acquired first, so the flow's capacity is the size the kernel granted to it.
    func moveToPipe(_ c: UnsafeMutablePointer<Connection>, toUp: Bool) {
        releaseResources(c, toUp: toUp)
        guard let pipe = try? pipes.acquire() else {
            if toUp { c.pointee.toUp.keepCopying() } else { c.pointee.toDown.keepCopying() }
            return
        }
        let capacity = Int32(pipes.grantedSize)
        if toUp {
            c.pointee.toUpPipe = pipe
            _ = c.pointee.toUp.takeSpliceSwitch(pipeCapacity: capacity)
        } else {
            c.pointee.toDownPipe = pipe
            _ = c.pointee.toDown.takeSpliceSwitch(pipeCapacity: capacity)
        }
    }

    /// Splice was refused for this connection: switch both directions to copying. Only a
    /// read can be refused before any byte moved, so the pipe is empty here.
    func fallBackToCopy(_ c: UnsafeMutablePointer<Connection>, toUp: Bool) {
        counters.spliceFallbacks += 1
        switchToCopy(c, toUp: true)
        switchToCopy(c, toUp: false)
    }

    private func switchToCopy(_ c: UnsafeMutablePointer<Connection>, toUp: Bool) {
        if toUp {
            // A flow still copying stays so for good: it will not try the pipe later.
            c.pointee.toUp.spliceWhenFull = false
            c.pointee.toUp.spliceDue = false
            guard !c.pointee.toUp.copyMode, c.pointee.toUp.pending == 0 else { return }
            c.pointee.toUp.copyMode = true
            c.pointee.toUp.capacity = Int32(buffers.bufferSize)
        } else {
            // A flow still copying stays so for good: it will not try the pipe later.
            c.pointee.toDown.spliceWhenFull = false
            c.pointee.toDown.spliceDue = false
            guard !c.pointee.toDown.copyMode, c.pointee.toDown.pending == 0 else { return }
            c.pointee.toDown.copyMode = true
            c.pointee.toDown.capacity = Int32(buffers.bufferSize)
        }
        releaseResources(c, toUp: toUp)
    }

    /// Gives back a direction's pipe or buffer once it holds no bytes.
    @inline(__always)
    func releaseIfEmpty(_ c: UnsafeMutablePointer<Connection>, toUp: Bool) {
        let pending = toUp ? c.pointee.toUp.pending : c.pointee.toDown.pending
        if pending == 0 { releaseResources(c, toUp: toUp) }
    }

    /// Gives back a direction's pipe and buffer, empty or not (a non-empty pipe is closed).
    @inline(__always)
    func releaseResources(_ c: UnsafeMutablePointer<Connection>, toUp: Bool) {
        if toUp {
            if !c.pointee.toUpPipe.isNone {
                pipes.release(c.pointee.toUpPipe, empty: c.pointee.toUp.pending == 0)
                c.pointee.toUpPipe = .none
            }
            if c.pointee.toUpBuffer >= 0 {
                buffers.release(c.pointee.toUpBuffer)
                c.pointee.toUpBuffer = -1
            }
        } else {
            if !c.pointee.toDownPipe.isNone {
                pipes.release(c.pointee.toDownPipe, empty: c.pointee.toDown.pending == 0)
                c.pointee.toDownPipe = .none
            }
            if c.pointee.toDownBuffer >= 0 {
                buffers.release(c.pointee.toDownBuffer)
                c.pointee.toDownBuffer = -1
            }
        }
    }
}
