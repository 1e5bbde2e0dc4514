import SluiceReactor
import SluiceSystem

/// The answers of the admin paths, built from an `AdminSource`. Off the admin thread for the
/// two that wait (`/healthz` and the collecting paths: see `AdminWorker`).
public enum AdminAnswers {
    public static func index() -> AdminResponse {
        .text(
            200,
            """
            sluice admin
            /healthz      200 while the event loops answer (503 otherwise)
            /readyz       200 once the table is in force and until stopping
            /metrics      Prometheus text (OpenMetrics on Accept: application/openmetrics-text)
            /routes       the routing table in force, JSON
            /stats        statistics page, HTML
            /stats.json   what the page shows, JSON

            """)
    }

    public static func ready(_ source: AdminSource) -> AdminResponse {
        source.ready() ? .text(200, "ok\n") : .text(503, "not ready\n")
    }

    public static func health(_ source: AdminSource) -> AdminResponse {
        source.healthy() ? .text(200, "ok\n") : .text(503, "not ready\n")
    }

    /// Collects the loops' tables once and renders every route of `routes` from them (in
    /// order); a 503 for each when a loop did not answer within `timeoutMillis`.
    public static func collected(_ routes: [AdminRoute], source: AdminSource, timeoutMillis: Int64)
        -> [AdminResponse]
    {
        let started = MonotonicClock.nowMicros()
        guard let samples = source.collect(timeoutMillis), let metrics = MetricsAggregate(samples) else {
            return routes.map { _ in .text(503, "the event loops did not answer in time\n") }
        }
        let process = source.processView()
        let collected = MonotonicClock.nowMicros()
        return routes.map { route in
            let renderStarted = MonotonicClock.nowMicros()
            var response = render(route, metrics, process)
            response.timing = (collected - started, MonotonicClock.nowMicros() - renderStarted)
            return response
        }
    }

    /// One collecting route's answer from a scrape's tables.
    public static func render(_ route: AdminRoute, _ metrics: MetricsAggregate, _ process: ProcessView)
        -> AdminResponse
    {
        switch route {
        case .metrics(let format, let scope):
            let perEndpoint = scope.contains(.server) ? 1800 : 200
            let body = ByteOutput(capacity: 4096 + metrics.snapshot.endpoints.count * perEndpoint)
            MetricsRenderer(format: format, scope: scope, into: body).render(metrics, process: process)
            return AdminResponse(status: 200, contentType: format.contentType, body: body)
        case .routes:
            let body = ByteOutput(capacity: 1024 + metrics.snapshot.endpoints.count * 48)
            RoutesRenderer.render(metrics.snapshot, endpointDown: metrics.endpointDown, into: body)
            return AdminResponse(status: 200, contentType: "application/json", body: body)
        case .stats:
            let body = ByteOutput(capacity: 16384 + metrics.snapshot.endpoints.count * 300)
            StatsPage.render(metrics, process: process, into: body)
            return AdminResponse(status: 200, contentType: "text/html; charset=utf-8", body: body)
        case .statsJSON:
            let body = ByteOutput(capacity: 4096 + metrics.snapshot.endpoints.count * 200)
            StatsJSON.render(metrics, process: process, into: body)
            return AdminResponse(status: 200, contentType: "application/json", body: body)
        case .index: return index()
        case .health, .ready: return .text(500, "not a collecting path\n")
        }
    }
}
