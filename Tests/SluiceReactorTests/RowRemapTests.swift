import SluiceRouting
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

    /// Tables past `ZeroPages.threshold`, mostly zero with a few counted rows: the page-skipping
    /// moves, growth and zeroing give what the copying remap gives.
    @Test(arguments: 0..<24)
    func largeSparseTables(seed: Int) {
        var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 7
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        let rows = 2_000 + next(8_000)
        var map: [Int32] = []
        var target = next(3)
        let dropEvery = 2 + next(400)
        for _ in 0..<rows {
            if next(dropEvery) == 0 {
                map.append(-1)
            } else {
                map.append(Int32(target))
                target += 1 + (next(dropEvery) == 0 ? next(300) : 0)
            }
        }
        let newRows = max(0, target + next(2_000) - (seed % 3 == 0 ? 1_500 : 0))
        var table = MetricTable<ServerMetric>(rows: rows)
        var histograms = HistogramTable(rows: rows)
        for _ in 0..<next(60) {
            let row = next(rows)
            table[row, ServerMetric.allCases[next(ServerMetric.allCases.count)]] = 1 + next(1_000)
            histograms.record(row, micros: Int64(next(2_000_000)))
        }
        let expected = table.remapped(map, rows: newRows)
        let expectedHistograms = histograms.remapped(map, rows: newRows)
        var copy = MetricTable<ServerMetric>(rows: rows)
        copy.add(table)
        #expect(copy == table)
        table.remap(map, rows: newRows)
        histograms.remap(map, rows: newRows)
        #expect(table.rows == newRows && table.values.count == newRows * MetricTable<ServerMetric>.width)
        #expect(table == expected, "seed \(seed): \(rows) rows into \(newRows)")
        #expect(histograms == expectedHistograms, "seed \(seed)")
    }

    /// Chained swaps that each insert a few rows into a large table (growth within the spare
    /// capacity, then past it) equal the copying remap at every step.
    @Test func largeTablesGrowingSwapAfterSwap() {
        var table = MetricTable<ServerMetric>(rows: 6_000)
        var expected = table
        for row in stride(from: 3, to: 6_000, by: 611) { table[row, .bytesIn] = row }
        expected = table
        for step in 0..<40 {
            let rows = table.rows
            let at = (step * 977) % rows
            let map = (0..<rows).map { Int32($0 < at ? $0 : $0 + 4) }
            expected = expected.remapped(map, rows: rows + 4)
            table.remap(map, rows: rows + 4)
            table[at, .httpRequests] = step + 1
            expected[at, .httpRequests] = step + 1
            #expect(table == expected, "step \(step)")
        }
    }

    @Test func zeroPagesMoveLikeMemmove() {
        for shift in [-9_000, -4_096, -8, 8, 4_096, 12_344] {
            let count = 200_000
            var bytes = [UInt64](repeating: 0, count: 40_000)
            for i in stride(from: 0, to: bytes.count, by: 997) { bytes[i] = UInt64(i + 1) }
            var expected = bytes
            bytes.withUnsafeMutableBytes { buffer in
                let base = buffer.baseAddress! + 60_000
                ZeroPages.move(base + shift, from: base, count: count)
            }
            expected.withUnsafeMutableBytes { buffer in
                let base = buffer.baseAddress! + 60_000
                (base + shift).copyMemory(from: base, byteCount: count)
            }
            #expect(bytes == expected, "shift \(shift)")
        }
        var zeros: [UInt64] = ZeroPages.zeros(100_000)
        #expect(zeros.allSatisfy { $0 == 0 })
        zeros[5] = 1
        zeros[99_999] = 2
        zeros.withUnsafeMutableBytes { ZeroPages.zero($0.baseAddress! + 8, count: $0.count - 8) }
        #expect(zeros[0] == 0 && zeros[5] == 0 && zeros[99_999] == 0)
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
