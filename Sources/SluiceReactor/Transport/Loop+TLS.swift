import SluiceRouting
import SluiceSystem
import SluiceWire

/// TLS termination: once the ClientHello names a host this listener decrypts (`.terminate`
/// from the SNI table), the connection gets an OpenSSL session fed with the bytes already
/// peeked, completes the handshake within the `tlsHello` deadline, and then runs the http
/// listener's exchange with the listener's table of terminated routes. Every client read and
/// write of that exchange goes through the session (`readClient`, `flushClient`); bodies are
/// copied, never spliced. A 101 upgrade is relayed through the exchange's queues.
///
/// State: `Connection.tls` holds the session from `startTermination` until `close`;
/// `Connection.peeking` stays set during the handshake (the peek timer bounds it), then the
/// connection becomes `isHTTP` with `HTTPExchange.secure`.
extension Loop {
    /// Starts the handshake for a connection whose peeked ClientHello selected termination.
    func startTermination(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        // The listener's context in the connection's own snapshot: a reload meanwhile does not
        // change which certificates this handshake uses.
        let routedWith = routed(c)
        guard e.pointee.tlsContext >= 0, e.pointee.terminatedRoutes >= 0,
            Int(e.pointee.tlsContext) < routedWith.tlsContexts.count
        else {
            counters.tlsNoRoute += 1
            countFrontend(c, .noRoute)
            close(slot, abort: false, reason: .noRoute)
            return
        }
        let context = routedWith.tlsContexts[Int(e.pointee.tlsContext)]
        var prefix = UnsafeRawBufferPointer(start: nil, count: 0)
        if e.pointee.req.buffer >= 0 {
            prefix = UnsafeRawBufferPointer(
                start: base(of: e.pointee.req) + Int(e.pointee.req.start),
                count: Int(e.pointee.req.count))
        }
        guard let session = TLSSession.make(context: context.pointer, fd: c.pointee.downFD, prefix: prefix) else {
            counters.tlsFailed += 1
            countFrontend(c, .tlsFailures)
            close(slot, abort: true, reason: .tlsFailed)
            return
        }
        c.pointee.tls = session
        release(&e.pointee.req)
        handshakeStep(slot)
    }

    /// Advances the handshake; on completion the connection becomes an HTTP client.
    func handshakeStep(_ slot: Int32) {
        let c = table.pointer(slot)
        guard let session = c.pointee.tls else { return }
        switch TLSSession.handshake(session) {
        case .done:
            counters.tlsHandshakes += 1
            countFrontend(c, .tlsHandshakes)
            if TLSSession.resumed(session) {
                counters.tlsResumed += 1
                countFrontend(c, .tlsResumptions)
            }
            if let row = frontendRow(c) {
                metrics.tlsHandshakeDuration.record(row, micros: nowMicros - c.pointee.stats.acceptedMicros)
            }
            noteTLSVersion(slot, UInt16(truncatingIfNeeded: TLSSession.version(session)))
            startSecureHTTP(slot)
        case .wantRead:
            c.pointee.toUp.srcReadable = false
        case .wantWrite:
            c.pointee.toDown.dstWritable = false
        case .eof, .failed:
            counters.tlsFailed += 1
            countFrontend(c, .tlsFailures)
            if logger.logLevel <= .debug {
                logger.debug("TLS handshake failed: \(TLSSession.lastError())")
            } else {
                _ = TLSSession.takeFailure()
            }
            close(slot, abort: false, reason: .tlsFailed)
        }
    }

    func startSecureHTTP(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        guard e.pointee.terminatedRoutes >= 0 else {
            close(slot, abort: false, reason: .noRoute)
            return
        }
        timers.cancel(slot)
        // Records count a terminated client's requests in plaintext, from here on.
        c.pointee.stats.recordIn = 0
        c.pointee.stats.recordOut = 0
        c.pointee.peeking = false
        c.pointee.isHTTP = true
        e.pointee.routes = e.pointee.terminatedRoutes
        e.pointee.secure = true
        e.pointee.noSplice = true
        e.pointee.phase = .readingHead
        // The handshake may have read application data already: try a read.
        c.pointee.toUp.srcReadable = true
        c.pointee.toDown.dstWritable = true
        c.pointee.life.activity(now: now)
        armIdle(slot)
        httpPump(slot)
    }

    /// A client between requests: the client-idle timer, after a short wait first for a TLS
    /// client, whose OpenSSL record buffers (about 34 KiB) are freed if it stays idle (not
    /// after every request: they would be allocated again at once under load).
    func armIdle(_ slot: Int32) {
        if table.pointer(slot).pointee.tls != nil {
            armHTTPTimer(slot, .tlsIdle, at: now + min(Self.tlsIdleMillis, snapshot.timeouts.clientMillis))
        } else {
            armHTTPTimer(slot, .clientIdle, at: now + snapshot.timeouts.clientMillis)
        }
    }

    static let tlsIdleMillis: Int64 = 1_000

    // MARK: - Client I/O (plain or through the session)

    /// Reads the client's bytes once: from the socket, or decrypted from the TLS session. A
    /// session keeps `readable` set while OpenSSL may hold records already read, and clears
    /// it when the socket came up short with nothing buffered (as a short plain read does).
    @inline(__always)
    func readClient(_ c: UnsafeMutablePointer<Connection>, _ dst: UnsafeMutableRawPointer, _ count: Int32) -> ReadResult
    {
        guard let session = c.pointee.tls else {
            let result = readSome(c.pointee.downFD, dst, count, &c.pointee.toUp.srcReadable, c.pointee.toUp.srcHangup)
            if case .bytes(let n) = result { countClientIn(c, n) }
            return result
        }
        switch TLSSession.read(session, into: dst, count: Int(count)) {
        case .done(let n):
            if !c.pointee.toUp.srcHangup && TLSSession.readDrained(session) { c.pointee.toUp.srcReadable = false }
            countClientIn(c, Int32(n))
            return .bytes(Int32(n))
        case .wantRead:
            c.pointee.toUp.srcReadable = false
            return .wouldBlock
        case .wantWrite:
            c.pointee.toDown.dstWritable = false
            return .wouldBlock
        case .eof:
            c.pointee.toUp.srcReadable = false
            return .eof
        case .failed:
            return .failed(TLSSession.takeFailure())
        }
    }

    /// Writes a queue's bytes to the client once: to the socket, or encrypted.
    @inline(__always)
    func flushClient(_ c: UnsafeMutablePointer<Connection>, _ queue: inout HTTPExchange.Queue) -> WriteResult {
        guard let session = c.pointee.tls else {
            let result = flush(&queue, to: c.pointee.downFD, writable: &c.pointee.toDown.dstWritable)
            if case .bytes(let n) = result { countClientOut(c, n) }
            return result
        }
        let src = httpBuffers.base(queue.buffer) + Int(queue.start)
        switch TLSSession.write(session, from: src, count: Int(queue.count)) {
        case .done(let n):
            advance(&queue, by: Int32(n))
            countClientOut(c, Int32(n))
            return .bytes(Int32(n))
        case .wantWrite:
            c.pointee.toDown.dstWritable = false
            return .wouldBlock
        case .wantRead:
            c.pointee.toUp.srcReadable = false
            return .wouldBlock
        case .eof:
            _ = TLSSession.takeFailure()
            return .failed(.brokenPipe)
        case .failed:
            return .failed(TLSSession.takeFailure())
        }
    }

    /// Ends the client's write side: close_notify first when the client speaks TLS.
    func shutdownClientWrite(_ c: UnsafeMutablePointer<Connection>) {
        if let session = c.pointee.tls { TLSSession.shutdown(session) }
        do { try Socket.shutdownWrite(c.pointee.downFD) } catch {}
    }

    /// Frees the session (after close_notify unless aborting), before the socket closes.
    @inline(__always)
    func endTLS(_ c: UnsafeMutablePointer<Connection>, abort: Bool) {
        guard let session = c.pointee.tls else { return }
        if !abort { TLSSession.shutdown(session) }
        TLSSession.free(session)
        c.pointee.tls = nil
    }

    // MARK: - Upgraded TLS clients

    /// After a 101 for a TLS client: relays bytes both ways through the exchange's queues,
    /// half-closes each way at its end, closes when both ended.
    func relayStep(_ slot: Int32) -> HTTPStep {
        let c = table.pointer(slot)
        let e = exchange(slot)
        var progressed = false
        // Client → upstream.
        if e.pointee.upq.isEmpty && c.pointee.toUp.srcReadable && !e.pointee.relayClientDone {
            if e.pointee.upq.buffer < 0 { e.pointee.upq.buffer = httpBuffers.acquire() }
            switch readClient(c, httpBuffers.base(e.pointee.upq.buffer), Self.httpBufferSize) {
            case .bytes(let n):
                e.pointee.upq.start = 0
                e.pointee.upq.end = n
                progressed = true
            case .wouldBlock:
                break
            case .eof:
                e.pointee.relayClientDone = true
                if c.pointee.stats.firstEnd == .none { c.pointee.stats.firstEnd = .downstream }
                do { try Socket.shutdownWrite(c.pointee.upFD) } catch {}
                progressed = true
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        if !e.pointee.upq.isEmpty && c.pointee.toUp.dstWritable {
            switch flush(&e.pointee.upq, to: c.pointee.upFD, writable: &c.pointee.toUp.dstWritable) {
            case .bytes(let n):
                counters.bytesToUpstream += Int(n)
                countUpstreamOut(c, n)
                progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: false))
                return .closed
            }
        }
        // Upstream → client.
        if e.pointee.downq.isEmpty && c.pointee.toDown.srcReadable && !e.pointee.relayUpstreamDone {
            if e.pointee.downq.buffer < 0 { e.pointee.downq.buffer = httpBuffers.acquire() }
            switch readSome(
                c.pointee.upFD, httpBuffers.base(e.pointee.downq.buffer), Self.httpBufferSize,
                &c.pointee.toDown.srcReadable, c.pointee.toDown.srcHangup)
            {
            case .bytes(let n):
                e.pointee.downq.start = 0
                e.pointee.downq.end = n
                countUpstreamIn(c, n)
                progressed = true
            case .wouldBlock:
                break
            case .eof:
                e.pointee.relayUpstreamDone = true
                if c.pointee.stats.firstEnd == .none { c.pointee.stats.firstEnd = .upstream }
                progressed = true
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: false))
                return .closed
            }
        }
        if !e.pointee.downq.isEmpty && c.pointee.toDown.dstWritable {
            switch flushClient(c, &e.pointee.downq) {
            case .bytes(let n):
                counters.bytesToDownstream += Int(n)
                progressed = true
            case .wouldBlock: break
            case .failed(let error):
                closeHTTP(slot, abort: true, reason: Self.failure(error, client: true))
                return .closed
            }
        }
        if e.pointee.relayUpstreamDone && e.pointee.downq.isEmpty && !e.pointee.relayClientNotified {
            e.pointee.relayClientNotified = true
            shutdownClientWrite(c)
        }
        if e.pointee.relayClientDone && e.pointee.relayUpstreamDone && e.pointee.upq.isEmpty
            && e.pointee.downq.isEmpty
        {
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
