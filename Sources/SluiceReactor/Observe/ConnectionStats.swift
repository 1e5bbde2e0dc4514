/// What one connection records for the metrics and the access log: bytes moved since they
/// were last added to the loop's tables, the client bytes of the record being built, the
/// times of its milestones (monotonic µs of the loop's batch) and why it closed. Plain
/// stores into the connection's slot: no lock, no allocation, no string. Kept small (72
/// bytes): every idle connection carries it.
///
/// | field                 | set when                                    | read when                  |
/// | --------------------- | ------------------------------------------- | -------------------------- |
/// | `clientIn`…`upstreamIn` | every read and write (added to)           | `Loop.flushBytes` (zeroed) |
/// | `recordIn/Out`        | every client read and write (added to)      | a record is made (http: zeroed) |
/// | `acceptedMicros`      | accept                                      | tunnel records, TLS histogram |
/// | `connectStartMicros`  | a connect starts                            | it succeeds                |
/// | `connectMicros`       | connected (its duration); -1 reused or none | records                    |
/// | `routedAfter`         | tcp/passthrough: routed (µs after accept)   | tunnel records             |
/// | `connectedAfter`      | connected (µs after accept)                 | tunnel records             |
/// | `firstUpstreamAfter`  | tunnel: first byte from the upstream        | tunnel records             |
/// | `closeReason`         | the first close site that knows the cause   | close: counted, recorded   |
/// | `firstEnd`            | tunnel: the first end of stream, its side   | a tunnel that ends cleanly |
///
/// Invariants: the pending byte counts are in no table yet (flushed at an exchange's end, on
/// close, before the connection changes endpoint, at a scrape, and whenever one reaches
/// `flushAt`, so they cannot overflow); `closeReason` once set is not overwritten (the first
/// cause wins). Offsets are µs after `acceptedMicros`, saturated, -1 for "not yet".
struct ConnectionStats: BitwiseCopyable {
    /// Pending bytes from and to the client, to and from the upstream.
    var clientIn: UInt32 = 0
    var clientOut: UInt32 = 0
    var upstreamOut: UInt32 = 0
    var upstreamIn: UInt32 = 0
    var recordIn: Int64 = 0
    var recordOut: Int64 = 0
    var acceptedMicros: Int64 = 0
    var connectStartMicros: Int64 = -1
    var connectMicros: Int32 = -1
    var routedAfter: Int32 = -1
    var connectedAfter: Int32 = -1
    var firstUpstreamAfter: Int32 = -1
    /// The row of the connection's listener in the current frontend table (with
    /// `Connection.listener`, kept by swaps); -1 once the listener left.
    var frontendRow: Int32 = -1
    var closeReason: CloseReason = .none
    var firstEnd: CloseReason.Side = .none
    /// This connection's records are made (`Loop.logs`): its listener logged when it was
    /// accepted and the loop has an access-log ring; `Loop.logState` holds its slot's side
    /// state.
    var logged = false

    /// A pending count this large is added to the tables at once.
    static let flushAt: UInt32 = 1 << 30

    init() {}

    /// Sets the reason unless one is set already: the first cause wins.
    @inline(__always)
    mutating func note(_ reason: CloseReason) {
        if closeReason == .none { closeReason = reason }
    }

    /// `now` as µs after `base`, saturated to `Int32`.
    @inline(__always)
    static func after(_ base: Int64, _ now: Int64) -> Int32 { Int32(clamping: now &- base) }
}

/// What an HTTP exchange records for the request in flight (`HTTPExchange.stats`).
///
/// | field            | set when                                                  |
/// | ---------------- | --------------------------------------------------------- |
/// | `startMicros`    | the request's first byte is read                          |
/// | `headAfter`      | its head is complete (µs after `startMicros`)             |
/// | `sentAfter`      | its head is queued for the upstream                       |
/// | `responseAfter`  | the final (or 101) response head is received              |
/// | `status`         | a final (or 101) status is queued for the client          |
/// | `host`, `target`, `requestID` | the head is parsed: where they are in it (from `HTTPExchange.headStart`) |
/// | `generatedID`    | a request id was made for it: the counter it was made from |
/// | `pending`        | from the first byte until the exchange ends               |
///
/// Invariant: `pending` is true exactly while a request has begun and its exchange has not
/// ended; the exchange ends once (`Loop.endExchange`).
struct ExchangeStats: BitwiseCopyable {
    var startMicros: Int64 = 0
    var headAfter: Int32 = -1
    var sentAfter: Int32 = -1
    var responseAfter: Int32 = -1
    var status: UInt16 = 0
    var host = HeadSlice()
    var target = HeadSlice()
    var requestID = HeadSlice()
    /// 0: none (or passed through); else the loop's request counter value the id was made of.
    var generatedID: UInt64 = 0
    var pending = false
    /// The head was parsed (method, host and target are this request's).
    var parsed = false
    /// Counted as sent to its backend and server.
    var sent = false
    /// Counted in its backend's `httpRequests` (it has a service).
    var routed = false
    /// Given an endpoint (`Connection.endpoint` is its).
    var attached = false
    /// The request went to its endpoint as an HTTP/2 stream.
    var upstreamH2 = false

    init() {}
}

/// Bytes of a request head, by offset from the head's start in its buffer.
struct HeadSlice: BitwiseCopyable {
    var offset: UInt16 = 0
    var count: UInt16 = 0
}
