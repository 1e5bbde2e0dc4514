import SluiceReactor

/// Quantiles from fixed-bucket histograms, estimated as Prometheus's `histogram_quantile`
/// does: find the bucket the rank falls in and interpolate linearly within it (from the
/// previous bound, or 0 for the first bucket). A rank in the +Inf bucket answers the highest
/// finite bound. Pure.
public enum Quantile {
    /// The `q` quantile (0...1) in seconds of one series, from its per-bucket (not cumulative)
    /// counts, one per `LatencyBuckets` bound plus +Inf; nil when it holds no observation.
    public static func estimate(_ q: Double, buckets: [UInt64]) -> Double? {
        precondition(buckets.count == LatencyBuckets.count, "one count per bound plus +Inf")
        let total = buckets.reduce(0, &+)
        guard total > 0 else { return nil }
        if q <= 0 { return 0 }
        let bounds = LatencyBuckets.boundsSeconds
        let rank = min(q, 1) * Double(total)
        var below: UInt64 = 0
        for k in 0..<buckets.count {
            let through = below &+ buckets[k]
            if Double(through) >= rank && buckets[k] > 0 {
                if k == bounds.count { return bounds[bounds.count - 1] }
                let start = k == 0 ? 0 : bounds[k - 1]
                let end = bounds[k]
                return start + (end - start) * ((rank - Double(below)) / Double(buckets[k]))
            }
            below = through
        }
        return bounds[bounds.count - 1]
    }

    /// The per-bucket counts of `row` in `table`.
    public static func buckets(_ table: HistogramTable, row: Int) -> [UInt64] {
        (0..<LatencyBuckets.count).map { table.bucket(row, $0) }
    }
}
