extension RoutingSnapshot {
    /// A human-readable table, one line per listener, route, service and endpoint (for
    /// `sluice check`). Settings that only HTTP or TLS use are printed when such a listener
    /// exists.
    public func render() -> String {
        var lines: [String] = []
        lines.append("generation \(generation)")
        lines.append("listeners:")
        for listener in listeners {
            let head = "  \(listener.name)  \(listener.protocol.rawValue)  \(listener.address)"
            switch listener.protocol {
            case .tcp:
                lines.append("\(head) -> \(services[listener.service].name)")
            case .http:
                lines.append("\(head) -> routes")
                lines += renderRoutes(routeTables[listener.routes])
            case .tls:
                lines.append("\(head) -> routes by server name")
                if listener.tlsContext >= 0 {
                    lines.append("    certificates \(tlsContexts[listener.tlsContext].summary)")
                }
                lines += renderServerNameRoutes(routeTables[listener.routes])
                if listener.terminatedRoutes >= 0 {
                    lines.append("    terminated requests:")
                    lines += renderRoutes(routeTables[listener.terminatedRoutes]).map { "  " + $0 }
                }
            }
            if listener.http2 {
                lines.append(
                    listener.protocol == .tls ? "    http2 (ALPN h2, http/1.1)" : "    http2 (prior knowledge)")
            }
            if !listener.acceptProxy.isEmpty {
                lines.append("    acceptProxy \(listener.acceptProxy.map(\.description).joined(separator: ", "))")
            }
        }
        lines.append("services:")
        for service in services {
            var algorithm = service.algorithm.rawValue
            if let cookie = service.cookieName { algorithm += "(\(String(decoding: cookie, as: UTF8.self)))" }
            if let version = service.proxyProtocol { algorithm += "  proxyProtocol \(version.rawValue)" }
            if service.upstreamProtocol != .http1 { algorithm += "  protocol \(service.upstreamProtocol.rawValue)" }
            if let tls = service.upstreamTLS { algorithm += "  \(tls)" }
            lines.append("  \(service.name)  \(algorithm)  \(service.endpoints.count) endpoint(s)")
            for index in service.endpoints {
                lines.append("    \(endpoints[index].address)")
            }
        }
        lines.append(
            "timeouts: connect \(timeouts.connectMillis) ms, client \(timeouts.clientMillis) ms, "
                + "server \(timeouts.serverMillis) ms, tunnel \(timeouts.tunnelMillis) ms"
        )
        lines.append("limits: maxConnections \(limits.maxConnections), connectTries \(limits.connectTries)")
        if listeners.contains(where: { $0.protocol == .http }) {
            lines.append(
                "http: requestHead \(timeouts.requestHeadMillis) ms, "
                    + "upstreamIdlePerEndpoint \(limits.upstreamIdlePerEndpoint), "
                    + "upstreamIdle \(limits.upstreamIdleMillis) ms"
            )
        }
        if listeners.contains(where: { $0.protocol == .tls }) {
            lines.append("tls: tlsHello \(timeouts.tlsHelloMillis) ms")
        }
        return lines.joined(separator: "\n")
    }

    /// `    HOST PATH -> SERVICE` (or `-> redirect https[:PORT]`), in configuration order, then
    /// the default.
    private func renderRoutes(_ table: HTTPRouteTable) -> [String] {
        var lines: [String] = []
        for route in table.routes {
            let path = String(decoding: route.pathPrefix, as: UTF8.self)
            if route.redirectHTTPS {
                let port = route.httpsPort == 443 ? "" : ":\(route.httpsPort)"
                lines.append("    \(route.host) \(path) -> redirect https\(port)")
                continue
            }
            var line = "    \(route.host) \(path) -> \(services[route.service].name)"
            if route.stripLength > 0 { line += " (strip \(path))" }
            if let maxAge = route.hstsMaxAge { line += " (hsts max-age=\(maxAge))" }
            lines.append(line)
        }
        let fallback = table.defaultBackend
        if let service = fallback.service {
            lines.append("    default -> \(services[service].name)")
        } else {
            let body = String(decoding: fallback.body, as: UTF8.self).debugDescription
            lines.append("    default -> \(fallback.status) \(body)")
        }
        return lines
    }

    /// `    HOST -> SERVICE` or `-> terminate` (a TLS route's path is always `/`), then the
    /// default: `terminate`, a service, or `close`.
    private func renderServerNameRoutes(_ table: HTTPRouteTable) -> [String] {
        var lines = table.routes.map { "    \($0.host) -> \($0.terminate ? "terminate" : services[$0.service].name)" }
        let fallback =
            table.defaultBackend.terminate
            ? "terminate" : table.defaultBackend.service.map { services[$0].name } ?? "close"
        lines.append("    default -> \(fallback)")
        return lines
    }
}
