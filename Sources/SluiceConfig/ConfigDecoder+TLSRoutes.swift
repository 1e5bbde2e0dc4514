import SluiceRouting
import Yams

/// The `routes` and `default` of a TLS listener: connections go by the ClientHello's server
/// name, so a route is a host pattern and a service, and the default is a service or `close`.
extension ConfigDecoder {
    /// The route table of the TLS listener `entry` (every path `/`), or nil after a report. It
    /// needs at least one route or a default; host patterns must be unique within the listener.
    mutating func tlsRoutes(_ entry: Fields, path: String, services: ServiceTable?) -> HTTPRouteTable? {
        guard entry["routes"] != nil || entry["default"] != nil else {
            report(
                "\(path).routes", at: entry.mark,
                "required field is missing (a tls listener needs routes or a default)")
            return nil
        }
        let failuresBefore = diagnostics.count
        var routes: [HTTPRoute] = []
        if let node = entry["routes"], let items = sequence(node, path: "\(path).routes") {
            if items.isEmpty, entry["default"] == nil {
                report("\(path).routes", at: node, "at least one route is required when there is no default")
            }
            var firstIndexByHost: [HostPattern: Int] = [:]
            for (index, item) in items.enumerated() {
                guard let route = tlsRoute(item, path: "\(path).routes[\(index)]", services: services) else {
                    continue
                }
                if let first = firstIndexByHost[route.host] {
                    report(
                        "\(path).routes[\(index)]", at: item,
                        "host '\(route.host)' is already routed by \(path).routes[\(first)]")
                    continue
                }
                firstIndexByHost[route.host] = index
                routes.append(route)
            }
        }
        // Without a default, connections no route matches are closed.
        var fallback = DefaultBackend(service: nil)
        if let node = entry["default"], let backend = tlsDefault(node, path: "\(path).default", services: services) {
            fallback = backend
        }
        guard diagnostics.count == failuresBefore else { return nil }
        return HTTPRouteTable(routes: routes, defaultBackend: fallback)
    }

    /// One route: `host` (a name or `*.domain`, no port) and `service`. `path` and `stripPath`
    /// are recognised only to say they belong to http listeners.
    private mutating func tlsRoute(_ node: Node, path: String, services: ServiceTable?) -> HTTPRoute? {
        guard let entry = fields(node, path: path, known: ["host", "path", "stripPath", "service"]) else { return nil }
        var valid = true
        for field in ["path", "stripPath"] {
            guard let node = entry[field] else { continue }
            report(
                "\(path).\(field)", at: node,
                "a tls route matches the server name only; paths need an http listener")
            valid = false
        }
        var host = required(entry, "host").flatMap { hostPattern($0, path: "\(path).host") }
        if let pattern = host, pattern.port != nil, let node = entry["host"] {
            let name = HostPattern(name: pattern.name, wildcard: pattern.wildcard)
            report(
                "\(path).host", at: node,
                "'\(pattern)' names a port, but a tls route matches the server name (SNI), which carries none; "
                    + "write '\(name)'")
            host = nil
        }
        let service = required(entry, "service").flatMap {
            serviceReference($0, path: "\(path).service", in: services)
        }
        guard valid, let host, let service else { return nil }
        return HTTPRoute(host: host, service: service)
    }

    /// `default`: `service: NAME` (connections no route matches go there) or `close: true`.
    /// nil after a report.
    private mutating func tlsDefault(_ node: Node, path: String, services: ServiceTable?) -> DefaultBackend? {
        let failuresBefore = diagnostics.count
        let known = ["service", "close", "status", "body"]
        guard let entry = fields(node, path: path, known: known) else { return nil }
        for field in ["status", "body"] {
            guard let node = entry[field] else { continue }
            report(
                "\(path).\(field)", at: node,
                "only http listeners answer with a status and body; a tls default is 'service: NAME' or 'close: true'")
        }
        let close = entry["close"].flatMap { bool($0, path: "\(path).close") } ?? false
        let service = entry["service"].flatMap { serviceReference($0, path: "\(path).service", in: services) }
        if close, entry["service"] != nil {
            report(path, at: entry.mark, "give either 'service' or 'close: true', not both")
            return nil
        }
        // Anything reported already (a bad field, an unknown service) says enough.
        guard diagnostics.count == failuresBefore else { return nil }
        if close { return DefaultBackend(service: nil) }
        guard entry["service"] != nil else {
            report(path, at: entry.mark, "a tls default is 'service: NAME' or 'close: true'")
            return nil
        }
        // nil without a report: the services section could not be read, so names are unchecked.
        guard let service else { return nil }
        return DefaultBackend(service: service)
    }
}
