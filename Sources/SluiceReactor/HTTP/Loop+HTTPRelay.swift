import SluiceSystem

/// After a 101 for a client whose TLS is terminated here: the byte tunnel cannot carry a TLS
/// session, so bytes are relayed both ways through the exchange's queues.
extension Loop {
    /// After a 101 for a TLS client: relays bytes both ways through the exchange's queues,
    /// half-closes each way at its end, closes when both ended.
    func relayStep(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        var progressed = false
        // Client → upstream.
        if e.pointee.upq.isEmpty && c.pointee.toUp.srcReadable && !e.pointee.machine.relayClientDone {
            if e.pointee.upq.buffer < 0 { e.pointee.upq.buffer = httpBuffers.acquire() }
            switch receive(
                c, from: .downstream, into: httpBuffers.base(e.pointee.upq.buffer), count: Self.httpBufferSize)
            {
            case .bytes(let n):
                e.pointee.upq.start = 0
                e.pointee.upq.end = n
                progressed = true
            case .wouldBlock:
                break
            case .eof:
                guard case .shutdownUpstream = report(slot, .clientEnded(reset: false, idle: false)) else {
                    unexpected(.clientEnded(reset: false, idle: false))
                }
                if c.pointee.stats.firstEnd == .none { c.pointee.stats.firstEnd = .downstream }
                shutdownWrite(c, .upstream)
                progressed = true
            case .failed(let error):
                return clientEnded(slot, reset: true, idle: false, reason: Self.failure(error, client: true))
            }
        }
        if !e.pointee.upq.isEmpty && c.pointee.toUp.dstWritable {
            switch send(c, &e.pointee.upq, to: .upstream) {
            case .bytes(let n):
                counters.bytesToUpstream += Int(n)
                progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: false))
                return .closed
            }
        }
        // Upstream → client.
        if e.pointee.downq.isEmpty && c.pointee.toDown.srcReadable && !e.pointee.machine.relayUpstreamDone {
            if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
            switch receive(
                c, from: .upstream, into: httpBuffers.base(e.pointee.downq.buffer), count: Self.httpBufferSize)
            {
            case .bytes(let n):
                e.pointee.downq.start = 0
                e.pointee.downq.end = n
                progressed = true
            case .wouldBlock:
                break
            case .eof:
                apply(slot, .upstreamEnded(reset: false))
                if c.pointee.stats.firstEnd == .none { c.pointee.stats.firstEnd = .upstream }
                progressed = true
            case .failed(let error):
                guard case .abort = report(slot, .upstreamEnded(reset: true)) else {
                    unexpected(.upstreamEnded(reset: true))
                }
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: false))
                return .closed
            }
        }
        if !e.pointee.downq.isEmpty && c.pointee.toDown.dstWritable {
            switch send(c, &e.pointee.downq, to: .downstream) {
            case .bytes(let n):
                counters.bytesToDownstream += Int(n)
                progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        var action = report(
            slot,
            .relayRound(
                toClientFlushed: e.pointee.downq.isEmpty && !outputPending(c), toUpstreamFlushed: e.pointee.upq.isEmpty)
        )
        if case .notifyClient = action {
            shutdownWrite(c, .downstream)
            action = report(
                slot,
                .relayRound(
                    toClientFlushed: e.pointee.downq.isEmpty && !outputPending(c),
                    toUpstreamFlushed: e.pointee.upq.isEmpty))
        }
        if case .finishRelay = action {
            closeHTTP(slot, abort: false)
            return .closed
        }
        releaseIfEmpty(&e.pointee.upq)
        releaseIfEmpty(&e.pointee.downq)
        if progressed {
            c.pointee.life.activity(now: now)
            return .again
        }
        return .wait
    }
}
