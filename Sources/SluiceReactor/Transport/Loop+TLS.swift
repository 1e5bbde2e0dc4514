import SluiceRouting
import SluiceSystem
import SluiceWire

/// TLS termination: once the ClientHello names a host this listener decrypts (`.terminate`
/// from the SNI table), the connection gets an OpenSSL session fed with the bytes already
/// peeked, completes the handshake within the `tlsHello` deadline, and then runs the http
/// listener's exchange with the listener's table of terminated routes. Every client read and
/// write of that exchange goes through the session (`Loop+Transport`); bodies are copied,
/// never spliced. A 101 upgrade is relayed through the exchange's queues (`Loop+HTTPRelay`).
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
        guard let session = TLSSession.makeDetached(context: context.pointer, prefix: prefix) else {
            counters.tlsFailed += 1
            countFrontend(c, .tlsFailures)
            close(slot, abort: true, reason: .tlsFailed)
            return
        }
        c.pointee.tls = session
        release(&e.pointee.req)
        let position = Int(c.pointee.listener)
        if position >= 0 && listeners[position].http2 { _ = TLSSession.offerHTTP2(session) }
        handshakeStep(slot)
    }

    /// Advances the handshake, feeding the session the socket's ciphertext and sending its
    /// flights; on completion the connection becomes an HTTP client.
    func handshakeStep(_ slot: Int32) {
        let c = table.pointer(slot)
        guard let session = c.pointee.tls else { return }
        var failure: Errno? = nil
        handshake: while true {
            switch TLSSession.handshake(session) {
            case .done:
                // The last flight (and TLS 1.3 tickets) go out now, or on the next writable event.
                if case .failed(let error) = pushTLSOutput(c, session) {
                    failure = error
                    break handshake
                }
                handshakeDone(slot, session)
                return
            case .wantRead:
                if case .failed(let error) = pushTLSOutput(c, session) {
                    failure = error
                    break handshake
                }
                guard c.pointee.toUp.srcReadable else { return }
                switch fillTLSInput(c, session) {
                case .bytes: continue
                case .wouldBlock: return
                case .failed(let error):
                    failure = error
                    break handshake
                }
            case .wantWrite:
                switch pushTLSOutput(c, session) {
                case .bytes: continue
                case .wouldBlock: return
                case .failed(let error):
                    failure = error
                    break handshake
                }
            case .eof, .failed:
                break handshake
            }
        }
        counters.tlsFailed += 1
        countFrontend(c, .tlsFailures)
        if logger.logLevel <= .debug {
            logger.debug("TLS handshake failed: \(failure.map { "\($0)" } ?? TLSSession.lastError())")
        } else {
            _ = TLSSession.takeFailure()
        }
        close(slot, abort: false, reason: .tlsFailed)
    }

    func handshakeDone(_ slot: Int32, _ session: OpaquePointer) {
        let c = table.pointer(slot)
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
        // The handshake may have read application data already: try a read.
        c.pointee.toUp.srcReadable = true
        c.pointee.toDown.dstWritable = true
        c.pointee.life.activity(now: now)
        if let session = c.pointee.tls, TLSSession.selectedHTTP2(session) {
            startSession(slot, received: UnsafeRawBufferPointer(start: nil, count: 0))
            return
        }
        armIdle(slot)
        httpPump(slot)
    }

    /// A client between requests: the client-idle timer, after a short wait first for a TLS
    /// client, whose OpenSSL record buffers (about 34 KiB) are freed if it stays idle (not
    /// after every request: they would be allocated again at once under load).
    func armIdle(_ slot: Int32) {
        apply(slot, .waiting(tls: table.pointer(slot).pointee.tls != nil))
    }

    static let tlsIdleMillis: Int64 = 1_000
}
