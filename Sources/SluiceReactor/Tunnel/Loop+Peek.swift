import SluiceRouting
import SluiceSystem
import SluiceWire

/// The first bytes of a connection, read before it is routed: a PROXY protocol header from
/// a trusted load balancer in front (`acceptProxy`), and for `tls` listeners the
/// ClientHello, whose SNI names the service. The bytes are kept (in the exchange's `req`
/// queue) and replayed to the endpoint once connected, after a PROXY header of our own when
/// the service asks for one; then the pair is a plain byte tunnel.
///
/// State (per connection): `Connection.peeking` while bytes are awaited, with the
/// `tlsHello` timer armed; `Connection.replay` from routing until the replay bytes are in
/// the upstream flow.
extension Loop {
    /// A connection on a tls listener, or on any listener whose client must first send a
    /// PROXY header. Already watched by the driver.
    func openPeek(_ slot: Int32, peer: SystemAddress?, listener: LoopListener, expectProxy: Bool) {
        let c = table.pointer(slot)
        c.pointee.peeking = true
        c.pointee.usesExchange = true
        let e = exchange(slot)
        e.initialize(to: HTTPExchange())
        e.pointee.routes = listener.routes
        e.pointee.tlsContext = listener.tlsContext
        e.pointee.terminatedRoutes = listener.terminated
        e.pointee.listenPort = listener.key.address.port
        e.pointee.proxyPending = expectProxy
        e.pointee.peekTLS = listener.key.protocol == .tls
        storePeer(e, peer)
        timers.schedule(slot, at: now + snapshot.timeouts.tlsHelloMillis)
        peekStep(slot)
    }

    func storePeer(_ e: UnsafeMutablePointer<HTTPExchange>, _ peer: SystemAddress?) {
        guard let peer else { return }
        e.pointee.peerPort = peer.port
        switch peer.ip {
        case .v4(let a):
            e.pointee.peerV6 = false
            e.pointee.peerHi = 0
            e.pointee.peerLo = UInt64(a)
        case .v6(let hi, let lo):
            e.pointee.peerV6 = true
            e.pointee.peerHi = hi
            e.pointee.peerLo = lo
        }
    }

    /// Whether a listener expects a PROXY header from this client.
    func expectsProxy(_ listener: LoopListener, _ peer: SystemAddress?) -> Bool {
        guard !listener.acceptProxy.isEmpty, let peer else { return false }
        var ip = Self.routingIP(peer.ip)
        // A listener on [::] sees IPv4 clients as ::ffff:a.b.c.d: match IPv4 blocks too.
        if case .v6(0, let lo) = ip, lo >> 32 == 0xFFFF { ip = .v4(UInt32(truncatingIfNeeded: lo)) }
        for cidr in listener.acceptProxy where cidr.contains(ip) { return true }
        return false
    }

    /// Reads and examines the first bytes until the connection can be routed.
    func peekStep(_ slot: Int32) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        if c.pointee.tls != nil {
            handshakeStep(slot)
            return
        }
        while true {
            if e.pointee.req.buffer < 0 {
                // A block only once bytes are there, and a small one first.
                guard c.pointee.toUp.srcReadable else { return }
                e.pointee.req = HTTPExchange.Queue(buffer: peekBuffers.acquire(), start: 0, end: 0, small: true)
            }
            let base = self.base(of: e.pointee.req)
            if !e.pointee.req.isEmpty {
                let bytes = UnsafeRawBufferPointer(
                    start: base + Int(e.pointee.req.start), count: Int(e.pointee.req.count))
                if e.pointee.proxyPending {
                    switch consumeProxyHeader(e, bytes) {
                    case .needMore:
                        break
                    case .bad:
                        countFrontend(c, .requestErrors)
                        close(slot, abort: true, reason: .badPreface)
                        return
                    case .consumed:
                        // A TCP service may speak first: route now, without waiting for bytes.
                        guard e.pointee.peekTLS else {
                            routePeeked(slot, service: Int(c.pointee.service))
                            return
                        }
                        continue
                    }
                } else if e.pointee.peekTLS {
                    switch ClientHelloParser.parse(bytes, scratch: helloScratch) {
                    case .needMore:
                        break
                    case .notTLS, .tooLarge:
                        counters.badPreface += 1
                        countFrontend(c, .requestErrors)
                        close(slot, abort: false, reason: .badPreface)
                        return
                    case .hello(let hello):
                        routeTLS(slot, serverName: hello.serverName)
                        return
                    }
                } else {
                    routePeeked(slot, service: Int(c.pointee.service))
                    return
                }
            }
            guard c.pointee.toUp.srcReadable else {
                releaseIfEmpty(&e.pointee.req)
                return
            }
            if e.pointee.req.small && e.pointee.req.end == Self.peekBufferSize {
                // More than a small block: move to a full one (up to 32 KiB of records).
                growPeekBuffer(e)
                continue
            }
            if e.pointee.req.end == Self.httpBufferSize {
                counters.badPreface += 1
                countFrontend(c, .requestErrors)
                close(slot, abort: false, reason: .badPreface)
                return
            }
            let room = (e.pointee.req.small ? Self.peekBufferSize : Self.httpBufferSize) - e.pointee.req.end
            switch receive(c, from: .downstream, into: base + Int(e.pointee.req.end), count: room) {
            case .bytes(let n):
                e.pointee.req.end += n
            case .wouldBlock:
                releaseIfEmpty(&e.pointee.req)
                return
            case .eof:
                close(slot, abort: false, reason: .clientClosed)
                return
            case .failed(let error):
                close(slot, abort: false, reason: Self.failure(error, client: true))
                return
            }
        }
    }

    /// Moves the peeked bytes from their small block to a 32 KiB one.
    func growPeekBuffer(_ e: UnsafeMutablePointer<HTTPExchange>) {
        let small = e.pointee.req
        let buffer = httpBuffers.acquire()
        httpBuffers.base(buffer).copyMemory(
            from: peekBuffers.base(small.buffer) + Int(small.start), byteCount: Int(small.count))
        peekBuffers.release(small.buffer)
        e.pointee.req = HTTPExchange.Queue(buffer: buffer, start: 0, end: small.count)
    }

    enum ProxyConsume {
        case needMore
        case bad
        case consumed
    }

    /// Parses the PROXY header at the start of `bytes` (the exchange's `req` queue): takes the
    /// client's address from it (not for LOCAL, a health check) and drops it from the queue.
    func consumeProxyHeader(_ e: UnsafeMutablePointer<HTTPExchange>, _ bytes: UnsafeRawBufferPointer) -> ProxyConsume {
        switch ProxyHeader.parse(bytes) {
        case .needMore:
            return .needMore
        case .notProxy, .invalid:
            counters.badPreface += 1
            return .bad
        case .header(let length, let source, let destination, let local):
            if !local, let destination {
                // Relay the address the client reached at the balancer in front, not ours.
                e.pointee.relayedDestination = true
                e.pointee.destV6 = destination.v6
                e.pointee.destHi = destination.hi
                e.pointee.destLo = destination.lo
                e.pointee.destPort = destination.port
            }
            if !local, let source {
                e.pointee.peerV6 = source.v6
                e.pointee.peerHi = source.hi
                e.pointee.peerLo = source.lo
                e.pointee.peerPort = source.port
            }
            e.pointee.req.start += length
            e.pointee.proxyPending = false
            return .consumed
        }
    }

    /// Routes a tls connection by its SNI (absent: the default), or closes it.
    func routeTLS(_ slot: Int32, serverName: Range<Int32>?) {
        let e = exchange(slot)
        let table = routed(self.table.pointer(slot)).routeTables[Int(e.pointee.routes)]
        var service: Int? = nil
        if let serverName {
            let name = UnsafeRawBufferPointer(
                rebasing: UnsafeRawBufferPointer(helloScratch)[Int(serverName.lowerBound)..<Int(serverName.upperBound)])
            noteServerName(slot, name)
            switch table.lookup(host: name, path: Self.rootPath, defaultPort: 443) {
            case .service(let index, _): service = Int(index)
            case .terminate:
                startTermination(slot)
                return
            case .noRoute, .redirect: break
            }
        } else if table.defaultBackend.terminate {
            startTermination(slot)
            return
        } else {
            service = table.defaultBackend.service
        }
        guard let service else {
            counters.tlsNoRoute += 1
            countFrontend(self.table.pointer(slot), .noRoute)
            close(slot, abort: false, reason: .noRoute)
            return
        }
        routePeeked(slot, service: service)
    }

    /// The connection is routed: pick an endpoint and connect as a TCP connection does; the
    /// peeked bytes are replayed once connected (`injectReplay`).
    func routePeeked(_ slot: Int32, service: Int) {
        let c = table.pointer(slot)
        let e = exchange(slot)
        c.pointee.peeking = false
        c.pointee.replay = true
        c.pointee.service = Int32(service)
        timers.cancel(slot)
        let ip: SocketAddress.IP =
            e.pointee.peerV6
            ? .v6(e.pointee.peerHi, e.pointee.peerLo) : .v4(UInt32(truncatingIfNeeded: e.pointee.peerLo))
        let hash = SocketAddress(ip: ip, port: 0).addressHash
        c.pointee.stats.routedAfter = ConnectionStats.after(c.pointee.stats.acceptedMicros, nowMicros)
        guard service >= 0, let endpoint = pickEndpoint(c, service: service, clientHash: hash) else {
            counters.noEndpoint += 1
            countBackend(c, .noEndpoint)
            close(slot, abort: false, reason: .noEndpoint)
            return
        }
        c.pointee.endpoint = Int32(endpoint)
        let start = c.pointee.life.start(now: now, connectMillis: snapshot.timeouts.connectMillis)
        guard case .connect(let deadline) = start else { preconditionFailure("start always connects") }
        startConnect(slot, deadline: deadline)
    }

    /// Connected: put our PROXY header (when the service wants one) and the peeked bytes in
    /// front of the upstream flow, so they go out first with the flow's own back-pressure.
    func injectReplay(_ slot: Int32) -> Bool {
        let c = table.pointer(slot)
        let e = exchange(slot)
        c.pointee.replay = false
        var header = 0
        if let version = routed(c).services[Int(c.pointee.service)].proxyProtocol {
            header = writeProxyHeader(slot, version: version, into: scratch)
        }
        let peeked = e.pointee.req.buffer >= 0 ? Int(e.pointee.req.count) : 0
        let total = header + peeked
        guard total > 0 else {
            releaseHTTPBuffers(e)
            return true
        }
        // The peeked bytes (up to 32 KiB, a ClientHello in many small records) may not fit a
        // copy buffer (`tuning.copyBuffer` may be 16 KiB): such a replay goes through a pipe.
        if total > buffers.bufferSize {
            guard snapshot.tuning.splice else {
                counters.badPreface += 1
                return false
            }
            c.pointee.toUp.copyMode = false
            c.pointee.toUp.spliceWhenFull = false
        }
        if c.pointee.toUp.copyMode {
            let buffer = buffers.acquire()
            let block = buffers.base(buffer)
            if header > 0 { block.copyMemory(from: scratch, byteCount: header) }
            if peeked > 0 {
                (block + header).copyMemory(
                    from: base(of: e.pointee.req) + Int(e.pointee.req.start), byteCount: peeked)
            }
            c.pointee.toUpBuffer = buffer
        } else {
            guard let pipe = try? pipes.acquire() else { return false }
            c.pointee.toUpPipe = pipe
            guard pipes.grantedSize >= total else {
                // A pipe kept small by the per-user budget cannot take the replay at once.
                counters.badPreface += 1
                return false
            }
            c.pointee.toUp.capacity = Int32(pipes.grantedSize)
            // An empty pipe of at least 64 KiB takes the ≤ 33 KiB at once.
            if header > 0, !driver.fillPipe(pipe.writeFD, from: scratch, count: header) { return false }
            if peeked > 0,
                !driver.fillPipe(pipe.writeFD, from: base(of: e.pointee.req) + Int(e.pointee.req.start), count: peeked)
            {
                return false
            }
        }
        c.pointee.toUp.pending = Int32(total)
        c.pointee.toUp.offset = 0
        releaseHTTPBuffers(e)
        return true
    }

    /// Our PROXY header for the upstream: the client's address and the address it reached.
    func writeProxyHeader(_ slot: Int32, version: ProxyVersion, into out: UnsafeMutableRawPointer) -> Int {
        let c = table.pointer(slot)
        let e = exchange(slot)
        let source = ProxyAddress(
            v6: e.pointee.peerV6, hi: e.pointee.peerHi, lo: e.pointee.peerLo, port: e.pointee.peerPort)
        var destination = ProxyAddress(v6: source.v6, hi: 0, lo: 0, port: e.pointee.listenPort)
        if e.pointee.relayedDestination {
            destination = ProxyAddress(
                v6: e.pointee.destV6, hi: e.pointee.destHi, lo: e.pointee.destLo, port: e.pointee.destPort)
        } else if let local = driver.localAddress(c.pointee.downFD) {
            switch local.ip {
            case .v4(let a): destination = ProxyAddress(v6: false, hi: 0, lo: UInt64(a), port: local.port)
            case .v6(let hi, let lo): destination = ProxyAddress(v6: true, hi: hi, lo: lo, port: local.port)
            }
        }
        let buffer = UnsafeMutableRawBufferPointer(start: out, count: Self.scratchSize)
        switch version {
        case .v1: return ProxyHeader.writeV1(source: source, destination: destination, into: buffer) ?? 0
        case .v2: return ProxyHeader.writeV2(source: source, destination: destination, into: buffer) ?? 0
        }
    }

    nonisolated(unsafe) static let rootPath = UnsafeRawBufferPointer(start: UnsafeRawPointer(rootPathStorage), count: 1)
    nonisolated(unsafe) static let rootPathStorage: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        p[0] = UInt8(ascii: "/")
        return p
    }()
}
