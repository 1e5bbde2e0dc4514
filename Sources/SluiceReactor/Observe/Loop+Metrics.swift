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

    /// The tables for the next snapshot: listener rows by `listeners` (old index → new, -1
    /// gone), service and endpoint rows by `remap`; rows that left are dropped. On a swap.
    mutating func refile(_ remap: SnapshotRemap, listeners: [Int32], rows next: RoutingSnapshot) {
        frontends.remap(listeners, rows: next.listeners.count)
        tlsHandshakeDuration.remap(listeners, rows: next.listeners.count)
        backends.remap(remap.services, rows: next.services.count)
        requestDuration.remap(remap.services, rows: next.services.count)
        connectDuration.remap(remap.services, rows: next.services.count)
        servers.remap(remap.endpoints, rows: next.endpoints.count)
    }

    /// Zeroes every `currentConnections` gauge, before they are counted again from the live
    /// connections.
    mutating func clearGauges() {
        // Written only where not zero: a page of rows nothing was counted in stays unwritten.
        for row in 0..<frontends.rows where frontends[row, .currentConnections] != 0 {
            frontends[row, .currentConnections] = 0
        }
        for row in 0..<backends.rows where backends[row, .currentConnections] != 0 {
            backends[row, .currentConnections] = 0
        }
        for row in 0..<servers.rows where servers[row, .currentConnections] != 0 {
            servers[row, .currentConnections] = 0
        }
    }
}

extension Loop {
    /// Fills this loop's slot of `collection` (a `.collect` message).
    func collect(into collection: MetricsCollection) {
        flushAllBytes()
        var down = Array(repeating: false, count: snapshot.endpoints.count)
        for i in down.indices { down[i] = picker.isDown(i, now: now) }
        // Copies into storage of their own: a sample sharing the loop's arrays would make the
        // loop's next add copy a whole table (an allocation, in the middle of a request).
        collection.samples[index] = LoopMetricsSample(
            loop: index, snapshot: snapshot, frontends: Self.copy(metrics.frontends),
            backends: Self.copy(metrics.backends),
            servers: Self.copy(metrics.servers), requestDuration: Self.copy(metrics.requestDuration),
            connectDuration: Self.copy(metrics.connectDuration),
            tlsHandshakeDuration: Self.copy(metrics.tlsHandshakeDuration), endpointDown: down,
            closeReasons: metrics.closeReasons.map { $0 }, counters: countersWithDriver, liveConnections: table.live,
            accessLogDropped: accessLog?.dropped ?? 0)
        collection.done.countDown()
    }

    /// The loop's counters with the driver's own (io_uring buffers).
    var countersWithDriver: LoopCounters {
        var all = counters
        if let uring = driver.uring {
            all.ioBufferExhaustions = uring.stats.starved
            all.ioBuffersInUse = uring.buffersOut
        }
        return all
    }

    static func copy<M>(_ table: MetricTable<M>) -> MetricTable<M> {
        var copy = MetricTable<M>(rows: table.rows)
        copy.add(table)
        return copy
    }

    static func copy(_ table: HistogramTable) -> HistogramTable {
        var copy = HistogramTable(rows: table.rows)
        copy.add(table)
        return copy
    }
}
