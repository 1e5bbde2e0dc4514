import SluiceSystem
import SluiceWire

/// Large Content-Length bodies, moved kernel-side: socket → pipe → socket, as the TCP tunnel
/// does, bounded by the body's remaining length so that not one byte of the next message is
/// taken. The direction's `FlowState` holds the pipe's byte count and its "pipe full"
/// state; its pipe comes from the loop's pool and goes back when the body is done.
extension Loop {
    /// Bodies at least this large (and with nothing buffered) are spliced.
    static let spliceThreshold: Int64 = 64 * 1024

    @inline(__always)
    func shouldSplice(_ e: UnsafeMutablePointer<HTTPExchange>, toUpstream: Bool) -> Bool {
        if toUpstream {
            if e.pointee.spliceRequest { return true }
            guard snapshot.tuning.splice, !e.pointee.noSplice, e.pointee.up2.session < 0, e.pointee.req.isEmpty,
                case .length = e.pointee.reqBody.kind, e.pointee.reqBody.remaining >= Self.spliceThreshold
            else { return false }
            e.pointee.spliceRequest = true
        } else {
            if e.pointee.spliceResponse { return true }
            guard snapshot.tuning.splice, !e.pointee.noSplice, e.pointee.up2.session < 0, e.pointee.resp.isEmpty,
                case .length = e.pointee.respBody.kind, e.pointee.respBody.remaining >= Self.spliceThreshold
            else { return false }
            e.pointee.spliceResponse = true
        }
        return true
    }

    /// One round of splicing a body: fill the pipe from the source (at most what remains of
    /// the body), drain it into the destination. The body is done when nothing remains to
    /// read and the pipe is empty.
    func spliceBody(_ slot: Int32, toUpstream: Bool) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let src = toUpstream ? c.pointee.downFD : c.pointee.upFD
        let dst = toUpstream ? c.pointee.upFD : c.pointee.downFD
        var flow = toUpstream ? c.pointee.toUp : c.pointee.toDown
        var pipe = toUpstream ? c.pointee.toUpPipe : c.pointee.toDownPipe
        var remaining = toUpstream ? e.pointee.reqBody.remaining : e.pointee.respBody.remaining
        var progressed = false
        var failed = false
        /// Why the pair must be closed when `failed` or truncated.
        var reason = CloseReason.badResponse
        var truncated = false
        /// Writes the local copies back; not after a close, which frees the slot.
        func store() {
            if toUpstream {
                c.pointee.toUp = flow
                c.pointee.toUpPipe = pipe
                e.pointee.reqBody.received += e.pointee.reqBody.remaining - remaining
                e.pointee.reqBody.remaining = remaining
            } else {
                c.pointee.toDown = flow
                c.pointee.toDownPipe = pipe
                e.pointee.respBody.remaining = remaining
            }
        }
        if pipe.isNone {
            do {
                pipe = try pipes.acquire()
            } catch {
                e.pointee.noSplice = true
                if toUpstream { e.pointee.spliceRequest = false } else { e.pointee.spliceResponse = false }
                store()
                return .again
            }
            flow.capacity = Int32(pipes.grantedSize)
            flow.pending = 0
            flow.waitRoom = false
        }
        // Fill.
        if remaining > 0 && flow.srcReadable && !flow.waitRoom && flow.pending < flow.capacity {
            let room = Int(min(remaining, Int64(flow.capacity - flow.pending)))
            switch driver.splice(from: src, to: pipe.writeFD, count: Int32(room)) {
            case .eof:
                truncated = true
                reason = toUpstream ? .clientClosed : .badResponse
            case .bytes(let n):
                remaining -= Int64(n)
                flow.pending += n
                if toUpstream { countClientIn(c, n) } else { countUpstreamIn(c, n) }
                c.pointee.life.activity(now: now)
                progressed = true
            case .wouldBlock:
                if flow.pending > 0 { flow.waitRoom = true } else { flow.srcReadable = false }
            case .failed(let error):
                if (error == .invalid || error == .notSupported) && flow.pending == 0 && !progressed {
                    // This pair cannot splice: copy the rest of the body.
                    counters.spliceFallbacks += 1
                    pipes.release(pipe, empty: true)
                    pipe = .none
                    e.pointee.noSplice = true
                    if toUpstream { e.pointee.spliceRequest = false } else { e.pointee.spliceResponse = false }
                    store()
                    return .again
                }
                failed = true
                reason = Self.failure(error, client: toUpstream)
            }
        }
        // Drain.
        if !failed && flow.pending > 0 && flow.dstWritable {
            switch driver.splice(from: pipe.readFD, to: dst, count: flow.pending) {
            case .bytes(let n):
                flow.pending -= n
                if flow.pending == 0 { flow.waitRoom = false }
                if toUpstream { counters.bytesToUpstream &+= Int(n) } else { counters.bytesToDownstream &+= Int(n) }
                if toUpstream {
                    countUpstreamOut(c, n, spliced: true)
                } else {
                    countClientOut(c, n, spliced: true)
                }
                progressed = true
            case .eof:
                break
            case .wouldBlock:
                flow.dstWritable = false
            case .failed(let error):
                failed = true
                reason = Self.failure(error, client: !toUpstream)
            }
        }
        if failed || (truncated && flow.pending == 0) {
            // A side reset, or the source ended before the body did: the message cannot be
            // completed. The client sees a reset, never a hang.
            counters.resets += 1
            if reason.side == .upstream { countBackend(c, .responseErrors) }
            flow.pending = 0
            pipes.release(pipe, empty: false)
            pipe = .none
            store()
            closeHTTP(slot, abort: true, reason: reason)
            return .closed
        }
        if remaining == 0 && flow.pending == 0 {
            pipes.release(pipe, empty: true)
            pipe = .none
            store()
            if toUpstream {
                e.pointee.reqBody.done = true
                e.pointee.spliceRequest = false
            } else {
                e.pointee.respBody.done = true
                e.pointee.spliceResponse = false
            }
            return .again
        }
        store()
        return progressed ? .again : .wait
    }
}
