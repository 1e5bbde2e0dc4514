import SluiceAdmin
import SluiceReactor
import SluiceRouting
import SluiceWire
import Testing

@Suite struct PagesTests {
    @Test func routesJSON() {
        let (metrics, _) = Fixtures.small()
        let out = ByteOutput()
        RoutesRenderer.render(metrics.snapshot, endpointDown: metrics.endpointDown, into: out)
        #expect(
            out.text == """
                {"generation":7,"listeners":[
                {"name":"web","protocol":"http","address":"127.0.0.1:8080","routes":[{"host":"0.example.com","path":"/","service":"api"}],"default":{"status":404}}],
                "services":[
                {"name":"api","algorithm":"roundrobin","endpoints":[{"address":"10.0.0.1:80","state":"up"},{"address":"10.0.0.2:80","state":"down"}]}]}

                """)
    }

    @Test func jsonAndHTMLEscapeNames() {
        let snapshot = Fixtures.snapshot(
            generation: 1, listeners: ["<b>\"x\""], services: [("a\"\\\n\u{1}", ["10.0.0.1:1"])])
        let metrics = MetricsAggregate([LoopMetricsSample.empty(snapshot: snapshot)])!
        let json = ByteOutput()
        StatsJSON.render(metrics, process: ProcessView(startTimeMicros: 0, workers: 1), into: json)
        #expect(json.text.contains("\"name\":\"a\\\"\\\\\\n\\u0001\""))
        let page = ByteOutput()
        StatsPage.render(metrics, process: ProcessView(startTimeMicros: 0, workers: 1), into: page)
        #expect(page.text.contains("&lt;b&gt;&quot;x&quot;"))
        #expect(!page.text.contains("<b>\"x\""))
    }

    @Test func statsPageShowsTablesAndQuantiles() {
        let (metrics, process) = Fixtures.small()
        let out = ByteOutput()
        StatsPage.render(metrics, process: process, into: out)
        let page = out.text
        #expect(page.hasPrefix("<!doctype html>"))
        for id in ["listeners", "services", "endpoints"] { #expect(page.contains("<table id=\"\(id)\">")) }
        #expect(
            page.contains("<tr data-name=\"api\"><td class=\"l\">api</td><td class=\"l\">roundrobin</td><td>1/2</td>"))
        // p50 22.5 ms, p90 437.5 ms, p99 493.75 ms (interpolated within the buckets).
        #expect(page.contains("<td>22.5 ms</td><td>437.5 ms</td><td>493."))
        #expect(page.contains("<td class=\"down\">DOWN</td>"))
        #expect(!page.contains("src="), "no external script")
        #expect(!page.contains("href=\"http"), "no external asset")
        let json = ByteOutput()
        StatsJSON.render(metrics, process: process, into: json)
        #expect(json.text.contains("\"p50\":0.0225,\"p90\":0.4375,\"p99\":0.49375"))
        #expect(json.text.contains("\"buckets\":[0,0,3,0,0,0,0,2,0,0,0,0,0,0,0]"))
    }

    @Test func topRatesAndIntervalQuantiles() {
        let snapshot = Fixtures.snapshot(generation: 1, services: [("api", ["10.0.0.1:80", "10.0.0.2:80"])])
        var before = LoopMetricsSample.empty(snapshot: snapshot)
        before.backends.add(0, .httpRequests, 100)
        before.backends.add(0, .responses5xx, 10)
        for _ in 0..<100 { before.requestDuration.record(0, micros: 3_000) }
        var after = before
        after.backends.add(0, .httpRequests, 50)
        after.backends.add(0, .responses5xx, 20)
        for _ in 0..<50 { after.requestDuration.record(0, micros: 200_000) }
        func scrape(_ sample: LoopMetricsSample) -> [MetricsText.Sample] {
            MetricsText.parse(
                Fixtures.render(MetricsAggregate([sample])!, ProcessView(startTimeMicros: 0, workers: 1)))
        }
        let rows = TopView.rows(previous: scrape(before), current: scrape(after), seconds: 2)
        #expect(rows.count == 1)
        #expect(rows[0].service == "api")
        #expect(rows[0].requestsPerSecond == 25)
        #expect(rows[0].errorsPerSecond == 10)
        #expect(rows[0].activeEndpoints == 2)
        #expect(rows[0].endpoints == 2)
        // Only the interval's 50 requests, all in (0.1, 0.25].
        #expect(abs((rows[0].p50 ?? 0) - 0.175) < 1e-9)
        let screen = TopView.render(rows, title: "t", limit: 10)
        #expect(screen.contains("api"))
        #expect(screen.contains("25.0"))
        #expect(screen.contains("175.0 ms"))
        let first = TopView.rows(previous: nil, current: scrape(after), seconds: 0)
        #expect(first[0].requestsPerSecond == nil)
    }

    @Test func requestInterpretation() {
        func interpret(_ text: String) -> AdminRequest? {
            let bytes = Array(text.utf8)
            let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 16)
            defer { fields.deallocate() }
            return bytes.withUnsafeBytes { raw in
                guard case .success(let head) = HTTPRequestParser.parse(raw, fields: fields, limits: HTTPLimits())
                else { return nil }
                return AdminRequest(head, buffer: raw, fields: UnsafeBufferPointer(fields))
            }
        }
        let get = interpret("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text\r\n\r\n")
        #expect(get?.outcome == .serve(.metrics(.openMetrics, .all)))
        #expect(get?.keepAlive == true)
        let scoped = interpret("GET /metrics?scope=backend&scope=server HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(scoped?.outcome == .serve(.metrics(.prometheus, [.backend, .server])))
        #expect(interpret("HEAD /stats HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")?.keepAlive == false)
        #expect(interpret("HEAD /stats HTTP/1.1\r\nHost: a\r\n\r\n")?.headOnly == true)
        #expect(interpret("DELETE /routes HTTP/1.1\r\nHost: a\r\n\r\n")?.outcome == .methodNotAllowed)
        #expect(interpret("DELETE /other HTTP/1.1\r\nHost: a\r\n\r\n")?.outcome == .notFound)
        #expect(interpret("GET http://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n")?.outcome == .serve(.health))
        #expect(interpret("GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")?.keepAlive == false)
        #expect(interpret("GET /healthz HTTP/1.0\r\n\r\n")?.keepAlive == false)
    }

    @Test func numberFormatting() {
        let out = ByteOutput(capacity: 8)
        out.write(microsAsSeconds: 1_250_000)
        out.write(" ")
        out.write(microsAsSeconds: 1)
        out.write(" ")
        out.write(microsAsSeconds: 3_000_000)
        out.write(" ")
        out.write(decimal: -42)
        out.write(" ")
        out.write(unsigned: UInt64.max)
        out.write(" ")
        out.write(fixed: 12.0, places: 1, keepZeros: true)
        out.write(" ")
        out.write(fixed: .nan)
        #expect(out.text == "1.25 0.000001 3 -42 18446744073709551615 12.0 null")
    }
}
