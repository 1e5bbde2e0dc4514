import SluiceRouting
import SluiceSystem

/// Recording into the loop's metric tables (`LoopMetrics`) from the data path: an index
/// computation and an add, no lock, no allocation, no string. Rows are the current
/// snapshot's: a connection bound to an older snapshot reaches them by identity (its
/// listener's position, `currentService`, `currentEndpoint`), and an increment for a row that
/// left the table is dropped with it.
///
/// Gauges (`currentConnections`) move with the connection's own state, so that the
/// decrement lands where the increment is now, or nowhere when that row was dropped:
/// frontend, +1 at accept and -1 at close while the connection's listener position is valid;
/// backend and server, with `Connection.counted` (`countOpened` / `countClosed`: a tunnel
/// while established, an HTTP request from its attach to its end). A swap re-files the rows
/// and recounts the gauges from the live connections (`Loop.refileMetrics`,
/// `Loop.recountGauges`).
extension Loop {
    // MARK: - Rows

    /// The current table's row of the connection's listener; nil once it left.
    @inline(__always)
    func frontendRow(_ c: UnsafeMutablePointer<Connection>) -> Int? {
        let row = c.pointee.stats.frontendRow
        return row >= 0 ? Int(row) : nil
    }

    /// The current table's index of the connection's service (an index of its own snapshot);
    /// nil when it has none or the service left since the connection was routed.
    @inline(__always)
    func currentService(_ c: UnsafeMutablePointer<Connection>) -> Int? {
        let service = Int(c.pointee.service)
        guard service >= 0 else { return nil }
        if isCurrent(c) { return service }
        return retained[retainedIndex(c.pointee.snapshotEpoch)].toCurrent.service(service)
    }

    // MARK: - Counting

    @inline(__always)
    func countFrontend(_ c: UnsafeMutablePointer<Connection>, _ metric: FrontendMetric, _ n: Int = 1) {
        if let row = frontendRow(c) { metrics.frontends.add(row, metric, n) }
    }

    @inline(__always)
    func countBackend(_ c: UnsafeMutablePointer<Connection>, _ metric: BackendMetric, _ n: Int = 1) {
        if let row = currentService(c) { metrics.backends.add(row, metric, n) }
    }

    @inline(__always)
    func countServer(_ c: UnsafeMutablePointer<Connection>, _ metric: ServerMetric, _ n: Int = 1) {
        if let row = currentEndpoint(c) { metrics.servers.add(row, metric, n) }
    }

    /// The same event for the connection's service and its endpoint.
    @inline(__always)
    func countUpstream(_ c: UnsafeMutablePointer<Connection>, _ backend: BackendMetric, _ server: ServerMetric) {
        countBackend(c, backend)
        countServer(c, server)
    }

    /// A client was refused at listener `position` (the loop's share, or no descriptors).
    func countRefused(listener position: Int) {
        guard position < listeners.count else { return }
        metrics.frontends.add(Int(listeners[position].row), .refused)
    }

    /// The connection's tunnel is established, or its HTTP request goes to its endpoint:
    /// counted once per tunnel or request in `connections` (and `httpRequests` of the server).
    @inline(__always)
    func countSent(_ c: UnsafeMutablePointer<Connection>, http: Bool) {
        countUpstream(c, .connections, .connections)
        if http { countServer(c, .httpRequests) }
    }

    /// A final (or 101) status queued for the client.
    @inline(__always)
    func countResponseSent(_ c: UnsafeMutablePointer<Connection>, status: UInt16) {
        countFrontend(c, FrontendMetric.response(status))
    }

    /// A final (or 101) response head received from the upstream.
    @inline(__always)
    func countResponseReceived(_ c: UnsafeMutablePointer<Connection>, status: UInt16) {
        countBackend(c, BackendMetric.response(status))
        countServer(c, ServerMetric.response(status))
    }

    /// Adds the bytes the connection moved since the last call to its rows, and zeroes them.
    /// Called at an exchange's end, on close, before the connection changes endpoint, and at
    /// a scrape.
    @inline(__always)
    func flushBytes(_ c: UnsafeMutablePointer<Connection>) {
        let s = c.pointee.stats
        if s.clientIn | s.clientOut != 0 {
            if let row = frontendRow(c) {
                metrics.frontends.add(row, .bytesIn, Int(s.clientIn))
                metrics.frontends.add(row, .bytesOut, Int(s.clientOut))
            }
            c.pointee.stats.clientIn = 0
            c.pointee.stats.clientOut = 0
        }
        if s.upstreamOut | s.upstreamIn != 0 {
            if let row = currentService(c) {
                metrics.backends.add(row, .bytesIn, Int(s.upstreamOut))
                metrics.backends.add(row, .bytesOut, Int(s.upstreamIn))
            }
            if let row = currentEndpoint(c) {
                metrics.servers.add(row, .bytesIn, Int(s.upstreamOut))
                metrics.servers.add(row, .bytesOut, Int(s.upstreamIn))
            }
            c.pointee.stats.upstreamOut = 0
            c.pointee.stats.upstreamIn = 0
        }
    }

    /// Every live connection's bytes into the tables (a scrape: long tunnels are seen while
    /// they run). O(connections), on the loop thread, off the data path.
    func flushAllBytes() {
        var slot: Int32 = 0
        while slot < table.highWater {
            let c = table.pointer(slot)
            if c.pointee.isLive { flushBytes(c) }
            slot += 1
        }
    }

    // MARK: - Connects

    /// A connect to the connection's endpoint starts.
    @inline(__always)
    func noteConnectStart(_ c: UnsafeMutablePointer<Connection>) {
        c.pointee.stats.connectStartMicros = nowMicros
    }

    /// The connect succeeded: its duration goes to the service's histogram.
    @inline(__always)
    func noteConnected(_ c: UnsafeMutablePointer<Connection>) {
        let start = c.pointee.stats.connectStartMicros
        let duration = start >= 0 ? nowMicros - start : 0
        c.pointee.stats.connectMicros = Int32(clamping: duration)
        c.pointee.stats.connectedAfter = ConnectionStats.after(c.pointee.stats.acceptedMicros, nowMicros)
        if let row = currentService(c) { metrics.connectDuration.record(row, micros: duration) }
    }

    /// A connect to the connection's endpoint failed or timed out.
    func countConnectFailed(_ c: UnsafeMutablePointer<Connection>, timedOut: Bool) {
        countUpstream(c, .connectionErrors, .connectionErrors)
        if timedOut { countUpstream(c, .timeoutConnect, .timeoutConnect) }
    }

    // MARK: - Close reasons

    /// The reason for a read or write that failed with `error` on the client side
    /// (`client`) or the upstream side.
    static func failure(_ error: Errno, client: Bool) -> CloseReason {
        switch error {
        case .tooManyFiles, .tooManyFilesInSystem: return .overLimit
        case .protocolError: return client ? .tlsFailed : .badResponse
        default: return client ? .clientReset : .upstreamReset
        }
    }
}

extension Loop {
    // MARK: - Bytes

    /// `n` bytes read from the client.
    @inline(__always)
    func countClientIn(_ c: UnsafeMutablePointer<Connection>, _ n: Int32) {
        c.pointee.stats.clientIn &+= UInt32(truncatingIfNeeded: n)
        c.pointee.stats.recordIn &+= Int64(n)
        if c.pointee.stats.clientIn >= ConnectionStats.flushAt { flushBytes(c) }
    }

    /// `n` bytes written to the client (`spliced`: through a pipe; those are the service's
    /// spliced bytes too).
    @inline(__always)
    func countClientOut(_ c: UnsafeMutablePointer<Connection>, _ n: Int32, spliced: Bool = false) {
        c.pointee.stats.clientOut &+= UInt32(truncatingIfNeeded: n)
        c.pointee.stats.recordOut &+= Int64(n)
        if spliced { countBackend(c, .splicedBytes, Int(n)) }
        if c.pointee.stats.clientOut >= ConnectionStats.flushAt { flushBytes(c) }
    }

    /// `n` bytes written to the upstream (`spliced`: through a pipe).
    @inline(__always)
    func countUpstreamOut(_ c: UnsafeMutablePointer<Connection>, _ n: Int32, spliced: Bool = false) {
        c.pointee.stats.upstreamOut &+= UInt32(truncatingIfNeeded: n)
        if spliced { countBackend(c, .splicedBytes, Int(n)) }
        if c.pointee.stats.upstreamOut >= ConnectionStats.flushAt { flushBytes(c) }
    }

    /// `n` bytes read from the upstream.
    @inline(__always)
    func countUpstreamIn(_ c: UnsafeMutablePointer<Connection>, _ n: Int32) {
        c.pointee.stats.upstreamIn &+= UInt32(truncatingIfNeeded: n)
        if c.pointee.stats.upstreamIn >= ConnectionStats.flushAt { flushBytes(c) }
    }
}
