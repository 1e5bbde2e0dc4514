import SluiceReactor
import SluiceRouting
import Testing

@Suite struct MetricsModelTests {
    @Test func bucketsFollowTheBoundsInclusively() {
        #expect(LatencyBuckets.count == 15)
        #expect(LatencyBuckets.bucket(0) == 0)
        #expect(LatencyBuckets.bucket(5_000) == 0)
        #expect(LatencyBuckets.bucket(5_001) == 1)
        #expect(LatencyBuckets.bucket(10_000_000) == 13)
        #expect(LatencyBuckets.bucket(10_000_001) == 14)
    }

    /// The six response counters of every table are consecutive, 1xx … 5xx then other.
    @Test func statusClassesPickTheirCounters() {
        #expect(FrontendMetric.response(101) == .responses1xx)
        #expect(BackendMetric.response(204) == .responses2xx)
        #expect(ServerMetric.response(304) == .responses3xx)
        #expect(FrontendMetric.response(404) == .responses4xx)
        #expect(BackendMetric.response(599) == .responses5xx)
        #expect(ServerMetric.response(0) == .responsesOther)
        #expect(FrontendMetric.response(600) == .responsesOther)
        var table = MetricTable<ServerMetric>(rows: 2)
        table.add(1, .responses5xx, 3)
        table.add(1, .responsesOther, 1)
        #expect(table.responses(1) == [0, 0, 0, 0, 3, 1])
    }

    @Test func tablesRemapRowsByIdentityAndDropTheRest() {
        var table = MetricTable<BackendMetric>(rows: 3)
        table.add(0, .httpRequests, 5)
        table.add(1, .httpRequests, 7)
        table.add(2, .bytesIn, 9)
        let next = table.remapped([1, -1, 0], rows: 2)
        #expect(next[1, .httpRequests] == 5)
        #expect(next[0, .bytesIn] == 9)
        #expect(next[0, .httpRequests] == 0)
        var histograms = HistogramTable(rows: 2)
        histograms.record(1, micros: 30_000)
        let moved = histograms.remapped([-1, 0], rows: 1)
        #expect(moved.counts == [1])
        #expect(moved.bucket(0, 3) == 1)
        #expect(moved.sumMicros == [30_000])
    }

    @Test func accessLogRingDropsWhenFullAndNeverBlocks() {
        let ring = AccessLogRing(capacity: 4)
        for i in 0..<6 {
            if let slot = ring.reserve() {
                slot.pointee.status = UInt16(200 + i)
                ring.publish()
            }
        }
        #expect(ring.dropped == 2)
        var statuses: [UInt16] = []
        #expect(ring.drain { statuses.append($0.status) } == 4)
        #expect(statuses == [200, 201, 202, 203])
        #expect(ring.reserve() != nil)
    }

    @Test func recordFieldsAreBoundedCopies() {
        var record = AccessRecord()
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: 300)
        long.withUnsafeBytes { record.set(.target, $0) }
        #expect(record.bytes(.target).count == AccessRecord.Field.target.capacity)
        Array("web".utf8).withUnsafeBytes { record.set(.listener, $0) }
        #expect(record.bytes(.listener) == Array("web".utf8))
    }
}
