import SluiceRouting
import SluiceSystem
import SluiceWire

/// What a logged connection keeps for its records beyond `ConnectionStats`: the client's
/// address for connections without an exchange (plain tcp), the TLS version and the SNI
/// name's length (its bytes are in `Loop.sniStore`). One per slot, allocated only when the
/// loop has an access-log ring, touched only by logged connections.
struct LogState: BitwiseCopyable {
    var clientV6 = false
    var clientHi: UInt64 = 0
    var clientLo: UInt64 = 0
    var clientPort: UInt16 = 0
    var tlsVersion: UInt16 = 0
    var sniLength: UInt8 = 0
    /// The name was longer than `sniCapacity` (the record marks it cut).
    var sniCut = false

    static let sniCapacity = 128
}

/// Access-log records, made on the loop when an exchange or a connection ends and written
/// into the loop's `AccessLogRing` with plain stores: no lock, no allocation, no string (names
/// are copied from byte arrays made once per swap, or from the snapshot's native strings
/// through `withContiguousStorageIfAvailable`).
///
/// | record | made when                                              | kind             |
/// | ------ | ------------------------------------------------------ | ---------------- |
/// | http   | the response is written whole (upstream's or the proxy's own), the upgrade is handed over, or the connection closes with the request in flight | `.http` |
/// | tunnel | a tcp or tls-listener connection closes (not HTTP, not terminated) | `.tcp`, `.tlsPassthrough` |
///
/// Which are kept: the listener's policy now (`AccessLogPolicy`), for connections accepted
/// while it logged (`ConnectionStats.logged`). `errors`: only failures; `on`: failures always,
/// the rest sampled per million by the loop's xorshift. A failure is an abnormal close reason
/// (`CloseReason.isAbnormal`), or for http a status ≥ 500 or none.
extension Loop {
    /// The listener's policy when the connection's records are made now; nil when not.
    @inline(__always)
    func logPolicy(_ c: UnsafeMutablePointer<Connection>) -> AccessLogPolicy? {
        guard accessLog != nil, c.pointee.stats.logged else { return nil }
        let position = Int(c.pointee.listener)
        guard position >= 0 else { return nil }
        let policy = listeners[position].accessLog
        return policy.mode == .off ? nil : policy
    }

    /// A connection accepted on `listener`: whether it is logged, and its client's address.
    @inline(__always)
    func startLogging(_ slot: Int32, listener: LoopListener, peer: SystemAddress?) {
        guard let logStates, listener.accessLog.mode != .off else { return }
        table.pointer(slot).pointee.stats.logged = true
        let state = logStates + Int(slot)
        state.pointee.tlsVersion = 0
        state.pointee.sniLength = 0
        state.pointee.sniCut = false
        state.pointee.clientPort = peer?.port ?? 0
        switch peer?.ip {
        case .v4(let a):
            state.pointee.clientV6 = false
            state.pointee.clientHi = 0
            state.pointee.clientLo = UInt64(a)
        case .v6(let hi, let lo):
            state.pointee.clientV6 = true
            state.pointee.clientHi = hi
            state.pointee.clientLo = lo
        case nil:
            state.pointee.clientV6 = false
            state.pointee.clientHi = 0
            state.pointee.clientLo = 0
        }
    }

    /// The ClientHello's server name, for the connection's records.
    func noteServerName(_ slot: Int32, _ name: UnsafeRawBufferPointer) {
        guard let logStates, table.pointer(slot).pointee.stats.logged else { return }
        let n = min(name.count, LogState.sniCapacity)
        if n > 0 { (sniStore + Int(slot) * LogState.sniCapacity).copyMemory(from: name.baseAddress!, byteCount: n) }
        logStates[Int(slot)].sniLength = UInt8(n)
        logStates[Int(slot)].sniCut = name.count > n
    }

    /// The TLS version negotiated with the client, for the connection's records.
    func noteTLSVersion(_ slot: Int32, _ version: UInt16) {
        guard let logStates, table.pointer(slot).pointee.stats.logged else { return }
        logStates[Int(slot)].tlsVersion = version
    }

    // MARK: - Keeping

    /// Whether a record goes to the ring: failures always, the rest by the policy.
    @inline(__always)
    func keepRecord(_ policy: AccessLogPolicy, failure: Bool) -> Bool {
        if failure { return true }
        guard policy.mode == .on else { return false }
        if policy.samplePerMillion >= 1_000_000 { return true }
        return nextSample() % 1_000_000 < UInt64(policy.samplePerMillion)
    }

    /// The loop's xorshift64: no lock, no system call.
    @inline(__always)
    func nextSample() -> UInt64 {
        var x = sampler
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        sampler = x
        return x
    }

    // MARK: - Records

    /// The HTTP request in flight ended (`reason`: why the connection closes with it, `.none`
    /// when it stays open): its record, if kept.
    func logExchange(_ slot: Int32, reason: CloseReason) {
        let c = table.pointer(slot)
        guard let policy = logPolicy(c), let ring = accessLog else { return }
        let e = exchange(slot)
        let status = e.pointee.stats.status
        guard keepRecord(policy, failure: status >= 500 || status == 0 || reason.isAbnormal) else { return }
        guard let r = ring.reserve() else { return }
        let stats = e.pointee.stats
        r.pointee.kind = .http
        r.pointee.method = stats.parsed ? e.pointee.machine.method.rawValue : AccessRecord.noMethod
        if c.pointee.h2 == .stream {
            r.pointee.httpVersion = 20
        } else {
            r.pointee.httpVersion = stats.parsed ? (e.pointee.machine.http10 ? 10 : 11) : 0
        }
        r.pointee.upstreamVersion = stats.attached ? (stats.upstreamH2 ? 20 : 11) : 0
        r.pointee.status = status
        r.pointee.closeReason = reason.rawValue
        fillCommon(r, c, slot)
        fillClient(r, exchange: e)
        r.pointee.bytesIn = c.pointee.stats.recordIn
        r.pointee.bytesOut = c.pointee.stats.recordOut
        r.pointee.startMicros = stats.startMicros
        r.pointee.requestMicros = Int64(stats.headAfter)
        r.pointee.connectMicros = stats.attached ? Int64(c.pointee.stats.connectMicros) : -1
        r.pointee.responseMicros =
            stats.sentAfter >= 0 && stats.responseAfter >= 0 ? Int64(stats.responseAfter - stats.sentAfter) : -1
        r.pointee.totalMicros = nowMicros - stats.startMicros
        let text = Self.textOf(r)
        // The head is still where it was parsed unless a pipelined body pushed it out.
        let head: UnsafeRawPointer? =
            stats.headAfter >= 0 && e.pointee.headLength > 0 && e.pointee.req.buffer >= 0
            ? UnsafeRawPointer(base(of: e.pointee.req) + Int(e.pointee.headStart)) : nil
        Self.put(text, r, .host, head, stats.host)
        Self.put(text, r, .target, head, stats.target)
        if stats.generatedID != 0 {
            formatRequestID(stats.generatedID, into: text + AccessRecord.Field.requestID.offset)
            r.pointee.lengths[AccessRecord.Field.requestID.rawValue] = UInt16(Self.requestIDLength)
            r.pointee.truncated &= ~(UInt8(1) << UInt8(AccessRecord.Field.requestID.rawValue))
        } else {
            Self.put(text, r, .requestID, head, stats.requestID)
        }
        let routedWith = routed(c)
        if stats.routed && c.pointee.service >= 0 {
            Self.put(text, r, .service, routedWith.services[Int(c.pointee.service)].name)
        } else {
            Self.clear(r, .service)
        }
        fillEndpoint(r, stats.attached && c.pointee.endpoint >= 0 ? routedWith.endpoints[Int(c.pointee.endpoint)] : nil)
        ring.publish()
    }

    /// A tcp or passthrough connection closes: its record, if kept.
    func logTunnel(_ slot: Int32) {
        let c = table.pointer(slot)
        guard let policy = logPolicy(c), let ring = accessLog else { return }
        let reason = c.pointee.stats.closeReason
        guard keepRecord(policy, failure: reason.isAbnormal) else { return }
        guard let r = ring.reserve() else { return }
        let stats = c.pointee.stats
        r.pointee.kind = listeners[Int(c.pointee.listener)].key.protocol == .tls ? .tlsPassthrough : .tcp
        r.pointee.method = 0
        r.pointee.httpVersion = 0
        r.pointee.upstreamVersion = 0
        r.pointee.status = 0
        r.pointee.closeReason = reason.rawValue
        fillCommon(r, c, slot)
        if c.pointee.usesExchange { fillClient(r, exchange: exchange(slot)) }
        r.pointee.bytesIn = stats.recordIn
        r.pointee.bytesOut = stats.recordOut
        r.pointee.startMicros = stats.acceptedMicros
        r.pointee.requestMicros = Int64(stats.routedAfter)
        r.pointee.connectMicros = Int64(stats.connectMicros)
        r.pointee.responseMicros =
            stats.connectedAfter >= 0 && stats.firstUpstreamAfter >= 0
            ? Int64(stats.firstUpstreamAfter - stats.connectedAfter) : -1
        r.pointee.totalMicros = nowMicros - stats.acceptedMicros
        let text = Self.textOf(r)
        Self.clear(r, .host)
        Self.clear(r, .target)
        Self.clear(r, .requestID)
        let routedWith = routed(c)
        if c.pointee.service >= 0 {
            Self.put(text, r, .service, routedWith.services[Int(c.pointee.service)].name)
        } else {
            Self.clear(r, .service)
        }
        fillEndpoint(r, c.pointee.endpoint >= 0 ? routedWith.endpoints[Int(c.pointee.endpoint)] : nil)
        ring.publish()
    }

    /// Listener name, SNI, TLS version and the client's address as accepted.
    @inline(__always)
    private func fillCommon(
        _ r: UnsafeMutablePointer<AccessRecord>, _ c: UnsafeMutablePointer<Connection>, _ slot: Int32
    ) {
        let text = Self.textOf(r)
        listeners[Int(c.pointee.listener)].name.withUnsafeBytes { Self.put(text, r, .listener, $0) }
        let state = logStates.unsafelyUnwrapped + Int(slot)
        let sni = Int(state.pointee.sniLength)
        if sni > 0 {
            (text + AccessRecord.Field.sni.offset).copyMemory(
                from: sniStore + Int(slot) * LogState.sniCapacity, byteCount: sni)
        }
        r.pointee.lengths[AccessRecord.Field.sni.rawValue] = UInt16(sni)
        let bit = UInt8(1) << UInt8(AccessRecord.Field.sni.rawValue)
        r.pointee.truncated = state.pointee.sniCut ? r.pointee.truncated | bit : r.pointee.truncated & ~bit
        r.pointee.tlsVersion = state.pointee.tlsVersion
        r.pointee.clientV6 = state.pointee.clientV6
        r.pointee.clientHi = state.pointee.clientHi
        r.pointee.clientLo = state.pointee.clientLo
        r.pointee.clientPort = state.pointee.clientPort
    }

    /// The client's address as the exchange has it (a PROXY header's source when one came).
    @inline(__always)
    private func fillClient(_ r: UnsafeMutablePointer<AccessRecord>, exchange e: UnsafeMutablePointer<HTTPExchange>) {
        r.pointee.clientV6 = e.pointee.peerV6
        r.pointee.clientHi = e.pointee.peerHi
        r.pointee.clientLo = e.pointee.peerLo
        r.pointee.clientPort = e.pointee.peerPort
    }

    @inline(__always)
    private func fillEndpoint(_ r: UnsafeMutablePointer<AccessRecord>, _ endpoint: Endpoint?) {
        guard let endpoint else {
            r.pointee.endpointV6 = false
            r.pointee.endpointHi = 0
            r.pointee.endpointLo = 0
            r.pointee.endpointPort = 0
            return
        }
        r.pointee.endpointPort = endpoint.address.port
        switch endpoint.address.ip {
        case .v4(let a):
            r.pointee.endpointV6 = false
            r.pointee.endpointHi = 0
            r.pointee.endpointLo = UInt64(a)
        case .v6(let hi, let lo):
            r.pointee.endpointV6 = true
            r.pointee.endpointHi = hi
            r.pointee.endpointLo = lo
        }
    }

    // MARK: - Text fields

    /// Where a record's bounded texts start.
    // SAFETY: `text` is a stored property of the (trivial, fixed-layout) record, so its
    // offset exists; the pointer is used only while `r` points at a reserved ring slot.
    @inline(__always)
    static func textOf(_ r: UnsafeMutablePointer<AccessRecord>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(r) + textOffset
    }

    static let textOffset = MemoryLayout<AccessRecord>.offset(of: \AccessRecord.text)!

    /// Copies at most the field's capacity of `bytes` into it, as `AccessRecord.set` does
    /// (marking a cut in `truncated`), with one copy.
    @inline(__always)
    static func put(
        _ text: UnsafeMutableRawPointer, _ r: UnsafeMutablePointer<AccessRecord>, _ field: AccessRecord.Field,
        _ bytes: UnsafeRawBufferPointer
    ) {
        let n = min(bytes.count, field.capacity)
        if n > 0 { (text + field.offset).copyMemory(from: bytes.baseAddress!, byteCount: n) }
        r.pointee.lengths[field.rawValue] = UInt16(n)
        let bit = UInt8(1) << UInt8(field.rawValue)
        r.pointee.truncated = bytes.count > n ? r.pointee.truncated | bit : r.pointee.truncated & ~bit
    }

    /// An empty field.
    @inline(__always)
    static func clear(_ r: UnsafeMutablePointer<AccessRecord>, _ field: AccessRecord.Field) {
        r.pointee.lengths[field.rawValue] = 0
        r.pointee.truncated &= ~(UInt8(1) << UInt8(field.rawValue))
    }

    /// A slice of the request head at `head` (none when the head is gone).
    @inline(__always)
    static func put(
        _ text: UnsafeMutableRawPointer, _ r: UnsafeMutablePointer<AccessRecord>, _ field: AccessRecord.Field,
        _ head: UnsafeRawPointer?, _ slice: HeadSlice
    ) {
        guard let head, slice.count > 0 else {
            clear(r, field)
            return
        }
        put(text, r, field, UnsafeRawBufferPointer(start: head + Int(slice.offset), count: Int(slice.count)))
    }

    /// A snapshot's name, copied from its UTF-8 storage (native strings: no allocation).
    @inline(__always)
    static func put(
        _ text: UnsafeMutableRawPointer, _ r: UnsafeMutablePointer<AccessRecord>, _ field: AccessRecord.Field,
        _ name: String
    ) {
        let copied: Void? = name.utf8.withContiguousStorageIfAvailable {
            put(text, r, field, UnsafeRawBufferPointer($0))
        }
        if copied == nil { clear(r, field) }
    }
}

extension AccessRecord {
    /// `method` of a request whose head was not parsed (a 400, a 431, a timeout or a close
    /// mid-head): no `HTTPMethod` has this raw value.
    public static let noMethod: UInt8 = 255
}

extension CloseReason {
    /// An abnormal end: timeouts, resets, connect failures, bad responses, refused or cut
    /// short by the proxy. Records with one are never sampled away.
    public var isAbnormal: Bool {
        switch self {
        case .none, .clientClosed, .upstreamClosed, .done, .noRoute, .badRequest, .draining, .listenerRemoved:
            false
        case .clientReset, .upstreamReset, .clientTimeout, .requestHeadTimeout, .requestBodyTimeout, .connectTimeout,
            .serverTimeout, .tunnelTimeout, .connectFailed, .noEndpoint, .badResponse, .tlsFailed, .badPreface,
            .overLimit:
            true
        }
    }
}
