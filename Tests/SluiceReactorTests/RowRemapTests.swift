import Testing

@testable import SluiceReactor

/// The in-place remap of metric rows equals the copying one for maps that keep their order.
@Suite("Metric rows remapped in place")
struct RowRemapTests {
    @Test(arguments: 0..<200)
    func inPlaceEqualsCopying(seed: Int) {
        var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        let rows = next(40)
        // An ordered map: rows dropped now and then, gaps (new rows) inserted now and then.
        var map: [Int32] = []
        var target = next(3)
        for _ in 0..<rows {
            if next(5) == 0 {
                map.append(-1)
            } else {
                map.append(Int32(target))
                target += 1 + (next(4) == 0 ? next(3) : 0)
            }
        }
        let newRows = target + next(3)
        var table = MetricTable<ServerMetric>(rows: rows)
        for row in 0..<rows {
            for metric in ServerMetric.allCases { table[row, metric] = 1 + row * 100 + metric.rawValue }
        }
        var histograms = HistogramTable(rows: rows)
        for row in 0..<rows { histograms.record(row, micros: Int64(row * 977)) }
        let expected = table.remapped(map, rows: newRows)
        let expectedHistograms = histograms.remapped(map, rows: newRows)
        table.remap(map, rows: newRows)
        histograms.remap(map, rows: newRows)
        #expect(table == expected, "seed \(seed): map \(map) into \(newRows)")
        #expect(histograms == expectedHistograms, "seed \(seed)")
    }

    @Test func unorderedMapsFallBackToACopy() {
        var table = MetricTable<ServerMetric>(rows: 3)
        for row in 0..<3 { table[row, .currentConnections] = row + 1 }
        let expected = table.remapped([2, 0, 1], rows: 3)
        table.remap([2, 0, 1], rows: 3)
        #expect(table == expected)
        #expect(table[2, .currentConnections] == 1)
    }
}
