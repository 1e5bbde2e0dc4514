import SluiceReactor

/// `sluice top`'s table: per backend (service), rates between two scrapes of `/metrics`
/// (requests, 5xx, connections per second), latency quantiles over the same interval from
/// the histogram's bucket deltas, and endpoints up / known. Pure: the command scrapes.
public enum TopView {
    public struct Row: Sendable, Equatable {
        public var service: String
        public var requestsPerSecond: Double?
        public var errorsPerSecond: Double?
        public var connectionsPerSecond: Double?
        /// Seconds; nil when no request ended in the interval.
        public var p50: Double?
        public var p99: Double?
        public var activeEndpoints: Int
        public var endpoints: Int
    }

    /// Per-service figures of one scrape.
    struct Totals {
        var requests = 0.0
        var errors = 0.0
        var connections = 0.0
        var cumulative: [Double: Double] = [:]
        var active = 0
        var endpoints = 0
    }

    static func totals(_ samples: [MetricsText.Sample]) -> [String: Totals] {
        var result: [String: Totals] = [:]
        for sample in samples {
            guard let proxy = sample.labels["proxy"] else { continue }
            switch sample.name {
            case "sluice_backend_http_requests_total": result[proxy, default: Totals()].requests = sample.value
            case "sluice_backend_connections_total": result[proxy, default: Totals()].connections = sample.value
            case "sluice_backend_http_responses_total" where sample.labels["code"] == "5xx":
                result[proxy, default: Totals()].errors = sample.value
            case "sluice_backend_http_request_duration_seconds_bucket":
                guard let le = sample.labels["le"], let bound = le == "+Inf" ? .infinity : Double(le) else { continue }
                result[proxy, default: Totals()].cumulative[bound] = sample.value
            case "sluice_backend_active_servers": result[proxy, default: Totals()].active = Int(sample.value)
            case "sluice_server_up": result[proxy, default: Totals()].endpoints += 1
            default: break
            }
        }
        return result
    }

    /// The rows for `current`, with rates against `previous` taken `seconds` earlier (rates
    /// and quantiles nil without it). Busiest first, then by name.
    public static func rows(previous: [MetricsText.Sample]?, current: [MetricsText.Sample], seconds: Double)
        -> [Row]
    {
        let now = totals(current)
        let before = previous.map(totals)
        var rows: [Row] = []
        for (service, t) in now where !t.cumulative.isEmpty || t.endpoints > 0 || t.connections > 0 {
            var row = Row(
                service: service, requestsPerSecond: nil, errorsPerSecond: nil, connectionsPerSecond: nil, p50: nil,
                p99: nil, activeEndpoints: t.active, endpoints: t.endpoints)
            if let b = before?[service], seconds > 0 {
                row.requestsPerSecond = max(0, t.requests - b.requests) / seconds
                row.errorsPerSecond = max(0, t.errors - b.errors) / seconds
                row.connectionsPerSecond = max(0, t.connections - b.connections) / seconds
                let buckets = bucketDeltas(t.cumulative, b.cumulative)
                row.p50 = buckets.flatMap { Quantile.estimate(0.5, buckets: $0) }
                row.p99 = buckets.flatMap { Quantile.estimate(0.99, buckets: $0) }
            }
            rows.append(row)
        }
        return rows.sorted {
            ($0.requestsPerSecond ?? 0, $1.service) > ($1.requestsPerSecond ?? 0, $0.service)
        }
    }

    /// Per-bucket counts of the interval, in `LatencyBuckets` order; nil when the bounds are
    /// not those (another version's exposition) or nothing ended in it.
    static func bucketDeltas(_ now: [Double: Double], _ before: [Double: Double]) -> [UInt64]? {
        let bounds = LatencyBuckets.boundsSeconds + [.infinity]
        var previousNow = 0.0
        var previousBefore = 0.0
        var deltas: [UInt64] = []
        for bound in bounds {
            guard let n = now[bound] else { return nil }
            let b = before[bound] ?? 0
            deltas.append(UInt64(max(0, (n - previousNow) - (b - previousBefore))))
            previousNow = n
            previousBefore = b
        }
        return deltas.reduce(0, +) > 0 ? deltas : nil
    }

    /// The screen: a title line, a header and at most `limit` rows.
    public static func render(_ rows: [Row], title: String, limit: Int) -> String {
        var lines = [title, ""]
        lines.append(
            pad("SERVICE", 36, left: true) + pad("REQ/S", 10) + pad("5XX/S", 9) + pad("CONN/S", 9) + pad("P50", 11)
                + pad("P99", 11) + pad("ENDPOINTS", 11))
        for row in rows.prefix(limit) {
            lines.append(
                pad(row.service, 36, left: true) + pad(rate(row.requestsPerSecond), 10)
                    + pad(rate(row.errorsPerSecond), 9) + pad(rate(row.connectionsPerSecond), 9)
                    + pad(millis(row.p50), 11) + pad(millis(row.p99), 11)
                    + pad("\(row.activeEndpoints)/\(row.endpoints)", 11))
        }
        if rows.count > limit { lines.append("… \(rows.count - limit) more") }
        return lines.joined(separator: "\n")
    }

    static func rate(_ value: Double?) -> String {
        guard let value else { return "-" }
        return fixed(value, 1)
    }

    static func millis(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        return fixed(seconds * 1000, seconds < 0.01 ? 2 : 1) + " ms"
    }

    static func fixed(_ value: Double, _ places: Int) -> String {
        let out = ByteOutput(capacity: 32)
        out.write(fixed: value, places: places, keepZeros: true)
        return out.text
    }

    static func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let cut = text.count > width - 1 ? String(text.prefix(width - 2)) + "…" : text
        let fill = String(repeating: " ", count: max(0, width - cut.count))
        return left ? cut + fill : fill + cut
    }
}
