import SluiceReactor
import SluiceRouting

/// `GET /stats.json`: what the stats page shows, as cumulative counts (the page and
/// `sluice top` turn two of them into rates). Latency quantiles are since start, estimated
/// from the histograms (`Quantile`); `buckets` are the per-bucket counts behind them, one per
/// `bounds` entry plus +Inf, so a client can estimate quantiles over an interval too.
public enum StatsJSON {
    public static func render(_ metrics: MetricsAggregate, process: ProcessView, into out: ByteOutput) {
        let snapshot = metrics.snapshot
        out.write("{\"generation\":")
        out.write(unsigned: snapshot.generation)
        out.write(",\"workers\":")
        out.write(decimal: process.workers)
        out.write(",\"startTime\":")
        out.write(microsAsSeconds: UInt64(max(process.startTimeMicros, 0)))
        out.write(",\"reloads\":")
        out.write(decimal: process.reloads)
        out.write(",\"reloadFailures\":")
        out.write(decimal: process.reloadFailures)
        out.write(",\"connections\":")
        out.write(decimal: metrics.liveConnections)
        out.write(",\"bounds\":[")
        for (i, bound) in LatencyBuckets.boundsMicros.enumerated() {
            if i > 0 { out.write(",") }
            out.write(microsAsSeconds: UInt64(bound))
        }
        out.write("],\n\"listeners\":[")
        for (i, listener) in snapshot.listeners.enumerated() {
            let t = metrics.frontends
            if i > 0 { out.write(",") }
            out.write("\n{\"name\":")
            out.write(jsonString: listener.name)
            out.write(",\"protocol\":")
            out.write(jsonString: listener.protocol.rawValue)
            out.write(",\"address\":")
            out.write(jsonString: listener.address.description)
            field("connections", t[i, .connections], out)
            field("current", t[i, .currentConnections], out)
            field("requests", t[i, .httpRequests], out)
            responses(t.responses(i), out)
            field("bytesIn", t[i, .bytesIn], out)
            field("bytesOut", t[i, .bytesOut], out)
            field("errors", t[i, .requestErrors], out)
            out.write("}")
        }
        out.write("],\n\"services\":[")
        for (i, service) in snapshot.services.enumerated() {
            let t = metrics.backends
            if i > 0 { out.write(",") }
            out.write("\n{\"name\":")
            out.write(jsonString: service.name)
            out.write(",\"algorithm\":")
            out.write(jsonString: service.algorithm.rawValue)
            field("endpoints", service.endpoints.count, out)
            field("active", metrics.activeEndpoints(ofService: i), out)
            field("connections", t[i, .connections], out)
            field("current", t[i, .currentConnections], out)
            field("requests", t[i, .httpRequests], out)
            responses(t.responses(i), out)
            field("bytesIn", t[i, .bytesIn], out)
            field("bytesOut", t[i, .bytesOut], out)
            field("errors", t[i, .connectionErrors] + t[i, .responseErrors] + t[i, .noEndpoint], out)
            field("timeouts", t[i, .timeoutConnect] + t[i, .timeoutServer] + t[i, .timeoutTunnel], out)
            let buckets = Quantile.buckets(metrics.requestDuration, row: i)
            out.write(",\"buckets\":[")
            for (k, n) in buckets.enumerated() {
                if k > 0 { out.write(",") }
                out.write(unsigned: n)
            }
            out.write("]")
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                out.write(",\"")
                out.write(name)
                out.write("\":")
                out.write(fixed: Quantile.estimate(q, buckets: buckets) ?? .nan, places: 6)
            }
            out.write("}")
        }
        out.write("],\n\"endpoints\":[")
        for (e, endpoint) in snapshot.endpoints.enumerated() {
            let t = metrics.servers
            if e > 0 { out.write(",") }
            out.write("\n{\"service\":")
            out.write(jsonString: snapshot.services[endpoint.service].name)
            out.write(",\"address\":")
            out.write(jsonString: endpoint.address.description)
            out.write(metrics.endpointDown[e] ? ",\"up\":false" : ",\"up\":true")
            field("connections", t[e, .connections], out)
            field("current", t[e, .currentConnections], out)
            field("requests", t[e, .httpRequests], out)
            responses(t.responses(e), out)
            field("errors", t[e, .connectionErrors], out)
            out.write("}")
        }
        out.write("]}\n")
    }

    private static func field(_ name: StaticString, _ value: Int, _ out: ByteOutput) {
        out.write(",\"")
        out.write(name)
        out.write("\":")
        out.write(decimal: value)
    }

    /// `"responses":[1xx,2xx,3xx,4xx,5xx,other]`.
    private static func responses(_ values: [Int], _ out: ByteOutput) {
        out.write(",\"responses\":[")
        for (k, v) in values.enumerated() {
            if k > 0 { out.write(",") }
            out.write(decimal: v)
        }
        out.write("]")
    }
}
