import SluiceRouting

/// The observed life of an HTTP request and of a connection: where a request begins and
/// ends for the metrics (and the access log), and what a close records.
extension Loop {
    /// The first byte of a request was read (or was waiting after the previous one): its
    /// stats start over.
    @inline(__always)
    func beginRequest(_ slot: Int32) {
        let e = exchange(slot)
        e.pointee.stats = ExchangeStats()
        e.pointee.stats.startMicros = nowMicros
        e.pointee.stats.pending = true
    }

    /// A final (or 101) status is queued for the client.
    @inline(__always)
    func noteStatusSent(
        _ c: UnsafeMutablePointer<Connection>, _ e: UnsafeMutablePointer<HTTPExchange>, _ status: UInt16
    ) {
        e.pointee.stats.status = status
        countResponseSent(c, status: status)
    }

    /// The request's response is written whole (an upstream's, or the proxy's own): its
    /// duration goes to the service's histogram, and the exchange is over. `closing`: the
    /// connection closes after it. Once per request (`ExchangeStats.pending`).
    func endExchange(_ slot: Int32, closing: Bool) {
        let e = exchange(slot)
        guard e.pointee.stats.pending else { return }
        e.pointee.stats.pending = false
        let c = table.pointer(slot)
        if e.pointee.stats.routed, e.pointee.stats.headAfter >= 0, let row = currentService(c) {
            let head = e.pointee.stats.startMicros + Int64(e.pointee.stats.headAfter)
            metrics.requestDuration.record(row, micros: nowMicros - head)
        }
        flushBytes(c)
        logExchange(slot, reason: closing ? c.pointee.stats.closeReason : .none)
        c.pointee.stats.recordIn = 0
        c.pointee.stats.recordOut = 0
    }

    /// What a close records, before the connection's state is released: the byte counts,
    /// the frontend gauge, the close reason.
    func closeObserved(_ slot: Int32) {
        let c = table.pointer(slot)
        if c.pointee.stats.closeReason == .none {
            // A tunnel that ended cleanly: the side that ended first.
            switch c.pointee.stats.firstEnd {
            case .downstream: c.pointee.stats.closeReason = .clientClosed
            case .upstream: c.pointee.stats.closeReason = .upstreamClosed
            case .none, .proxy: break
            }
        }
        flushBytes(c)
        if c.pointee.isHTTP {
            // A request still in flight ends with the connection.
            let e = exchange(slot)
            if e.pointee.stats.pending {
                e.pointee.stats.pending = false
                logExchange(slot, reason: c.pointee.stats.closeReason)
            }
        } else if c.pointee.tls == nil, c.pointee.listener >= 0,
            listeners[Int(c.pointee.listener)].key.protocol != .http
        {
            logTunnel(slot)
        }
        // A stream is a request of its session's connection, not a connection of its own.
        if c.pointee.h2 != .stream, let row = frontendRow(c) { metrics.frontends.add(row, .currentConnections, -1) }
        metrics.closeReasons[Int(c.pointee.stats.closeReason.rawValue)] &+= 1
    }
}
