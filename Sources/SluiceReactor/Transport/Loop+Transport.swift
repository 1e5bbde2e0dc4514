import SluiceSystem

/// The transport of each side of a connection: the plain socket, or for a client whose TLS
/// is terminated here, an OpenSSL session over memory buffers (`TLSSession.makeDetached`)
/// whose ciphertext the loop reads and sends through the driver, so no C code touches a
/// socket. Protocol code receives and sends through these calls only; outcomes keep the
/// errno.
///
/// Readiness: a side's "readable" flag (`toUp.srcReadable` for the client,
/// `toDown.srcReadable` for the upstream) stays set while a receive may still yield
/// something, and is cleared when the socket came up short (edge-triggered: nothing more
/// without a new event) and, for TLS, the session holds no record either. A hang-up keeps it
/// set: the end of stream behind the data must still be read.
///
/// TLS output: what the session encrypts waits in its output buffer until sent; a send that
/// leaves some there clears the client's writable flag, and the client's next writable event
/// pushes it (`clientWritable`). `outputPending` tells a close to wait for it.
///
/// An HTTP/2 stream is a third downstream transport: its request comes from, and its
/// response goes to, the session's nghttp2 streams (`Loop+HTTP2Stream`).
extension Loop {
    enum Side {
        case downstream
        case upstream
    }

    /// Receives once from `side`: socket bytes, or plaintext from the client's TLS session.
    @inline(__always)
    func receive(
        _ c: UnsafeMutablePointer<Connection>, from side: Side, into dst: UnsafeMutableRawPointer, count: Int32
    )
        -> ReadResult
    {
        switch side {
        case .downstream:
            if let session = c.pointee.tls { return receiveTLS(c, session, into: dst, count: count) }
            if c.pointee.h2 == .stream { return receiveStream(c, into: dst, count: count) }
            let result = receivePlain(
                c.pointee.downFD, into: dst, count: count, readable: &c.pointee.toUp.srcReadable,
                hangup: c.pointee.toUp.srcHangup)
            if case .bytes(let n) = result { countClientIn(c, n) }
            return result
        case .upstream:
            if c.pointee.h2Upstream { return receiveUpstreamStream(c, into: dst, count: count) }
            let result = receivePlain(
                c.pointee.upFD, into: dst, count: count, readable: &c.pointee.toDown.srcReadable,
                hangup: c.pointee.toDown.srcHangup)
            if case .bytes(let n) = result { countUpstreamIn(c, n) }
            return result
        }
    }

    /// Sends the queue's bytes to `side` once and advances it. For a TLS client an empty
    /// queue only pushes the ciphertext still waiting.
    @inline(__always)
    func send(_ c: UnsafeMutablePointer<Connection>, _ queue: inout HTTPExchange.Queue, to side: Side) -> WriteResult {
        switch side {
        case .downstream:
            if let session = c.pointee.tls { return sendTLS(c, session, &queue) }
            if c.pointee.h2 == .stream { return sendStream(c, &queue) }
            let result = sendPlain(c.pointee.downFD, &queue, writable: &c.pointee.toDown.dstWritable)
            if case .bytes(let n) = result { countClientOut(c, n) }
            return result
        case .upstream:
            if c.pointee.h2Upstream { return sendUpstreamStream(c, &queue) }
            let result = sendPlain(c.pointee.upFD, &queue, writable: &c.pointee.toUp.dstWritable)
            if case .bytes(let n) = result { countUpstreamOut(c, n) }
            return result
        }
    }

    /// Ends `side`'s write direction: close_notify first (pushed as far as the socket
    /// takes it) when the client speaks TLS, then FIN.
    func shutdownWrite(_ c: UnsafeMutablePointer<Connection>, _ side: Side) {
        switch side {
        case .downstream:
            if c.pointee.h2 == .stream {
                shutdownStream(c)
                return
            }
            if let session = c.pointee.tls {
                TLSSession.shutdown(session)
                _ = pushTLSOutput(c, session)
            }
            driver.shutdownWrite(c.pointee.downFD)
        case .upstream:
            if c.pointee.h2Upstream {
                endUpstreamRequest(c)
                return
            }
            driver.shutdownWrite(c.pointee.upFD)
        }
    }

    /// A client event: ciphertext its TLS session holds from an earlier send goes first when
    /// the socket may take it. The errno when that send failed.
    @inline(__always)
    func clientWritable(_ c: UnsafeMutablePointer<Connection>, _ mask: Readiness) -> Errno? {
        guard mask.mayWrite, let session = c.pointee.tls, case .failed(let error) = pushTLSOutput(c, session) else {
            return nil
        }
        return error
    }

    /// The client's TLS session holds ciphertext not yet sent.
    @inline(__always)
    func outputPending(_ c: UnsafeMutablePointer<Connection>) -> Bool {
        guard let session = c.pointee.tls else { return false }
        return TLSSession.pendingOutputCount(session) > 0
    }

    /// A TLS client gone idle gives its session's record and transport buffers back (they
    /// are allocated again at its next request).
    func releaseIdleBuffers(_ c: UnsafeMutablePointer<Connection>) {
        if let session = c.pointee.tls { TLSSession.releaseTransportBuffers(session) }
    }

    /// Frees the session (after a close_notify, pushed once, unless aborting), before the
    /// socket closes.
    @inline(__always)
    func endTLS(_ c: UnsafeMutablePointer<Connection>, abort: Bool, side: Side = .downstream) {
        guard let session = c.pointee.tls else { return }
        if !abort {
            TLSSession.shutdown(session)
            _ = pushTLSOutput(c, session, side: side)
        }
        TLSSession.free(session)
        c.pointee.tls = nil
    }

    // MARK: - Plain sockets

    /// Reads once. A short read clears `readable` (edge-triggered: the socket is drained)
    /// unless a hangup was reported, in which case the EOF behind the data must still be read.
    @inline(__always)
    func receivePlain(
        _ fd: Int32, into dst: UnsafeMutableRawPointer, count: Int32, readable: inout Bool, hangup: Bool
    ) -> ReadResult {
        let result = driver.read(fd, into: dst, count: count)
        switch result {
        case .wouldBlock, .eof: readable = false
        case .bytes(let n): if n < count && !hangup { readable = false }
        case .failed: break
        }
        return result
    }

    @inline(__always)
    func sendPlain(_ fd: Int32, _ queue: inout HTTPExchange.Queue, writable: inout Bool) -> WriteResult {
        let result = driver.send(fd, from: httpBuffers.base(queue.buffer) + Int(queue.start), count: queue.count)
        switch result {
        case .bytes(let n): advance(&queue, by: n)
        case .wouldBlock: writable = false
        case .failed: break
        }
        return result
    }

    // MARK: - TLS over memory

    // The socket and readiness flags of the side a TLS session speaks on: the client's
    // (`downFD`; `toUp.src*`, `toDown.dstWritable`) for termination, the endpoint's (`upFD`;
    // `toDown.src*`, `toUp.dstWritable`) for an HTTP/2 session to an `h2` service.

    @inline(__always)
    func tlsSocket(_ c: UnsafeMutablePointer<Connection>, _ side: Side) -> Int32 {
        side == .downstream ? c.pointee.downFD : c.pointee.upFD
    }

    @inline(__always)
    func tlsReadable(_ c: UnsafeMutablePointer<Connection>, _ side: Side) -> Bool {
        side == .downstream ? c.pointee.toUp.srcReadable : c.pointee.toDown.srcReadable
    }

    @inline(__always)
    func tlsHangup(_ c: UnsafeMutablePointer<Connection>, _ side: Side) -> Bool {
        side == .downstream ? c.pointee.toUp.srcHangup : c.pointee.toDown.srcHangup
    }

    @inline(__always)
    func tlsDrained(_ c: UnsafeMutablePointer<Connection>, _ side: Side) {
        if side == .downstream { c.pointee.toUp.srcReadable = false } else { c.pointee.toDown.srcReadable = false }
    }

    @inline(__always)
    func tlsFull(_ c: UnsafeMutablePointer<Connection>, _ side: Side) {
        if side == .downstream { c.pointee.toDown.dstWritable = false } else { c.pointee.toUp.dstWritable = false }
    }

    /// Plaintext from the session, reading the socket into it as it asks for records. Only
    /// a socket read made by this call tells whether the socket is drained now.
    func receiveTLS(
        _ c: UnsafeMutablePointer<Connection>, _ session: OpaquePointer, into dst: UnsafeMutableRawPointer,
        count: Int32, side: Side = .downstream
    ) -> ReadResult {
        var drained = false
        // Nothing buffered: read the socket first rather than ask the session to hear that
        // it wants input (a TLS read call saved per receive).
        if tlsReadable(c, side) && TLSSession.pendingInput(session) == 0 && !TLSSession.hasPending(session) {
            switch fillTLSInput(c, session, side: side) {
            case .bytes(let read): drained = read.drained
            case .wouldBlock: return .wouldBlock
            case .failed(let error): return .failed(error)
            }
        }
        while true {
            switch TLSSession.read(session, into: dst, count: Int(count)) {
            case .done(let n):
                if drained && !tlsHangup(c, side) && TLSSession.pendingInput(session) == 0
                    && !TLSSession.hasPending(session)
                {
                    tlsDrained(c, side)
                }
                if side == .downstream { countClientIn(c, Int32(n)) }
                // Records the session wrote meanwhile (a key update, tickets) go out now.
                if case .failed(let error) = pushTLSOutput(c, session, side: side) { return .failed(error) }
                return .bytes(Int32(n))
            case .wantRead:
                if case .failed(let error) = pushTLSOutput(c, session, side: side) { return .failed(error) }
                guard tlsReadable(c, side), !drained else {
                    tlsDrained(c, side)
                    return .wouldBlock
                }
                switch fillTLSInput(c, session, side: side) {
                case .bytes(let n): drained = n.drained
                case .wouldBlock: return .wouldBlock
                case .failed(let error): return .failed(error)
                }
            case .wantWrite:
                switch pushTLSOutput(c, session, side: side) {
                case .bytes: continue
                case .wouldBlock: return .wouldBlock
                case .failed(let error): return .failed(error)
                }
            case .eof:
                tlsDrained(c, side)
                return .eof
            case .failed:
                return .failed(TLSSession.takeFailure())
            }
        }
    }

    enum InputFill {
        /// Ciphertext (or the end of stream) went into the session; `drained`: the socket
        /// came up short.
        case bytes((count: Int32, drained: Bool))
        case wouldBlock
        case failed(Errno)
    }

    /// One socket read into the session's input. The end of stream is passed on (the
    /// session then reports it after what it holds).
    func fillTLSInput(_ c: UnsafeMutablePointer<Connection>, _ session: OpaquePointer, side: Side = .downstream)
        -> InputFill
    {
        let room = TLSSession.inputRoom(session)
        guard let base = room.baseAddress, room.count > 0 else { return .failed(.protocolError) }
        let want = Int32(clamping: room.count)
        switch driver.read(tlsSocket(c, side), into: base, count: want) {
        case .bytes(let n):
            TLSSession.commitInput(session, count: Int(n))
            return .bytes((n, n < want && !tlsHangup(c, side)))
        case .wouldBlock:
            tlsDrained(c, side)
            return .wouldBlock
        case .eof:
            TLSSession.endInput(session)
            return .bytes((0, true))
        case .failed(let error):
            return .failed(error)
        }
    }

    func sendTLS(
        _ c: UnsafeMutablePointer<Connection>, _ session: OpaquePointer, _ queue: inout HTTPExchange.Queue,
        side: Side = .downstream
    ) -> WriteResult {
        switch pushTLSOutput(c, session, side: side) {
        case .bytes: break
        case .wouldBlock: return .wouldBlock
        case .failed(let error): return .failed(error)
        }
        guard !queue.isEmpty else { return .bytes(0) }
        switch TLSSession.write(
            session, from: httpBuffers.base(queue.buffer) + Int(queue.start), count: Int(queue.count))
        {
        case .done(let n):
            advance(&queue, by: Int32(n))
            if side == .downstream { countClientOut(c, Int32(n)) }
            // The ciphertext goes now; what the socket does not take waits for its next
            // writable event.
            if case .failed(let error) = pushTLSOutput(c, session, side: side) { return .failed(error) }
            return .bytes(Int32(n))
        case .wantWrite:
            tlsFull(c, side)
            return .wouldBlock
        case .wantRead:
            tlsDrained(c, side)
            return .wouldBlock
        case .eof:
            _ = TLSSession.takeFailure()
            return .failed(.brokenPipe)
        case .failed:
            return .failed(TLSSession.takeFailure())
        }
    }

    /// Sends the ciphertext the session holds: `.bytes(0)` when none is left, `.wouldBlock`
    /// (the side's writable flag cleared) when the socket is full.
    func pushTLSOutput(_ c: UnsafeMutablePointer<Connection>, _ session: OpaquePointer, side: Side = .downstream)
        -> WriteResult
    {
        while true {
            let output = TLSSession.pendingOutput(session)
            guard let base = output.baseAddress, output.count > 0 else { return .bytes(0) }
            let count = Int32(clamping: output.count)
            switch driver.send(tlsSocket(c, side), from: base, count: count) {
            case .bytes(let n):
                TLSSession.consumeOutput(session, count: Int(n))
                if n < count {
                    tlsFull(c, side)
                    return .wouldBlock
                }
            case .wouldBlock:
                tlsFull(c, side)
                return .wouldBlock
            case .failed(let error):
                return .failed(error)
            }
        }
    }
}
