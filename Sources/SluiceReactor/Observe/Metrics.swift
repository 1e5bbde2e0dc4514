import SluiceRouting

// Per-loop metrics: plain integers in flat tables, one row per listener (frontend), service
// (backend) or endpoint (server) of the loop's current snapshot, summed across loops when the
// admin listener is scraped. Recording is an index computation and an add: no lock, no
// allocation, no string. A swap re-files rows by identity (`SnapshotRemap`); the rows of a
// service or endpoint that left are dropped with it, so their series disappear.

/// What a frontend (listener) counts; the row is the listener's index in the snapshot.
public enum FrontendMetric: Int, CaseIterable, Sendable {
    case connections
    case currentConnections
    /// Refused at the loop's connection share, or for want of descriptors.
    case refused
    case httpRequests
    case responses1xx, responses2xx, responses3xx, responses4xx, responses5xx, responsesOther
    /// Bytes from clients and to clients.
    case bytesIn
    case bytesOut
    /// Malformed requests (400, 413, 414, 431, 501) and bad PROXY headers.
    case requestErrors
    /// Requests no route matched (the default backend answered).
    case noRoute
    case timeoutRequestHead
    case timeoutRequestBody
    case timeoutClient
    case tlsHandshakes
    case tlsResumptions
    case tlsFailures
}

/// What a backend (service) counts; the row is the service's index in the snapshot.
public enum BackendMetric: Int, CaseIterable, Sendable {
    /// Connections (TCP, passthrough) or requests (HTTP) sent to the service.
    case connections
    case currentConnections
    case httpRequests
    case responses1xx, responses2xx, responses3xx, responses4xx, responses5xx, responsesOther
    /// Bytes to the service and from it.
    case bytesIn
    case bytesOut
    /// Bytes moved through splice, not copied (either direction).
    case splicedBytes
    case connectionErrors
    case retries
    case timeoutConnect
    case timeoutServer
    case timeoutTunnel
    /// Requests sent on an idle upstream connection (parked or pooled), no connect.
    case reuses
    /// No usable endpoint (503).
    case noEndpoint
    /// The service's answer could not be forwarded (502: bad head, reset before a response).
    case responseErrors
}

/// What a server (endpoint) counts; the row is the endpoint's index in the snapshot.
public enum ServerMetric: Int, CaseIterable, Sendable {
    case connections
    case currentConnections
    case httpRequests
    case responses1xx, responses2xx, responses3xx, responses4xx, responses5xx, responsesOther
    case bytesIn
    case bytesOut
    case connectionErrors
    case timeoutConnect
    case reuses
}

/// A metric enum whose response counters, one per status class (1xx … 5xx, other), are six
/// consecutive cases starting at `responses1xx`.
public protocol ResponseClassMetric: RawRepresentable, CaseIterable where RawValue == Int {
    static var responses1xx: Self { get }
}

extension ResponseClassMetric {
    /// 0 … 4 for 1xx … 5xx, 5 for any other status.
    @inline(__always)
    public static func statusClass(_ status: UInt16) -> Int {
        let c = Int(status / 100)
        return c >= 1 && c <= 5 ? c - 1 : 5
    }

    /// The counter of `status`'s class.
    @inline(__always)
    public static func response(_ status: UInt16) -> Self {
        // SAFETY of the unwrap: the six response cases are consecutive (checked in tests).
        Self(rawValue: responses1xx.rawValue &+ statusClass(status))!
    }
}

extension FrontendMetric: ResponseClassMetric {}
extension BackendMetric: ResponseClassMetric {}
extension ServerMetric: ResponseClassMetric {}

/// Rows of counters, one per frontend, backend or server, flat in one array.
public struct MetricTable<Metric: RawRepresentable & CaseIterable>: Sendable, Equatable
where Metric.RawValue == Int {
    public static var width: Int { Metric.allCases.count }
    public private(set) var rows: Int
    public private(set) var values: [Int]

    public init(rows: Int) {
        self.rows = rows
        values = ZeroPages.zeros(rows * Self.width)
    }

    @inline(__always)
    public subscript(row: Int, metric: Metric) -> Int {
        get { values[row &* Self.width &+ metric.rawValue] }
        set { values[row &* Self.width &+ metric.rawValue] = newValue }
    }

    @inline(__always)
    public mutating func add(_ row: Int, _ metric: Metric, _ n: Int = 1) {
        values[row &* Self.width &+ metric.rawValue] &+= n
    }

    /// The table for the next snapshot: row `i` moves to `map[i]` (-1: dropped); `rows` new
    /// rows. In place (`RowRemap`) when the kept rows keep their order.
    public mutating func remap(_ map: [Int32], rows newRows: Int) {
        guard RowRemap.apply(map, rows: rows, newRows: newRows, to: &values, width: Self.width) else {
            self = remapped(map, rows: newRows)
            return
        }
        rows = newRows
    }

    /// The table for the next snapshot: row `i` moves to `map[i]` (-1: dropped); `rows` new rows.
    public func remapped(_ map: [Int32], rows newRows: Int) -> MetricTable {
        var next = MetricTable(rows: newRows)
        for old in 0..<min(rows, map.count) {
            let new = Int(map[old])
            guard new >= 0 && new < newRows else { continue }
            for k in 0..<Self.width where values[old * Self.width + k] != 0 {
                next.values[new * Self.width + k] &+= values[old * Self.width + k]
            }
        }
        return next
    }

    /// Row `row`'s response counters, 1xx … 5xx then other.
    public func responses(_ row: Int) -> [Int] where Metric: ResponseClassMetric {
        let first = row * Self.width + Metric.responses1xx.rawValue
        return Array(values[first..<first + 6])
    }

    /// Adds `other` row by row (same snapshot). Cells that are zero in `other` are not written.
    public mutating func add(_ other: MetricTable) {
        precondition(other.rows == rows)
        for i in values.indices where other.values[i] != 0 { values[i] &+= other.values[i] }
    }
}

/// The OpenTelemetry HTTP duration bucket bounds (seconds), used for every histogram here.
public enum LatencyBuckets {
    public static let boundsSeconds: [Double] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    ]
    /// The same bounds in microseconds.
    public static let boundsMicros: [Int64] = boundsSeconds.map { Int64(($0 * 1_000_000).rounded()) }
    /// Buckets per series: one per bound plus +Inf.
    public static let count = boundsSeconds.count + 1

    /// The bucket (not cumulative) that `micros` falls into: the first bound ≥ it, else +Inf.
    @inline(__always)
    public static func bucket(_ micros: Int64) -> Int {
        var i = 0
        while i < boundsMicros.count && micros > boundsMicros[i] { i &+= 1 }
        return i
    }
}

/// Histograms, one series per row, with fixed buckets (`LatencyBuckets`): per bucket counts
/// (not cumulative), the sum in microseconds and the count.
public struct HistogramTable: Sendable, Equatable {
    public private(set) var rows: Int
    /// `rows × LatencyBuckets.count` bucket counts.
    public private(set) var buckets: [UInt64]
    public private(set) var sumMicros: [UInt64]
    public private(set) var counts: [UInt64]

    public init(rows: Int) {
        self.rows = rows
        buckets = ZeroPages.zeros(rows * LatencyBuckets.count)
        sumMicros = ZeroPages.zeros(rows)
        counts = ZeroPages.zeros(rows)
    }

    @inline(__always)
    public mutating func record(_ row: Int, micros: Int64) {
        let value = max(micros, 0)
        buckets[row &* LatencyBuckets.count &+ LatencyBuckets.bucket(value)] &+= 1
        sumMicros[row] &+= UInt64(value)
        counts[row] &+= 1
    }

    /// Bucket `k` of `row` (not cumulative).
    public func bucket(_ row: Int, _ k: Int) -> UInt64 { buckets[row * LatencyBuckets.count + k] }

    /// `remapped`, in place (`RowRemap`) when the kept rows keep their order.
    public mutating func remap(_ map: [Int32], rows newRows: Int) {
        guard RowRemap.isOrdered(map, rows: rows, newRows: newRows) else {
            self = remapped(map, rows: newRows)
            return
        }
        _ = RowRemap.apply(map, rows: rows, newRows: newRows, to: &buckets, width: LatencyBuckets.count)
        _ = RowRemap.apply(map, rows: rows, newRows: newRows, to: &sumMicros, width: 1)
        _ = RowRemap.apply(map, rows: rows, newRows: newRows, to: &counts, width: 1)
        rows = newRows
    }

    public func remapped(_ map: [Int32], rows newRows: Int) -> HistogramTable {
        var next = HistogramTable(rows: newRows)
        for old in 0..<min(rows, map.count) {
            let new = Int(map[old])
            guard new >= 0 && new < newRows else { continue }
            guard counts[old] != 0 || sumMicros[old] != 0 else { continue }
            for k in 0..<LatencyBuckets.count {
                next.buckets[new * LatencyBuckets.count + k] &+= buckets[old * LatencyBuckets.count + k]
            }
            next.sumMicros[new] &+= sumMicros[old]
            next.counts[new] &+= counts[old]
        }
        return next
    }

    public mutating func add(_ other: HistogramTable) {
        precondition(other.rows == rows)
        for i in buckets.indices where other.buckets[i] != 0 { buckets[i] &+= other.buckets[i] }
        for i in counts.indices where other.counts[i] != 0 || other.sumMicros[i] != 0 {
            sumMicros[i] &+= other.sumMicros[i]
            counts[i] &+= other.counts[i]
        }
    }
}

/// Why a connection closed, and on which side the cause was. Stored per connection, counted
/// per reason, written in access-log records.
public enum CloseReason: UInt8, CaseIterable, Sendable, BitwiseCopyable {
    /// Still open, or closed for no recorded reason.
    case none
    /// The client closed (between requests, or after its response).
    case clientClosed
    /// The upstream closed (close-delimited response, tunnel end).
    case upstreamClosed
    /// This side ended it after a complete exchange (Connection: close, drain).
    case done
    case clientReset
    case upstreamReset
    case clientTimeout
    case requestHeadTimeout
    case requestBodyTimeout
    case connectTimeout
    case serverTimeout
    case tunnelTimeout
    case connectFailed
    case noEndpoint
    case noRoute
    case badRequest
    case badResponse
    case tlsFailed
    case badPreface
    case overLimit
    case draining
    case listenerRemoved

    public enum Side: UInt8, Sendable, BitwiseCopyable { case none, downstream, upstream, proxy }

    public var side: Side {
        switch self {
        case .none: .none
        case .clientClosed, .clientReset, .clientTimeout, .requestHeadTimeout, .requestBodyTimeout, .badRequest,
            .tlsFailed, .badPreface:
            .downstream
        case .upstreamClosed, .upstreamReset, .connectTimeout, .serverTimeout, .connectFailed, .badResponse:
            .upstream
        case .done, .tunnelTimeout, .noEndpoint, .noRoute, .overLimit, .draining, .listenerRemoved: .proxy
        }
    }

    /// snake_case, for metrics labels and log records.
    public var name: String { staticName.description }

    /// `name` without a `String` (the log writer copies its bytes).
    public var staticName: StaticString {
        switch self {
        case .none: "none"
        case .clientClosed: "client_closed"
        case .upstreamClosed: "upstream_closed"
        case .done: "done"
        case .clientReset: "client_reset"
        case .upstreamReset: "upstream_reset"
        case .clientTimeout: "client_timeout"
        case .requestHeadTimeout: "request_head_timeout"
        case .requestBodyTimeout: "request_body_timeout"
        case .connectTimeout: "connect_timeout"
        case .serverTimeout: "server_timeout"
        case .tunnelTimeout: "tunnel_timeout"
        case .connectFailed: "connect_failed"
        case .noEndpoint: "no_endpoint"
        case .noRoute: "no_route"
        case .badRequest: "bad_request"
        case .badResponse: "bad_response"
        case .tlsFailed: "tls_failed"
        case .badPreface: "bad_preface"
        case .overLimit: "over_limit"
        case .draining: "draining"
        case .listenerRemoved: "listener_removed"
        }
    }
}

/// One loop's metrics at a scrape, against the snapshot the loop runs (rows are that
/// snapshot's indices). Made on the loop thread on request (`Reactor.collect`), never on the
/// data path.
public struct LoopMetricsSample: Sendable {
    public var loop: Int
    public var snapshot: RoutingSnapshot
    public var frontends: MetricTable<FrontendMetric>
    public var backends: MetricTable<BackendMetric>
    public var servers: MetricTable<ServerMetric>
    /// Per service: request duration (head received → response end) and upstream connect.
    public var requestDuration: HistogramTable
    public var connectDuration: HistogramTable
    /// Per listener: TLS handshakes terminated here.
    public var tlsHandshakeDuration: HistogramTable
    /// Per endpoint: marked down by this loop's picker.
    public var endpointDown: [Bool]
    /// Per `CloseReason` raw value.
    public var closeReasons: [Int]
    public var counters: LoopCounters
    public var liveConnections: Int
    /// Access-log records this loop dropped because its ring was full.
    public var accessLogDropped: Int

    public init(
        loop: Int, snapshot: RoutingSnapshot, frontends: MetricTable<FrontendMetric>,
        backends: MetricTable<BackendMetric>, servers: MetricTable<ServerMetric>, requestDuration: HistogramTable,
        connectDuration: HistogramTable, tlsHandshakeDuration: HistogramTable, endpointDown: [Bool],
        closeReasons: [Int], counters: LoopCounters, liveConnections: Int, accessLogDropped: Int
    ) {
        self.loop = loop
        self.snapshot = snapshot
        self.frontends = frontends
        self.backends = backends
        self.servers = servers
        self.requestDuration = requestDuration
        self.connectDuration = connectDuration
        self.tlsHandshakeDuration = tlsHandshakeDuration
        self.endpointDown = endpointDown
        self.closeReasons = closeReasons
        self.counters = counters
        self.liveConnections = liveConnections
        self.accessLogDropped = accessLogDropped
    }

    /// An empty sample for `snapshot` (tests and renderers).
    public static func empty(loop: Int = 0, snapshot: RoutingSnapshot) -> LoopMetricsSample {
        LoopMetricsSample(
            loop: loop, snapshot: snapshot, frontends: MetricTable(rows: snapshot.listeners.count),
            backends: MetricTable(rows: snapshot.services.count), servers: MetricTable(rows: snapshot.endpoints.count),
            requestDuration: HistogramTable(rows: snapshot.services.count),
            connectDuration: HistogramTable(rows: snapshot.services.count),
            tlsHandshakeDuration: HistogramTable(rows: snapshot.listeners.count),
            endpointDown: Array(repeating: false, count: snapshot.endpoints.count),
            closeReasons: Array(repeating: 0, count: CloseReason.allCases.count), counters: LoopCounters(),
            liveConnections: 0, accessLogDropped: 0)
    }
}

/// Moves the rows of a flat table (`width` values a row) to their places in the next
/// snapshot, in place, when the map keeps the kept rows in order (true of every swap whose
/// services and endpoints keep their relative order, as both table sources build them):
/// nothing moves for an identity map; otherwise runs of rows with the same shift move with
/// one overlapping copy each (rows shifting up from the end, rows shifting down from the
/// start, so no row is overwritten before it moved), and the rows no old row lands on are
/// zeroed. O(rows) checks plus the bytes that move; no allocation unless the table grows.
enum RowRemap {
    /// Every kept row maps inside `newRows`, in increasing order.
    static func isOrdered(_ map: [Int32], rows: Int, newRows: Int) -> Bool {
        var last = -1
        for old in 0..<min(rows, map.count) {
            let new = Int(map[old])
            if new < 0 { continue }
            if new >= newRows || new <= last { return false }
            last = new
        }
        return true
    }

    /// Remaps `values` in place; false, changing nothing, when the map is not ordered.
    static func apply<T: FixedWidthInteger>(
        _ map: [Int32], rows: Int, newRows: Int, to values: inout [T], width: Int
    ) -> Bool {
        let count = min(rows, map.count)
        var identity = count == rows && rows == newRows
        var last = -1
        for old in 0..<count {
            let new = Int(map[old])
            if new != old { identity = false }
            if new < 0 { continue }
            if new >= newRows || new <= last { return false }
            last = new
        }
        if identity { return true }
        let needed = newRows * width
        if newRows > rows && values.capacity >= needed {
            values.append(contentsOf: repeatElement(0, count: needed - values.count))
        } else if newRows > rows {
            // Grown into a fresh zero table with room for more rows (not appended: moving into
            // a reallocation would write every page).
            var grown: [T] = ZeroPages.zeros(needed, capacity: needed + needed / 8)
            values.withUnsafeBytes { old in
                grown.withUnsafeMutableBytes { new in
                    guard let from = old.baseAddress, let to = new.baseAddress else { return }
                    // SAFETY: `new` holds at least `old.count` bytes (newRows > rows).
                    ZeroPages.move(to, from: from, count: old.count)
                }
            }
            values = grown
        }
        values.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let stride = MemoryLayout<T>.stride * width
            // SAFETY: every row index below is < max(rows, newRows), the buffer's row count;
            // ZeroPages.move allows overlapping ranges.
            func move(_ first: Int, _ last: Int, by shift: Int) {
                ZeroPages.move(
                    UnsafeMutableRawPointer(base + (first + shift) * width), from: base + first * width,
                    count: (last - first + 1) * stride)
            }
            var old = count - 1
            while old >= 0 {
                let shift = Int(map[old]) - old
                guard map[old] >= 0, shift > 0 else {
                    old -= 1
                    continue
                }
                var first = old
                while first > 0 && map[first - 1] >= 0 && Int(map[first - 1]) - (first - 1) == shift { first -= 1 }
                move(first, old, by: shift)
                old = first - 1
            }
            old = 0
            while old < count {
                let shift = Int(map[old]) - old
                guard map[old] >= 0, shift < 0 else {
                    old += 1
                    continue
                }
                var end = old
                while end + 1 < count && map[end + 1] >= 0 && Int(map[end + 1]) - (end + 1) == shift { end += 1 }
                move(old, end, by: shift)
                old = end + 1
            }
            // Rows no old row landed on start at zero.
            var next = 0
            for old in 0..<count where map[old] >= 0 {
                let new = Int(map[old])
                if next < new {
                    ZeroPages.zero(UnsafeMutableRawPointer(base + next * width), count: (new - next) * stride)
                }
                next = new + 1
            }
            if next < newRows {
                ZeroPages.zero(UnsafeMutableRawPointer(base + next * width), count: (newRows - next) * stride)
            }
        }
        if newRows < rows { values.removeLast((rows - newRows) * width) }
        return true
    }
}
