/// Chooses an endpoint for a new connection. One picker per loop, rebuilt when a new snapshot
/// arrives (as Envoy resets its round-robin cursor when the endpoint set changes).
///
/// State table (per service / per endpoint, all owned by one loop thread):
///
/// | state        | meaning                                                        |
/// | ------------ | -------------------------------------------------------------- |
/// | `cursor[s]`  | next round-robin position within service s (random start)      |
/// | `active[e]`  | connections this loop holds open to endpoint e (leastconn)     |
/// | `downUntil[e]` | monotonic ms before which endpoint e is passed over (0: up)  |
///
/// Invariants: `pick` returns an index inside the service's range or nil when the service
/// has no endpoint; endpoints marked down are passed over unless every endpoint is down, in
/// which case they are used anyway (better a try than a certain refusal). No allocation
/// after `init`.
public struct EndpointPicker: Sendable {
    public let generation: UInt64
    private var cursor: [Int]
    private var active: [Int32]
    private var downUntil: [Int64]
    private let services: [Service]

    /// `seed` makes the random start of each cursor; loops pass different seeds so they
    /// do not all start on endpoint 0.
    public init(snapshot: RoutingSnapshot, seed: UInt64) {
        generation = snapshot.generation
        services = snapshot.services
        var state = seed
        cursor = snapshot.services.map { service in
            state = SocketAddress.mix(state)
            return service.endpoints.isEmpty ? 0 : Int(state % UInt64(service.endpoints.count))
        }
        // Zero pages (`ZeroPages`): the endpoints nothing was counted or marked for cost no
        // resident memory. 0 is "up", as `now` (monotonic ms) is never below it.
        active = ZeroPages.zeros(snapshot.endpoints.count)
        downUntil = ZeroPages.zeros(snapshot.endpoints.count)
    }

    /// A picker for `snapshot` that keeps what `previous` knew about the endpoints and services
    /// that stayed (`remap` maps `previous`'s indices into `snapshot`'s): passive down-marks and
    /// round-robin positions. Active counts start at zero: the loop counts its open connections
    /// again by identity. Control-path only (allocates).
    public init(snapshot: RoutingSnapshot, seed: UInt64, carrying previous: EndpointPicker, remap: SnapshotRemap) {
        self.init(snapshot: snapshot, seed: seed)
        precondition(remap.from == previous.generation && remap.to == snapshot.generation)
        for (old, new) in remap.endpoints.enumerated() where new >= 0 && previous.downUntil[old] != 0 {
            downUntil[Int(new)] = previous.downUntil[old]
        }
        for (old, new) in remap.services.enumerated() where new >= 0 {
            let count = snapshot.services[Int(new)].endpoints.count
            if count > 0 { cursor[Int(new)] = previous.cursor[old] % count }
        }
    }

    /// The endpoint for a new connection to `service`. `clientHash` is used by `source`.
    public mutating func pick(service: Int, clientHash: UInt64, now: Int64) -> Int? {
        let range = services[service].endpoints
        let count = range.count
        guard count > 0 else { return nil }
        switch services[service].algorithm {
        case .roundrobin, .cookie:
            // `cookie`: a request without a valid cookie is new to the service; spread those.
            for _ in 0..<count {
                let index = range.lowerBound + cursor[service]
                cursor[service] = cursor[service] + 1 == count ? 0 : cursor[service] + 1
                if downUntil[index] <= now { return index }
            }
            return range.lowerBound + cursor[service]
        case .source:
            let start = Int(clientHash % UInt64(count))
            for step in 0..<count {
                let index = range.lowerBound + (start + step) % count
                if downUntil[index] <= now { return index }
            }
            return range.lowerBound + start
        case .leastconn:
            // Scan from the cursor so that ties rotate instead of piling onto the first.
            var best = -1
            var bestActive = Int32.max
            var bestDown = -1
            let start = cursor[service]
            cursor[service] = cursor[service] + 1 == count ? 0 : cursor[service] + 1
            for step in 0..<count {
                let index = range.lowerBound + (start + step) % count
                if downUntil[index] > now {
                    if bestDown < 0 { bestDown = index }
                    continue
                }
                if active[index] < bestActive {
                    best = index
                    bestActive = active[index]
                }
            }
            return best >= 0 ? best : bestDown
        }
    }

    /// The endpoint to try after `failed` refused or timed out: the next one in the service,
    /// so successive tries reach distinct endpoints. Nil when the service has only one.
    public func next(after failed: Int, service: Int, now: Int64) -> Int? {
        let range = services[service].endpoints
        guard range.count > 1 else { return nil }
        var index = failed
        for _ in 1..<range.count {
            index = index + 1 == range.upperBound ? range.lowerBound : index + 1
            if downUntil[index] <= now { return index }
        }
        // Every other endpoint is marked down: still try the next one.
        return failed + 1 == range.upperBound ? range.lowerBound : failed + 1
    }

    /// A connection to `endpoint` opened (counts for leastconn).
    public mutating func opened(_ endpoint: Int) { active[endpoint] += 1 }

    /// A connection to `endpoint` closed. Callers pass only indices of this generation.
    public mutating func closed(_ endpoint: Int) { if active[endpoint] > 0 { active[endpoint] -= 1 } }

    /// Connect failed: pass the endpoint over until `until`.
    public mutating func markDown(_ endpoint: Int, until: Int64) { downUntil[endpoint] = until }

    /// Connect succeeded: the endpoint is usable again at once.
    public mutating func markUp(_ endpoint: Int) { if downUntil[endpoint] != 0 { downUntil[endpoint] = 0 } }

    public func activeCount(_ endpoint: Int) -> Int32 { active[endpoint] }
    public func isDown(_ endpoint: Int, now: Int64) -> Bool { downUntil[endpoint] > now }
}
