import SluiceAdmin
import SluiceReactor
import SluiceRouting
import Testing

@Suite struct MetricsAggregateTests {
    /// One loop still runs generation 1 while the other runs generation 2, which renumbered
    /// everything: rows meet by identity on generation 2, and what left is gone.
    @Test func samplesOfDifferentSnapshotsMeetByIdentity() {
        let old = Fixtures.snapshot(
            generation: 1, listeners: ["web", "old"],
            services: [("a", ["10.0.1.1:1", "10.0.1.2:1"]), ("b", ["10.0.2.2:2"])])
        let new = Fixtures.snapshot(
            generation: 2, listeners: ["new", "web"],
            services: [("c", ["10.0.3.3:3"]), ("b", ["10.0.2.2:2", "10.0.2.3:2"])])
        var behind = LoopMetricsSample.empty(loop: 0, snapshot: old)
        behind.backends.add(0, .httpRequests, 10)  // a: gone in generation 2
        behind.backends.add(1, .httpRequests, 4)  // b
        behind.servers.add(2, .httpRequests, 4)  // b 10.0.2.2:2
        behind.servers.add(0, .httpRequests, 10)  // a's: gone
        behind.frontends.add(0, .connections, 6)  // web
        behind.frontends.add(1, .connections, 9)  // old: gone
        behind.requestDuration.record(1, micros: 40_000)
        behind.endpointDown[2] = true  // b 10.0.2.2:2
        behind.tlsHandshakeDuration.record(0, micros: 1_000)  // web
        var ahead = LoopMetricsSample.empty(loop: 1, snapshot: new)
        ahead.backends.add(1, .httpRequests, 1)  // b
        ahead.backends.add(0, .httpRequests, 2)  // c
        ahead.servers.add(2, .httpRequests, 1)  // b 10.0.2.3:2
        ahead.frontends.add(1, .connections, 1)  // web
        ahead.requestDuration.record(1, micros: 40_000)

        for samples in [[behind, ahead], [ahead, behind]] {
            let metrics = MetricsAggregate(samples)!
            #expect(metrics.snapshot === new)
            #expect(metrics.backends[0, .httpRequests] == 2)
            #expect(metrics.backends[1, .httpRequests] == 5)
            #expect(metrics.servers[0, .httpRequests] == 0)
            #expect(metrics.servers[1, .httpRequests] == 4)
            #expect(metrics.servers[2, .httpRequests] == 1)
            #expect(metrics.frontends[0, .connections] == 0)
            #expect(metrics.frontends[1, .connections] == 7)
            #expect(metrics.requestDuration.counts == [0, 2])
            #expect(metrics.tlsHandshakeDuration.counts == [0, 1])
            #expect(metrics.endpointDown == [false, true, false])
            #expect(metrics.activeEndpoints(ofService: 1) == 1)
            let text = Fixtures.render(metrics, ProcessView(startTimeMicros: 0, workers: 2))
            #expect(!text.contains("proxy=\"a\""), "a left the table: its series go with it")
            #expect(!text.contains("proxy=\"old\""))
            #expect(text.contains("sluice_backend_http_requests_total{proxy=\"b\"} 5\n"))
            #expect(text.contains("sluice_generation 2\n"))
        }
    }

    @Test func countersAndClosesSumOverLoops() {
        let snapshot = Fixtures.snapshot(generation: 3, services: [("a", ["10.0.0.1:1"])])
        var one = LoopMetricsSample.empty(loop: 0, snapshot: snapshot)
        var two = LoopMetricsSample.empty(loop: 1, snapshot: snapshot)
        one.counters.accepted = 5
        two.counters.accepted = 7
        one.closeReasons[Int(CloseReason.upstreamReset.rawValue)] = 1
        two.closeReasons[Int(CloseReason.upstreamReset.rawValue)] = 2
        one.liveConnections = 4
        two.liveConnections = 1
        let metrics = MetricsAggregate([one, two])!
        #expect(metrics.counters.accepted == 12)
        #expect(metrics.closeReasons[Int(CloseReason.upstreamReset.rawValue)] == 3)
        #expect(metrics.liveConnections == 5)
        #expect(metrics.loops == 2)
        #expect(MetricsAggregate([]) == nil)
    }
}

@Suite struct QuantileTests {
    static func buckets(_ pairs: [(Int, UInt64)]) -> [UInt64] {
        var b = [UInt64](repeating: 0, count: LatencyBuckets.count)
        for (k, n) in pairs { b[k] = n }
        return b
    }

    @Test func interpolatesWithinTheBucketAsPrometheusDoes() throws {
        // 3 in (0.01, 0.025], 2 in (0.25, 0.5].
        let b = Self.buckets([(2, 3), (7, 2)])
        #expect(abs(try #require(Quantile.estimate(0.5, buckets: b)) - 0.0225) < 1e-12)
        #expect(abs(try #require(Quantile.estimate(0.9, buckets: b)) - 0.4375) < 1e-12)
        #expect(abs(try #require(Quantile.estimate(0.99, buckets: b)) - 0.49375) < 1e-12)
        #expect(Quantile.estimate(1, buckets: b) == 0.5)
    }

    @Test func firstBucketStartsAtZeroAndInfinityAnswersTheLastBound() {
        #expect(Quantile.estimate(0.5, buckets: Self.buckets([(0, 4)])) == 0.0025)
        #expect(Quantile.estimate(0.5, buckets: Self.buckets([(14, 4)])) == 10)
        #expect(Quantile.estimate(0.99, buckets: Self.buckets([(3, 99), (14, 1)])) == 0.05)
    }

    @Test func emptyHasNoQuantile() {
        #expect(Quantile.estimate(0.5, buckets: Self.buckets([])) == nil)
    }

    @Test func fromARecordedTable() {
        var table = HistogramTable(rows: 2)
        for micros in [1_000, 2_000, 3_000, 4_000] { table.record(1, micros: Int64(micros)) }
        #expect(Quantile.buckets(table, row: 1)[0] == 4)
        #expect(Quantile.buckets(table, row: 0).allSatisfy { $0 == 0 })
    }
}
