import SluiceReactor
import SluiceRouting

/// Renders `/metrics` from a `MetricsAggregate` and a `ProcessView` into a `ByteOutput`.
///
/// Every family has `# HELP` and `# TYPE` (OpenMetrics: also `# UNIT` when its name ends in
/// a unit, counters named without `_total` there, `# EOF` at the end). Labels are the
/// configuration's names only (`proxy` = listener or service name, `server` = endpoint
/// address) plus fixed sets (`code`, `kind`, `le`, `reason`, `side`, `resource`): the series
/// count is bounded by the configuration, and a service's series go when it goes.
///
/// Cost: every row's label text is escaped once per scrape into one block; each sample is
/// then a few copies and a hand-formatted integer. No `String` per sample.
public struct MetricsRenderer {
    let format: MetricsFormat
    let scope: MetricsScope
    let out: ByteOutput

    public init(format: MetricsFormat, scope: MetricsScope = .all, into out: ByteOutput) {
        self.format = format
        self.scope = scope
        self.out = out
    }

    /// Writes the whole exposition.
    public func render(_ metrics: MetricsAggregate, process: ProcessView) {
        let snapshot = metrics.snapshot
        let frontendLabels = LabelRows(count: snapshot.listeners.count) { i, o in
            o.write("proxy=\"")
            o.write(labelValue: snapshot.listeners[i].name)
            o.write("\"")
        }
        let backendLabels = LabelRows(count: snapshot.services.count) { i, o in
            o.write("proxy=\"")
            o.write(labelValue: snapshot.services[i].name)
            o.write("\"")
        }
        let serverLabels = LabelRows(count: snapshot.endpoints.count) { i, o in
            let endpoint = snapshot.endpoints[i]
            o.write("proxy=\"")
            o.write(labelValue: snapshot.services[endpoint.service].name)
            o.write("\",server=\"")
            o.write(labelValue: endpoint.address.description)
            o.write("\"")
        }

        if scope.contains(.process) { processFamilies(metrics, process) }
        if scope.contains(.frontend) {
            for family in Families.frontend { table(family, metrics.frontends, frontendLabels) }
            // Only listeners that terminate TLS can time a handshake.
            histogram(Families.tlsHandshakeDuration, metrics.tlsHandshakeDuration, frontendLabels) {
                snapshot.listeners[$0].tlsContext >= 0
            }
        }
        if scope.contains(.backend) {
            for family in Families.backend { table(family, metrics.backends, backendLabels) }
            gauge(Families.backendActiveServers, backendLabels) { metrics.activeEndpoints(ofService: $0) }
            histogram(Families.requestDuration, metrics.requestDuration, backendLabels)
            histogram(Families.connectDuration, metrics.connectDuration, backendLabels)
        }
        if scope.contains(.server) {
            for family in Families.server { table(family, metrics.servers, serverLabels) }
            gauge(Families.serverUp, serverLabels) { metrics.endpointDown[$0] ? 0 : 1 }
        }
        if format == .openMetrics { out.write("# EOF\n") }
    }

    // MARK: Families

    private func processFamilies(_ metrics: MetricsAggregate, _ process: ProcessView) {
        header(Families.startTime)
        out.write("sluice_process_start_time_seconds ")
        out.write(microsAsSeconds: UInt64(max(process.startTimeMicros, 0)))
        out.write("\n")
        single(Families.workers, process.workers)
        single(Families.generation, Int(truncatingIfNeeded: metrics.snapshot.generation))
        single(Families.reloads, process.reloads)
        single(Families.reloadFailures, process.reloadFailures)
        single(Families.currentConnections, metrics.liveConnections)
        header(Families.closes)
        for reason in CloseReason.allCases {
            out.write("sluice_connection_closes_total{reason=\"")
            out.write(reason.name)
            out.write("\",side=\"")
            out.write(Self.sideName(reason.side))
            out.write("\"} ")
            out.write(
                decimal: reason.rawValue < metrics.closeReasons.count ? metrics.closeReasons[Int(reason.rawValue)] : 0)
            out.write("\n")
        }
        single(Families.accessLogRecords, process.accessLogTaken)
        single(Families.accessLogDropped, process.accessLogDropped)
        header(Families.ioBackend)
        out.write("sluice_io_backend{backend=\"")
        out.write(labelValue: process.ioBackend)
        out.write("\"} 1\n")
        if process.ioBackend == "io_uring" {
            single(Families.ioBufferExhaustions, metrics.counters.ioBufferExhaustions)
            single(Families.ioBuffersInUse, metrics.counters.ioBuffersInUse)
        }
        single(Families.h2Sessions, metrics.counters.h2Sessions)
        single(Families.h2Streams, metrics.counters.h2Streams)
        header(Families.h2Resets)
        out.write("sluice_http2_resets_total{side=\"client\"} ")
        out.write(decimal: metrics.counters.h2ClientResets)
        out.write("\nsluice_http2_resets_total{side=\"proxy\"} ")
        out.write(decimal: metrics.counters.h2ProxyResets)
        out.write("\n")
        single(Families.h2ProtocolErrors, metrics.counters.h2ProtocolErrors)
        single(Families.h2Floods, metrics.counters.h2Floods)
        single(Families.h2UpstreamSessions, metrics.counters.h2UpstreamSessions)
        single(Families.h2UpstreamStreams, metrics.counters.h2UpstreamStreams)
        single(Families.h2UpstreamResets, metrics.counters.h2UpstreamResets)
        single(Families.h2UpstreamFailures, metrics.counters.h2UpstreamFailures)
        single(Families.h2UpstreamTLSHandshakes, metrics.counters.h2UpstreamTLSHandshakes)
        header(Families.h2UpstreamTLSFailures)
        out.write("sluice_http2_upstream_tls_failures_total{reason=\"certificate\"} ")
        out.write(decimal: metrics.counters.h2UpstreamTLSVerifyFailures)
        out.write("\nsluice_http2_upstream_tls_failures_total{reason=\"alpn\"} ")
        out.write(decimal: metrics.counters.h2UpstreamTLSALPNFailures)
        out.write("\nsluice_http2_upstream_tls_failures_total{reason=\"handshake\"} ")
        out.write(decimal: metrics.counters.h2UpstreamTLSOtherFailures)
        out.write("\n")
        guard let kube = process.kube else { return }
        header(Families.kubeWatchUp)
        for watch in kube.watches {
            out.write("sluice_kube_watch_up{resource=\"")
            out.write(labelValue: watch.resource)
            out.write("\"} ")
            out.write(watch.up ? "1\n" : "0\n")
        }
        if let last = kube.lastSyncMicros {
            header(Families.kubeLastSync)
            out.write("sluice_kube_last_sync_timestamp_seconds ")
            out.write(microsAsSeconds: UInt64(max(last, 0)))
            out.write("\n")
        }
    }

    /// A family of one unlabelled sample.
    private func single(_ info: FamilyInfo, _ value: Int) {
        header(info)
        out.write(info.name)
        if info.type == .counter { out.write("_total") }
        out.write(" ")
        out.write(decimal: value)
        out.write("\n")
    }

    /// A family of table cells: per row, one sample per member.
    private func table<Metric: RawRepresentable & CaseIterable & Sendable>(
        _ family: TableFamily<Metric>, _ values: MetricTable<Metric>, _ rows: LabelRows
    ) where Metric.RawValue == Int {
        header(family.info)
        let prefix = ByteOutput(capacity: 96)
        prefix.write(family.info.name)
        if family.info.type == .counter { prefix.write("_total") }
        prefix.write("{")
        let suffixes = LabelRows(count: family.members.count) { k, o in
            if let label = family.label, let value = family.members[k].value {
                o.write(",")
                o.write(label)
                o.write("=\"")
                o.write(value)
                o.write("\"")
            }
            o.write("} ")
        }
        // Cells read straight from the flat table: row * width + the metric's column.
        let width = MetricTable<Metric>.width
        let columns = family.members.map(\.metric.rawValue)
        let head = prefix.bytes
        values.values.withUnsafeBufferPointer { cells in
            for row in 0..<min(rows.count, values.rows) {
                let labels = rows[row]
                let base = row * width
                for k in 0..<columns.count {
                    out.write(head)
                    out.write(labels)
                    out.write(suffixes[k])
                    out.write(decimal: cells[base + columns[k]])
                    out.write(byte: 0x0A)
                }
            }
        }
    }

    private func gauge(_ info: FamilyInfo, _ rows: LabelRows, _ value: (Int) -> Int) {
        header(info)
        for row in 0..<rows.count {
            out.write(info.name)
            out.write("{")
            out.write(rows[row])
            out.write("} ")
            out.write(decimal: value(row))
            out.write(byte: 0x0A)
        }
    }

    /// `_bucket` (cumulative, `le` from `LatencyBuckets`), `_sum` (seconds) and `_count` per row
    /// that `include` admits.
    private func histogram(
        _ info: FamilyInfo, _ table: HistogramTable, _ rows: LabelRows, include: (Int) -> Bool = { _ in true }
    ) {
        header(info)
        let bounds = format == .openMetrics ? Self.openMetricsBounds : Self.prometheusBounds
        let perRow = LatencyBuckets.count
        let buckets = table.buckets
        for row in 0..<min(rows.count, table.rows) where include(row) {
            let labels = rows[row]
            var cumulative: UInt64 = 0
            for k in 0..<perRow {
                cumulative &+= buckets[row * perRow + k]
                out.write(info.name)
                out.write("_bucket{")
                out.write(labels)
                out.write(bounds[k])
                out.write(unsigned: cumulative)
                out.write(byte: 0x0A)
            }
            out.write(info.name)
            out.write("_sum{")
            out.write(labels)
            out.write("} ")
            out.write(microsAsSeconds: table.sumMicros[row])
            out.write(byte: 0x0A)
            out.write(info.name)
            out.write("_count{")
            out.write(labels)
            out.write("} ")
            out.write(unsigned: table.counts[row])
            out.write(byte: 0x0A)
        }
    }

    private func header(_ info: FamilyInfo) {
        let total = info.type == .counter && format == .prometheus
        out.write("# HELP ")
        out.write(info.name)
        if total { out.write("_total") }
        out.write(" ")
        out.write(info.help)
        out.write("\n# TYPE ")
        out.write(info.name)
        if total { out.write("_total") }
        out.write(" ")
        out.write(info.type.name)
        out.write("\n")
        if format == .openMetrics, let unit = info.unit {
            out.write("# UNIT ")
            out.write(info.name)
            out.write(" ")
            out.write(unit)
            out.write("\n")
        }
    }

    static func sideName(_ side: CloseReason.Side) -> String {
        switch side {
        case .none: "none"
        case .downstream: "downstream"
        case .upstream: "upstream"
        case .proxy: "proxy"
        }
    }

    /// `,le="…"} ` for each bucket: Go's shortest form (`1`, `0.005`) for Prometheus text, a
    /// float with a decimal point (`1.0`) for OpenMetrics, `+Inf` last.
    static let prometheusBounds: [[UInt8]] = bounds(openMetrics: false)
    static let openMetricsBounds: [[UInt8]] = bounds(openMetrics: true)

    private static func bounds(openMetrics: Bool) -> [[UInt8]] {
        var result: [[UInt8]] = LatencyBuckets.boundsMicros.map { micros in
            let o = ByteOutput(capacity: 32)
            o.write(",le=\"")
            o.write(microsAsSeconds: UInt64(micros))
            if openMetrics && micros % 1_000_000 == 0 { o.write(".0") }
            o.write("\"} ")
            return o.array
        }
        result.append(Array(",le=\"+Inf\"} ".utf8))
        return result
    }
}

/// Each row's label text (`proxy="web"`, `proxy="svc",server="10.0.0.1:80"`), escaped once per
/// scrape into one block.
struct LabelRows {
    private let storage: ByteOutput
    private var starts: [Int]

    init(count: Int, _ write: (Int, ByteOutput) -> Void) {
        storage = ByteOutput(capacity: max(count * 48, 64))
        starts = [0]
        starts.reserveCapacity(count + 1)
        for i in 0..<count {
            write(i, storage)
            starts.append(storage.count)
        }
    }

    var count: Int { starts.count - 1 }

    /// Row `i`'s bytes; valid while `self` lives and nothing is written to it.
    subscript(i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage.bytes[starts[i]..<starts[i + 1]])
    }
}
