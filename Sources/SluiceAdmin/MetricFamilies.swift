import SluiceReactor

// The exposition's families: names, types, help texts, and which table cell each sample
// reads. Names follow HAProxy's Prometheus exporter (`haproxy_frontend_*{proxy}`,
// `haproxy_backend_*{proxy}`, `haproxy_server_*{proxy,server}`) with the `sluice_` prefix, so
// dashboards carry over with a rename. Every case of `FrontendMetric`, `BackendMetric` and
// `ServerMetric` is named by an exhaustive switch: a new case does not compile until it has
// a family here.

enum MetricType: Sendable {
    case counter, gauge, histogram

    var name: StaticString {
        switch self {
        case .counter: "counter"
        case .gauge: "gauge"
        case .histogram: "histogram"
        }
    }
}

/// One family: its name (without `_total` for counters), type, help and unit (OpenMetrics
/// `# UNIT`, a suffix of the name; nil when the name has none).
struct FamilyInfo: Sendable {
    let name: StaticString
    let type: MetricType
    let help: StaticString
    let unit: StaticString?

    init(_ name: StaticString, _ type: MetricType, _ help: StaticString, unit: StaticString? = nil) {
        self.name = name
        self.type = type
        self.help = help
        self.unit = unit
    }

    var nameText: String { name.description }
}

/// A family whose samples are cells of a `MetricTable`: per row, one sample per member, each
/// member naming its cell and, for families with a label (`code`, `kind`), the label's value.
struct TableFamily<Metric: Sendable>: Sendable {
    let info: FamilyInfo
    let label: StaticString?
    var members: [(metric: Metric, value: StaticString?)]
}

/// Groups the cases of a table in case order by the family each names.
func tableFamilies<Metric: Sendable>(
    _ cases: [Metric], _ describe: (Metric) -> (FamilyInfo, label: StaticString?, value: StaticString?)
) -> [TableFamily<Metric>] {
    var families: [TableFamily<Metric>] = []
    for metric in cases {
        let (info, label, value) = describe(metric)
        if let at = families.firstIndex(where: { $0.info.nameText == info.nameText }) {
            families[at].members.append((metric, value))
        } else {
            families.append(TableFamily(info: info, label: label, members: [(metric, value)]))
        }
    }
    return families
}

enum Families {
    static let frontend = tableFamilies(FrontendMetric.allCases) { metric in
        switch metric {
        case .connections:
            (FamilyInfo("sluice_frontend_connections", .counter, "Connections accepted by the listener."), nil, nil)
        case .currentConnections:
            (
                FamilyInfo("sluice_frontend_current_connections", .gauge, "Connections of the listener open now."),
                nil, nil
            )
        case .refused:
            (
                FamilyInfo(
                    "sluice_frontend_refused_connections", .counter,
                    "Connections refused at the connection limit or for want of descriptors."), nil, nil
            )
        case .httpRequests:
            (FamilyInfo("sluice_frontend_http_requests", .counter, "HTTP requests received."), nil, nil)
        case .responses1xx: (responses(.frontend), "code", "1xx")
        case .responses2xx: (responses(.frontend), "code", "2xx")
        case .responses3xx: (responses(.frontend), "code", "3xx")
        case .responses4xx: (responses(.frontend), "code", "4xx")
        case .responses5xx: (responses(.frontend), "code", "5xx")
        case .responsesOther: (responses(.frontend), "code", "other")
        case .bytesIn:
            (FamilyInfo("sluice_frontend_bytes_in", .counter, "Bytes received from clients."), nil, nil)
        case .bytesOut:
            (FamilyInfo("sluice_frontend_bytes_out", .counter, "Bytes sent to clients."), nil, nil)
        case .requestErrors:
            (
                FamilyInfo(
                    "sluice_frontend_request_errors", .counter,
                    "Malformed requests (400, 413, 414, 431, 501) and bad PROXY headers."), nil, nil
            )
        case .noRoute:
            (
                FamilyInfo(
                    "sluice_frontend_no_route", .counter, "Requests no route matched (the default backend answered)."),
                nil, nil
            )
        case .timeoutRequestHead: (timeouts(.frontend), "kind", "request_head")
        case .timeoutRequestBody: (timeouts(.frontend), "kind", "request_body")
        case .timeoutClient: (timeouts(.frontend), "kind", "client")
        case .tlsHandshakes:
            (FamilyInfo("sluice_frontend_tls_handshakes", .counter, "TLS handshakes completed here."), nil, nil)
        case .tlsResumptions:
            (
                FamilyInfo("sluice_frontend_tls_resumptions", .counter, "TLS handshakes that resumed a session."),
                nil, nil
            )
        case .tlsFailures:
            (FamilyInfo("sluice_frontend_tls_failures", .counter, "TLS handshakes that failed."), nil, nil)
        }
    }

    static let backend = tableFamilies(BackendMetric.allCases) { metric in
        switch metric {
        case .connections:
            (
                FamilyInfo(
                    "sluice_backend_connections", .counter,
                    "Connections (tcp, passthrough) or requests (http) sent to the service."), nil, nil
            )
        case .currentConnections:
            (
                FamilyInfo("sluice_backend_current_connections", .gauge, "Connections to the service open now."),
                nil, nil
            )
        case .httpRequests:
            (FamilyInfo("sluice_backend_http_requests", .counter, "HTTP requests sent to the service."), nil, nil)
        case .responses1xx: (responses(.backend), "code", "1xx")
        case .responses2xx: (responses(.backend), "code", "2xx")
        case .responses3xx: (responses(.backend), "code", "3xx")
        case .responses4xx: (responses(.backend), "code", "4xx")
        case .responses5xx: (responses(.backend), "code", "5xx")
        case .responsesOther: (responses(.backend), "code", "other")
        case .bytesIn:
            (FamilyInfo("sluice_backend_bytes_in", .counter, "Bytes sent to the service."), nil, nil)
        case .bytesOut:
            (FamilyInfo("sluice_backend_bytes_out", .counter, "Bytes received from the service."), nil, nil)
        case .splicedBytes:
            (
                FamilyInfo(
                    "sluice_backend_spliced_bytes", .counter, "Bytes moved by splice, not copied, either direction.",
                    unit: "bytes"), nil, nil
            )
        case .connectionErrors:
            (
                FamilyInfo(
                    "sluice_backend_connection_errors", .counter, "Connects to the service's endpoints that failed."),
                nil, nil
            )
        case .retries:
            (FamilyInfo("sluice_backend_retries", .counter, "Connects retried on another endpoint."), nil, nil)
        case .timeoutConnect: (timeouts(.backend), "kind", "connect")
        case .timeoutServer: (timeouts(.backend), "kind", "server")
        case .timeoutTunnel: (timeouts(.backend), "kind", "tunnel")
        case .reuses:
            (
                FamilyInfo(
                    "sluice_backend_connection_reuses", .counter, "Requests sent on an idle upstream connection."),
                nil, nil
            )
        case .noEndpoint:
            (
                FamilyInfo("sluice_backend_no_endpoint", .counter, "Requests or connections with no usable endpoint."),
                nil, nil
            )
        case .responseErrors:
            (
                FamilyInfo(
                    "sluice_backend_response_errors", .counter,
                    "Answers that could not be forwarded (502: bad head, reset before a response)."), nil, nil
            )
        }
    }

    static let server = tableFamilies(ServerMetric.allCases) { metric in
        switch metric {
        case .connections:
            (
                FamilyInfo(
                    "sluice_server_connections", .counter,
                    "Connections (tcp, passthrough) or requests (http) sent to the endpoint."), nil, nil
            )
        case .currentConnections:
            (
                FamilyInfo("sluice_server_current_connections", .gauge, "Connections to the endpoint open now."),
                nil, nil
            )
        case .httpRequests:
            (FamilyInfo("sluice_server_http_requests", .counter, "HTTP requests sent to the endpoint."), nil, nil)
        case .responses1xx: (responses(.server), "code", "1xx")
        case .responses2xx: (responses(.server), "code", "2xx")
        case .responses3xx: (responses(.server), "code", "3xx")
        case .responses4xx: (responses(.server), "code", "4xx")
        case .responses5xx: (responses(.server), "code", "5xx")
        case .responsesOther: (responses(.server), "code", "other")
        case .bytesIn:
            (FamilyInfo("sluice_server_bytes_in", .counter, "Bytes sent to the endpoint."), nil, nil)
        case .bytesOut:
            (FamilyInfo("sluice_server_bytes_out", .counter, "Bytes received from the endpoint."), nil, nil)
        case .connectionErrors:
            (FamilyInfo("sluice_server_connection_errors", .counter, "Connects to the endpoint that failed."), nil, nil)
        case .timeoutConnect: (timeouts(.server), "kind", "connect")
        case .reuses:
            (
                FamilyInfo(
                    "sluice_server_connection_reuses", .counter, "Requests sent on an idle connection to the endpoint."),
                nil, nil
            )
        }
    }

    enum Level { case frontend, backend, server }

    static func responses(_ level: Level) -> FamilyInfo {
        switch level {
        case .frontend:
            FamilyInfo("sluice_frontend_http_responses", .counter, "HTTP responses sent to clients, by status class.")
        case .backend:
            FamilyInfo("sluice_backend_http_responses", .counter, "HTTP responses from the service, by status class.")
        case .server:
            FamilyInfo("sluice_server_http_responses", .counter, "HTTP responses from the endpoint, by status class.")
        }
    }

    static func timeouts(_ level: Level) -> FamilyInfo {
        switch level {
        case .frontend: FamilyInfo("sluice_frontend_timeouts", .counter, "Client-side timeouts, by kind.")
        case .backend: FamilyInfo("sluice_backend_timeouts", .counter, "Service-side timeouts, by kind.")
        case .server: FamilyInfo("sluice_server_timeouts", .counter, "Endpoint timeouts, by kind.")
        }
    }

    // Families computed from the tables or the process, not one cell each.
    static let serverUp = FamilyInfo(
        "sluice_server_up", .gauge, "1 while no event loop passes the endpoint over after a failure, else 0.")
    static let backendActiveServers = FamilyInfo(
        "sluice_backend_active_servers", .gauge, "Endpoints of the service that are up.")
    static let requestDuration = FamilyInfo(
        "sluice_backend_http_request_duration_seconds", .histogram,
        "HTTP request duration, from the whole request head to the end of the response.", unit: "seconds")
    static let connectDuration = FamilyInfo(
        "sluice_backend_connect_duration_seconds", .histogram, "Upstream connect duration.", unit: "seconds")
    static let tlsHandshakeDuration = FamilyInfo(
        "sluice_frontend_tls_handshake_duration_seconds", .histogram, "TLS handshake duration (terminated here).",
        unit: "seconds")
    static let startTime = FamilyInfo(
        "sluice_process_start_time_seconds", .gauge, "When the process started, in seconds since the epoch.",
        unit: "seconds")
    static let workers = FamilyInfo("sluice_workers", .gauge, "Event loops.")
    static let generation = FamilyInfo(
        "sluice_generation", .gauge, "The routing table generation in force (the newest any loop runs).")
    static let reloads = FamilyInfo("sluice_reloads", .counter, "Routing tables applied after the first.")
    static let reloadFailures = FamilyInfo(
        "sluice_reload_failures", .counter, "Reloads refused (bad configuration, a listener not bound, a loop late).")
    static let currentConnections = FamilyInfo(
        "sluice_current_connections", .gauge, "Connections open now, every loop and listener.")
    static let closes = FamilyInfo(
        "sluice_connection_closes", .counter, "Connections closed, by reason and the side the cause was on.")
    static let accessLogRecords = FamilyInfo(
        "sluice_access_log_records", .counter, "Access-log records taken by the writer.")
    static let accessLogDropped = FamilyInfo(
        "sluice_access_log_dropped", .counter, "Access-log records dropped because a loop's ring was full.")
    static let ioBackend = FamilyInfo(
        "sluice_io_backend", .gauge, "1 for the I/O backend the event loops run on (epoll or io_uring).")
    static let ioBufferExhaustions = FamilyInfo(
        "sluice_io_uring_buffer_exhaustions", .counter,
        "Sockets moved to polling because a loop's ring of provided receive buffers ran out.")
    static let ioBuffersInUse = FamilyInfo(
        "sluice_io_uring_buffers_in_use", .gauge, "Provided receive buffers holding input not yet read.")
    static let h2Sessions = FamilyInfo(
        "sluice_http2_connections", .counter, "Client connections that speak HTTP/2 (ALPN h2 or prior knowledge).")
    static let h2Streams = FamilyInfo(
        "sluice_http2_streams", .counter, "HTTP/2 streams opened by clients, each one request.")
    static let h2Resets = FamilyInfo(
        "sluice_http2_resets", .counter,
        "HTTP/2 streams reset before their response ended, by the side that reset them (client or proxy).")
    static let h2ProtocolErrors = FamilyInfo(
        "sluice_http2_protocol_errors", .counter, "HTTP/2 connections ended by a protocol error from the client.")
    static let h2Floods = FamilyInfo(
        "sluice_http2_floods", .counter,
        "HTTP/2 connections ended with ENHANCE_YOUR_CALM: too many resets, control frames or empty frames.")
    static let h2UpstreamSessions = FamilyInfo(
        "sluice_http2_upstream_connections", .counter,
        "HTTP/2 connections opened to endpoints (services with protocol h2c or h2).")
    static let h2UpstreamStreams = FamilyInfo(
        "sluice_http2_upstream_streams", .counter, "Requests sent to endpoints as HTTP/2 streams.")
    static let h2UpstreamResets = FamilyInfo(
        "sluice_http2_upstream_resets", .counter,
        "HTTP/2 streams to endpoints that ended before their response did (reset, or the connection lost).")
    static let h2UpstreamFailures = FamilyInfo(
        "sluice_http2_upstream_connection_failures", .counter,
        "HTTP/2 connections to endpoints that failed: connect refused or timed out, lost, or a protocol error.")
    static let h2UpstreamTLSHandshakes = FamilyInfo(
        "sluice_http2_upstream_tls_handshakes", .counter,
        "TLS handshakes completed with endpoints (services with protocol h2).")
    static let h2UpstreamTLSFailures = FamilyInfo(
        "sluice_http2_upstream_tls_failures", .counter,
        "TLS handshakes with endpoints that failed, by reason: the certificate did not verify, the endpoint did not select ALPN h2, or another handshake failure."
    )
    static let kubeWatchUp = FamilyInfo(
        "sluice_kube_watch_up", .gauge, "1 while the watch of the resource streams, else 0 (listing, backing off).")
    static let kubeLastSync = FamilyInfo(
        "sluice_kube_last_sync_timestamp_seconds", .gauge,
        "When the table in force last matched the cluster state, in seconds since the epoch.", unit: "seconds")
}
