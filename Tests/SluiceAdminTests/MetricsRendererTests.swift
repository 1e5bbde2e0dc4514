import SluiceAdmin
import SluiceReactor
import SluiceRouting
import Testing

@Suite struct MetricsRendererTests {
    /// `?scope=` as HAProxy's exporter takes it: only the families asked for.
    @Test func scopesSelectFamilies() {
        let (metrics, process) = Fixtures.small()
        func render(_ query: String) -> String {
            let scope = Array(query.utf8).withUnsafeBytes { MetricsScope(query: $0) }
            let out = ByteOutput()
            MetricsRenderer(format: .prometheus, scope: scope, into: out).render(metrics, process: process)
            return out.text
        }
        let all = render("")
        #expect(all == render("scope=*"))
        #expect(all.contains("sluice_server_up{") && all.contains("sluice_process_start_time_seconds"))
        let services = render("scope=backend&scope=frontend")
        #expect(services.contains("sluice_backend_http_requests_total{"))
        #expect(services.contains("sluice_frontend_connections_total{"))
        #expect(!services.contains("sluice_server_"))
        #expect(!services.contains("sluice_process_start_time_seconds"))
        let global = render("scope=process&x=1")
        #expect(global.contains("sluice_generation") && !global.contains("sluice_backend_"))
        #expect(render("scope=servers").isEmpty)
    }

    @Test func responsesByClassSumTheLoops() {
        let (metrics, process) = Fixtures.small()
        let text = Fixtures.render(metrics, process)
        #expect(
            Fixtures.block("sluice_backend_http_responses_total", in: text) == """
                # HELP sluice_backend_http_responses_total HTTP responses from the service, by status class.
                # TYPE sluice_backend_http_responses_total counter
                sluice_backend_http_responses_total{proxy="api",code="1xx"} 0
                sluice_backend_http_responses_total{proxy="api",code="2xx"} 3
                sluice_backend_http_responses_total{proxy="api",code="3xx"} 0
                sluice_backend_http_responses_total{proxy="api",code="4xx"} 0
                sluice_backend_http_responses_total{proxy="api",code="5xx"} 2
                sluice_backend_http_responses_total{proxy="api",code="other"} 0
                """)
        #expect(
            Fixtures.block("sluice_server_http_requests_total", in: text) == """
                # HELP sluice_server_http_requests_total HTTP requests sent to the endpoint.
                # TYPE sluice_server_http_requests_total counter
                sluice_server_http_requests_total{proxy="api",server="10.0.0.1:80"} 3
                sluice_server_http_requests_total{proxy="api",server="10.0.0.2:80"} 2
                """)
        #expect(
            Fixtures.block("sluice_frontend_connections_total", in: text) == """
                # HELP sluice_frontend_connections_total Connections accepted by the listener.
                # TYPE sluice_frontend_connections_total counter
                sluice_frontend_connections_total{proxy="web"} 4
                """)
    }

    @Test func histogramIsCumulativeWithSumInSeconds() {
        let (metrics, process) = Fixtures.small()
        let text = Fixtures.render(metrics, process)
        let name = "sluice_backend_http_request_duration_seconds"
        let counts = [0, 0, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5]
        let bounds = [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5", "7.5", "10",
            "+Inf",
        ]
        var expected = [
            "# HELP \(name) HTTP request duration, from the whole request head to the end of the response.",
            "# TYPE \(name) histogram",
        ]
        for (bound, count) in zip(bounds, counts) {
            expected.append("\(name)_bucket{proxy=\"api\",le=\"\(bound)\"} \(count)")
        }
        expected.append("\(name)_sum{proxy=\"api\"} 0.66")
        expected.append("\(name)_count{proxy=\"api\"} 5")
        #expect(Fixtures.block(name, in: text) == expected.joined(separator: "\n"))
    }

    @Test func endpointStateAndActiveEndpoints() {
        let (metrics, process) = Fixtures.small()
        let text = Fixtures.render(metrics, process)
        #expect(
            Fixtures.block("sluice_server_up", in: text) == """
                # HELP sluice_server_up 1 while no event loop passes the endpoint over after a failure, else 0.
                # TYPE sluice_server_up gauge
                sluice_server_up{proxy="api",server="10.0.0.1:80"} 1
                sluice_server_up{proxy="api",server="10.0.0.2:80"} 0
                """)
        #expect(
            Fixtures.block("sluice_backend_active_servers", in: text) == """
                # HELP sluice_backend_active_servers Endpoints of the service that are up.
                # TYPE sluice_backend_active_servers gauge
                sluice_backend_active_servers{proxy="api"} 1
                """)
    }

    @Test func processFamilies() {
        let (metrics, process) = Fixtures.small()
        let text = Fixtures.render(metrics, process)
        #expect(
            Fixtures.block("sluice_process_start_time_seconds", in: text) == """
                # HELP sluice_process_start_time_seconds When the process started, in seconds since the epoch.
                # TYPE sluice_process_start_time_seconds gauge
                sluice_process_start_time_seconds 1700000000.5
                """)
        #expect(text.contains("\nsluice_workers 2\n"))
        #expect(text.contains("\nsluice_generation 7\n"))
        #expect(text.contains("\nsluice_reloads_total 3\n"))
        #expect(text.contains("\nsluice_reload_failures_total 1\n"))
        #expect(text.contains("\nsluice_current_connections 3\n"))
        #expect(text.contains("\nsluice_connection_closes_total{reason=\"client_closed\",side=\"downstream\"} 3\n"))
        #expect(text.contains("\nsluice_connection_closes_total{reason=\"connect_timeout\",side=\"upstream\"} 0\n"))
        #expect(text.contains("\nsluice_access_log_records_total 9\n"))
        #expect(text.contains("\nsluice_access_log_dropped_total 0\n"))
        #expect(!text.contains("sluice_kube_"), "no Kubernetes families outside kube mode")
    }

    @Test func kubeFamilies() {
        let (metrics, base) = Fixtures.small()
        var process = base
        process.kube = KubeWatchStatus(
            watches: [.init(resource: "services", up: true), .init(resource: "endpointslices", up: false)],
            lastSyncMicros: 1_700_000_100_000_000)
        let text = Fixtures.render(metrics, process)
        #expect(text.contains("\nsluice_kube_watch_up{resource=\"services\"} 1\n"))
        #expect(text.contains("\nsluice_kube_watch_up{resource=\"endpointslices\"} 0\n"))
        #expect(text.contains("\nsluice_kube_last_sync_timestamp_seconds 1700000100\n"))
    }

    /// Every case of the three tables has a family, every family has HELP and TYPE once,
    /// and every sample belongs to the family declared last.
    @Test func everyFamilyIsDeclaredAndEveryCaseRendered() {
        let (metrics, process) = Fixtures.small()
        let text = Fixtures.render(metrics, process)
        var declared: [String: String] = [:]
        var current = ""
        var helps = Set<String>()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3)
            if line.hasPrefix("# HELP ") {
                #expect(helps.insert(String(parts[2])).inserted, "HELP twice for \(parts[2])")
            } else if line.hasPrefix("# TYPE ") {
                current = String(parts[2])
                declared[current] = String(parts[3])
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let ok =
                    name == current
                    || (declared[current] == "histogram"
                        && [current + "_bucket", current + "_sum", current + "_count"].contains(name))
                #expect(ok, "\(name) outside its family (\(current))")
            }
        }
        #expect(Set(declared.keys) == helps)
        let samples = MetricsText.parse(text)
        let families = Set(samples.map(\.name))
        // 13 frontend, 13 backend and 9 server families from the enums' cases.
        #expect(families.filter { $0.hasPrefix("sluice_frontend_") && !$0.contains("duration") }.count == 13)
        #expect(
            families.filter {
                $0.hasPrefix("sluice_backend_") && !$0.contains("duration") && $0 != "sluice_backend_active_servers"
            }.count == 13)
        #expect(families.filter { $0.hasPrefix("sluice_server_") && $0 != "sluice_server_up" }.count == 9)
        #expect(
            samples.filter { $0.name == "sluice_backend_timeouts_total" }.map { $0.labels["kind"]! }.sorted() == [
                "connect", "server", "tunnel",
            ])
        #expect(
            samples.filter { $0.name == "sluice_frontend_timeouts_total" }.map { $0.labels["kind"]! }.sorted() == [
                "client", "request_body", "request_head",
            ])
    }

    @Test func labelValuesAreEscaped() {
        let snapshot = Fixtures.snapshot(
            generation: 1, listeners: ["we\"b"], services: [("a\\b\"c\nd", ["10.0.0.1:80"])])
        let metrics = MetricsAggregate([LoopMetricsSample.empty(snapshot: snapshot)])!
        let text = Fixtures.render(metrics, ProcessView(startTimeMicros: 0, workers: 1))
        #expect(text.contains("sluice_backend_active_servers{proxy=\"a\\\\b\\\"c\\nd\"} 1\n"))
        #expect(text.contains("sluice_frontend_connections_total{proxy=\"we\\\"b\"} 0\n"))
        #expect(text.contains("sluice_server_up{proxy=\"a\\\\b\\\"c\\nd\",server=\"10.0.0.1:80\"} 1\n"))
        // Read back, the escapes give the names again.
        let up = MetricsText.parse(text).first { $0.name == "sluice_server_up" }
        #expect(up?.labels["proxy"] == "a\\b\"c\nd")
    }

    @Test func openMetricsForm() {
        let (metrics, process) = Fixtures.small()
        let text = Fixtures.render(metrics, process, .openMetrics)
        #expect(text.hasSuffix("\n# EOF\n"))
        #expect(text.split(separator: "\n").filter { $0 == "# EOF" }.count == 1)
        #expect(
            Fixtures.block("sluice_frontend_connections", in: text) == """
                # HELP sluice_frontend_connections Connections accepted by the listener.
                # TYPE sluice_frontend_connections counter
                sluice_frontend_connections_total{proxy="web"} 4
                """)
        let histogram = Fixtures.block("sluice_backend_http_request_duration_seconds", in: text)
        #expect(histogram.contains("# UNIT sluice_backend_http_request_duration_seconds seconds\n"))
        #expect(histogram.contains("_bucket{proxy=\"api\",le=\"1.0\"} 5\n"))
        #expect(histogram.contains("_bucket{proxy=\"api\",le=\"10.0\"} 5\n"))
        #expect(histogram.contains("_bucket{proxy=\"api\",le=\"0.005\"} 0\n"))
        #expect(text.contains("# UNIT sluice_process_start_time_seconds seconds\n"))
        #expect(text.contains("# UNIT sluice_backend_spliced_bytes bytes\n"))
        #expect(!text.contains("# TYPE sluice_reloads_total"))
        #expect(text.contains("# TYPE sluice_reloads counter\nsluice_reloads_total 3\n"))
        // A UNIT line only where the name ends in the unit.
        for line in text.split(separator: "\n") where line.hasPrefix("# UNIT ") {
            let parts = line.split(separator: " ")
            #expect(parts[2].hasSuffix("_" + parts[3]), "\(line)")
        }
    }

    @Test func negotiation() {
        #expect(MetricsFormat.negotiate(accept: nil) == .prometheus)
        #expect(MetricsFormat.negotiate(accept: "*/*") == .prometheus)
        #expect(MetricsFormat.negotiate(accept: "text/plain;version=0.0.4") == .prometheus)
        #expect(MetricsFormat.negotiate(accept: "application/openmetrics-text") == .openMetrics)
        // What Prometheus 2.x sends.
        #expect(
            MetricsFormat.negotiate(
                accept:
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ) == .openMetrics)
        #expect(
            MetricsFormat.negotiate(accept: "application/openmetrics-text;q=0.2, text/plain;q=0.9") == .prometheus)
        #expect(MetricsFormat.negotiate(accept: "application/openmetrics-text; q=0") == .prometheus)
    }
}
