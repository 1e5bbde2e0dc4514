import SluiceReactor
import SluiceRouting

/// Every loop's metrics summed onto one snapshot: what a scrape renders.
///
/// Loops swap tables between batches, so a scrape taken during a swap holds samples of two
/// (or more) generations. Rows are then matched by identity onto the newest snapshot: a
/// listener by its name, a service by its name, an endpoint by its service's name and its
/// address (`SnapshotRemap`). Rows whose identity is not in the newest snapshot are dropped:
/// what left the table leaves the metrics with it.
///
/// Built on the admin worker thread from `Reactor.collect`'s samples; never on a loop.
public struct MetricsAggregate: Sendable {
    /// The newest snapshot among the samples: every row below is one of its indices.
    public let snapshot: RoutingSnapshot
    public var frontends: MetricTable<FrontendMetric>
    public var backends: MetricTable<BackendMetric>
    public var servers: MetricTable<ServerMetric>
    public var requestDuration: HistogramTable
    public var connectDuration: HistogramTable
    public var tlsHandshakeDuration: HistogramTable
    /// Per endpoint: some loop passes it over after a failure (its picker's down mark).
    public var endpointDown: [Bool]
    /// Per `CloseReason` raw value.
    public var closeReasons: [Int]
    public var counters: LoopCounters
    public var liveConnections: Int
    public var accessLogDropped: Int
    /// How many samples (loops) were summed.
    public var loops: Int

    /// Sums `samples` (one per loop, any generations) onto the newest snapshot among them;
    /// nil when there is none.
    public init?(_ samples: [LoopMetricsSample]) {
        guard let newest = samples.max(by: { $0.snapshot.generation < $1.snapshot.generation })?.snapshot else {
            return nil
        }
        snapshot = newest
        var total = LoopMetricsSample.empty(snapshot: newest)
        var remaps: [UInt64: (SnapshotRemap, [Int32])] = [:]
        var counters = LoopCounters()
        for sample in samples {
            counters = counters + sample.counters
            total.liveConnections += sample.liveConnections
            total.accessLogDropped += sample.accessLogDropped
            for i in 0..<min(total.closeReasons.count, sample.closeReasons.count) {
                total.closeReasons[i] += sample.closeReasons[i]
            }
            if sample.snapshot === newest {
                Self.add(sample, into: &total)
                continue
            }
            let key = sample.snapshot.generation
            let maps =
                remaps[key]
                ?? (
                    SnapshotRemap(from: sample.snapshot, to: newest),
                    Self.listenerMap(from: sample.snapshot, to: newest)
                )
            remaps[key] = maps
            Self.add(Self.remapped(sample, onto: newest, maps.0, listeners: maps.1), into: &total)
        }
        frontends = total.frontends
        backends = total.backends
        servers = total.servers
        requestDuration = total.requestDuration
        connectDuration = total.connectDuration
        tlsHandshakeDuration = total.tlsHandshakeDuration
        endpointDown = total.endpointDown
        closeReasons = total.closeReasons
        self.counters = counters
        liveConnections = total.liveConnections
        accessLogDropped = total.accessLogDropped
        loops = samples.count
    }

    /// Old listener index → new index by name, or -1.
    static func listenerMap(from old: RoutingSnapshot, to new: RoutingSnapshot) -> [Int32] {
        var byName: [String: Int] = [:]
        for (index, listener) in new.listeners.enumerated() where byName[listener.name] == nil {
            byName[listener.name] = index
        }
        return old.listeners.map { listener in byName[listener.name].map(Int32.init) ?? -1 }
    }

    /// `sample`'s tables with their rows moved onto `new`'s indices.
    static func remapped(
        _ sample: LoopMetricsSample, onto new: RoutingSnapshot, _ remap: SnapshotRemap, listeners: [Int32]
    ) -> LoopMetricsSample {
        var down = Array(repeating: false, count: new.endpoints.count)
        for (old, isDown) in sample.endpointDown.enumerated() where isDown {
            if let index = remap.endpoint(old) { down[index] = true }
        }
        return LoopMetricsSample(
            loop: sample.loop, snapshot: new,
            frontends: sample.frontends.remapped(listeners, rows: new.listeners.count),
            backends: sample.backends.remapped(remap.services, rows: new.services.count),
            servers: sample.servers.remapped(remap.endpoints, rows: new.endpoints.count),
            requestDuration: sample.requestDuration.remapped(remap.services, rows: new.services.count),
            connectDuration: sample.connectDuration.remapped(remap.services, rows: new.services.count),
            tlsHandshakeDuration: sample.tlsHandshakeDuration.remapped(listeners, rows: new.listeners.count),
            endpointDown: down, closeReasons: sample.closeReasons, counters: sample.counters,
            liveConnections: sample.liveConnections, accessLogDropped: sample.accessLogDropped)
    }

    /// Adds the tables of `sample` (rows of `total`'s snapshot) into `total`; a table whose
    /// row count does not match (a sample not made for this snapshot) is left out.
    static func add(_ sample: LoopMetricsSample, into total: inout LoopMetricsSample) {
        if sample.frontends.rows == total.frontends.rows { total.frontends.add(sample.frontends) }
        if sample.backends.rows == total.backends.rows { total.backends.add(sample.backends) }
        if sample.servers.rows == total.servers.rows { total.servers.add(sample.servers) }
        if sample.requestDuration.rows == total.requestDuration.rows {
            total.requestDuration.add(sample.requestDuration)
        }
        if sample.connectDuration.rows == total.connectDuration.rows {
            total.connectDuration.add(sample.connectDuration)
        }
        if sample.tlsHandshakeDuration.rows == total.tlsHandshakeDuration.rows {
            total.tlsHandshakeDuration.add(sample.tlsHandshakeDuration)
        }
        for i in 0..<min(sample.endpointDown.count, total.endpointDown.count) where sample.endpointDown[i] {
            total.endpointDown[i] = true
        }
    }

    /// Endpoints of service `index` that no loop passes over.
    public func activeEndpoints(ofService index: Int) -> Int {
        var n = 0
        for e in snapshot.services[index].endpoints where !endpointDown[e] { n += 1 }
        return n
    }
}
