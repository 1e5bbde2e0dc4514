/// The exposition format of `/metrics`: Prometheus text 0.0.4 unless the client's `Accept`
/// prefers OpenMetrics 1.0.0.
public enum MetricsFormat: Sendable, Equatable {
    case prometheus
    case openMetrics

    public var contentType: StaticString {
        switch self {
        case .prometheus: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// The format an `Accept` value asks for: OpenMetrics when it lists
    /// `application/openmetrics-text` with a quality above 0 and at least that of
    /// `text/plain`; Prometheus text otherwise (no header, `*/*`, `text/plain`). Any version
    /// parameter of OpenMetrics gets 1.0.0 (0.0.1 reads it the same).
    public static func negotiate(accept: String?) -> MetricsFormat {
        guard let accept else { return .prometheus }
        var openMetrics = 0.0
        var text = 0.0
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";")
            guard let first = parts.first else { continue }
            let type = first.trimmingSpaces.lowercased()
            var quality = 1.0
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0].trimmingSpaces.lowercased() == "q" else { continue }
                quality = Double(pair[1].trimmingSpaces) ?? 0
            }
            switch type {
            case "application/openmetrics-text": openMetrics = max(openMetrics, quality)
            case "text/plain": text = max(text, quality)
            default: break
            }
        }
        return openMetrics > 0 && openMetrics >= text ? .openMetrics : .prometheus
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}
