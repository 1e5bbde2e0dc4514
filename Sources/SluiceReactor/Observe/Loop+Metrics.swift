import SluiceRouting
import SluiceSystem

/// Where a scrape's samples are put: one slot per loop, each written by its loop thread
/// before it counts `done` down, read by the caller after the latch.
final class MetricsCollection: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): slot `i` is written only by loop `i`, before
    // `done.countDown()`; the caller reads the slots only after `done.wait` returned true.
    var samples: [LoopMetricsSample?]
    let done: CountdownLatch

    init(loops: Int) {
        samples = Array(repeating: nil, count: loops)
        done = CountdownLatch(count: loops)
    }
}

/// The loop's metric tables, rows by the current snapshot's indices (`Observe/Metrics.swift`).
struct LoopMetrics {
    var frontends: MetricTable<FrontendMetric>
    var backends: MetricTable<BackendMetric>
    var servers: MetricTable<ServerMetric>
    var requestDuration: HistogramTable
    var connectDuration: HistogramTable
    var tlsHandshakeDuration: HistogramTable
    var closeReasons: [Int]

    init(snapshot: RoutingSnapshot) {
        frontends = MetricTable(rows: snapshot.listeners.count)
        backends = MetricTable(rows: snapshot.services.count)
        servers = MetricTable(rows: snapshot.endpoints.count)
        requestDuration = HistogramTable(rows: snapshot.services.count)
        connectDuration = HistogramTable(rows: snapshot.services.count)
        tlsHandshakeDuration = HistogramTable(rows: snapshot.listeners.count)
        closeReasons = Array(repeating: 0, count: CloseReason.allCases.count)
    }
}

extension Loop {
    /// Fills this loop's slot of `collection` (a `.collect` message).
    func collect(into collection: MetricsCollection) {
        var down = Array(repeating: false, count: snapshot.endpoints.count)
        for i in down.indices { down[i] = picker.isDown(i, now: now) }
        collection.samples[index] = LoopMetricsSample(
            loop: index, snapshot: snapshot, frontends: metrics.frontends, backends: metrics.backends,
            servers: metrics.servers, requestDuration: metrics.requestDuration,
            connectDuration: metrics.connectDuration, tlsHandshakeDuration: metrics.tlsHandshakeDuration,
            endpointDown: down, closeReasons: metrics.closeReasons, counters: counters, liveConnections: table.live,
            accessLogDropped: accessLog?.dropped ?? 0)
        collection.done.countDown()
    }
}
