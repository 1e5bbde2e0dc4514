import SluiceRouting
import Yams

/// The `routes` and `default` of a TLS listener. Connections go by the ClientHello's server
/// name: a passthrough route is a host pattern and a service, and the default is a service
/// or `close`. With `certificates`, a route or the default may say `terminate: true`: the
/// connection is decrypted here and its requests routed by host and path like an http
/// listener's, by a second table built from the terminated routes.
extension ConfigDecoder {
    /// What a tls listener's routes yield: the table looked up with the server name, and, when
    /// anything terminates, the table for the decrypted requests.
    struct TLSRouteTables {
        var serverNames: HTTPRouteTable
        var terminated: HTTPRouteTable?
    }

    /// The route tables of the TLS listener `entry`, or nil after a report. It needs at least
    /// one route or a default. A passthrough host appears once; a terminated host may appear
    /// with several paths, but never also as passthrough. `terminating` says whether the
    /// listener has `certificates` (given, even if invalid: their own reports say enough).
    mutating func tlsRoutes(
        _ entry: Fields, path: String, services: ServiceTable?, terminating: Bool
    ) -> TLSRouteTables? {
        guard entry["routes"] != nil || entry["default"] != nil else {
            report(
                "\(path).routes", at: entry.mark,
                "required field is missing (a tls listener needs routes or a default)")
            return nil
        }
        let failuresBefore = diagnostics.count
        var passthrough: [HTTPRoute] = []
        var terminated: [HTTPRoute] = []
        if let node = entry["routes"], let items = sequence(node, path: "\(path).routes") {
            if items.isEmpty, entry["default"] == nil {
                report("\(path).routes", at: node, "at least one route is required when there is no default")
            }
            var passthroughIndexByHost: [HostPattern: Int] = [:]
            var terminatedIndexByHost: [HostPattern: Int] = [:]
            var terminatedIndexByKey: [TerminatedKey: Int] = [:]
            for (index, item) in items.enumerated() {
                let itemPath = "\(path).routes[\(index)]"
                guard let route = tlsRoute(item, path: itemPath, services: services, terminating: terminating) else {
                    continue
                }
                let host = route.host
                if let first = passthroughIndexByHost[host] {
                    let reason =
                        route.terminate
                        ? "host '\(host)' is passed through by \(path).routes[\(first)]; a server name is either "
                            + "passed through or terminated"
                        : "host '\(host)' is already routed by \(path).routes[\(first)]"
                    report(itemPath, at: item, reason)
                    continue
                }
                if route.terminate {
                    let key = TerminatedKey(host: host, path: route.pathPrefix)
                    if let first = terminatedIndexByKey[key] {
                        let pathText = String(decoding: route.pathPrefix, as: UTF8.self)
                        report(
                            itemPath, at: item,
                            "host '\(host)' with path '\(pathText)' is already routed by \(path).routes[\(first)]")
                        continue
                    }
                    terminatedIndexByKey[key] = index
                    if terminatedIndexByHost[host] == nil { terminatedIndexByHost[host] = index }
                    terminated.append(route)
                } else {
                    if let first = terminatedIndexByHost[host] {
                        report(
                            itemPath, at: item,
                            "host '\(host)' is terminated by \(path).routes[\(first)]; a server name is either "
                                + "passed through or terminated")
                        continue
                    }
                    passthroughIndexByHost[host] = index
                    passthrough.append(route)
                }
            }
        }
        // Without a default, connections no route matches are closed.
        var fallback = TLSDefault(serverNames: DefaultBackend(service: nil), terminated: nil)
        if let node = entry["default"],
            let given = tlsDefault(node, path: "\(path).default", services: services, terminating: terminating)
        {
            fallback = given
        }
        guard diagnostics.count == failuresBefore else { return nil }

        // The server name table: passthrough routes, and each terminated host once.
        var serverNameRoutes = passthrough
        var seen: Set<HostPattern> = []
        for route in terminated where seen.insert(route.host).inserted {
            serverNameRoutes.append(HTTPRoute(host: route.host, service: -1, terminate: true))
        }
        let serverNames = HTTPRouteTable(routes: serverNameRoutes, defaultBackend: fallback.serverNames)
        guard !terminated.isEmpty || fallback.terminated != nil else {
            return TLSRouteTables(serverNames: serverNames, terminated: nil)
        }
        // The decrypted requests: like an http listener's routes, without the terminate mark.
        let requestRoutes = terminated.map { route in
            var route = route
            route.terminate = false
            return route
        }
        return TLSRouteTables(
            serverNames: serverNames,
            terminated: HTTPRouteTable(routes: requestRoutes, defaultBackend: fallback.terminated ?? DefaultBackend()))
    }

    /// Terminated routes of one listener may not share host and path, as on an http listener.
    private struct TerminatedKey: Hashable {
        var host: HostPattern
        var path: [UInt8]
    }

    /// One route: `host` (a name or `*.domain`, no port) and `service`; with `terminate: true`
    /// also `path`, `stripPath` and `hsts` (max-age seconds). The returned route has
    /// `terminate` set for terminated routes, and their path, strip and HSTS field.
    private mutating func tlsRoute(
        _ node: Node, path: String, services: ServiceTable?, terminating: Bool
    ) -> HTTPRoute? {
        let known = ["host", "path", "stripPath", "service", "terminate", "hsts"]
        guard let entry = fields(node, path: path, known: known) else { return nil }
        let failuresBefore = diagnostics.count
        let terminate = entry["terminate"].map { bool($0, path: "\(path).terminate") } ?? false
        if terminate == true, !terminating, let node = entry["terminate"] {
            report(
                "\(path).terminate", at: node,
                "terminating needs certificates: add 'certificates' (cert and key files) to this listener")
        }
        if terminate == false {
            for field in ["path", "stripPath"] {
                guard let node = entry[field] else { continue }
                report(
                    "\(path).\(field)", at: node,
                    "a passthrough tls route matches the server name only; paths need 'terminate: true' or an "
                        + "http listener")
            }
            if let node = entry["hsts"] {
                report(
                    "\(path).hsts", at: node,
                    "only terminated routes add Strict-Transport-Security; add 'terminate: true' or remove hsts")
            }
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
        // Decrypted requests are proxied as HTTP, so their services follow the http rules.
        let service = required(entry, "service").flatMap { node in
            terminate == true
                ? httpServiceReference(node, path: "\(path).service", in: services)
                : serviceReference(node, path: "\(path).service", in: services)
        }
        guard diagnostics.count == failuresBefore, let terminate, let host, let service else { return nil }
        guard terminate else { return HTTPRoute(host: host, service: service) }

        let prefix = entry["path"].map { pathPrefix($0, path: "\(path).path") } ?? [UInt8(ascii: "/")]
        let strip = entry["stripPath"].map { bool($0, path: "\(path).stripPath") } ?? false
        // Two years is what the HSTS preload list asks for; a larger value is most likely a typo.
        let maxAge = entry["hsts"].map { integer($0, path: "\(path).hsts", in: 0...Self.maximumHSTSSeconds) }
        guard let prefix, let strip, maxAge != .some(nil) else { return nil }
        return HTTPRoute(
            host: host, pathPrefix: prefix, stripPath: strip, service: service, terminate: true,
            hstsField: maxAge.flatMap { $0 }.map { HTTPRoute.hstsField(maxAge: $0) })
    }

    /// The largest `hsts` accepted: ten years, in seconds.
    static let maximumHSTSSeconds = 315_360_000

    /// A tls default: what the server name table does with unknown names, and, when it
    /// terminates, the default of the decrypted requests.
    private struct TLSDefault {
        var serverNames: DefaultBackend
        var terminated: DefaultBackend?
    }

    /// `default`: `service: NAME` (connections no route matches go there), `close: true`, or
    /// `terminate: true` with the `status`/`body` or `service` of an http default for the
    /// decrypted requests no terminated route matches. nil after a report.
    private mutating func tlsDefault(
        _ node: Node, path: String, services: ServiceTable?, terminating: Bool
    ) -> TLSDefault? {
        let failuresBefore = diagnostics.count
        let known = ["service", "close", "status", "body", "terminate"]
        guard let entry = fields(node, path: path, known: known) else { return nil }
        let terminate = entry["terminate"].map { bool($0, path: "\(path).terminate") } ?? false
        if terminate == true {
            if !terminating, let node = entry["terminate"] {
                report(
                    "\(path).terminate", at: node,
                    "terminating needs certificates: add 'certificates' (cert and key files) to this listener")
            }
            if let node = entry["close"] {
                report("\(path).close", at: node, "give either 'close: true' or 'terminate: true', not both")
            }
            let requests = defaultBackend(entry, path: path, services: services)
            guard diagnostics.count == failuresBefore, let requests else { return nil }
            return TLSDefault(serverNames: DefaultBackend(service: nil, terminate: true), terminated: requests)
        }
        for field in ["status", "body"] {
            guard let node = entry[field] else { continue }
            let reason =
                terminating
                ? "a status and body answer decrypted requests; add 'terminate: true'"
                : "only http listeners answer with a status and body; a tls default is 'service: NAME' or "
                    + "'close: true'"
            report("\(path).\(field)", at: node, reason)
        }
        let close = entry["close"].flatMap { bool($0, path: "\(path).close") } ?? false
        let service = entry["service"].flatMap { serviceReference($0, path: "\(path).service", in: services) }
        if close, entry["service"] != nil {
            report(path, at: entry.mark, "give either 'service' or 'close: true', not both")
            return nil
        }
        // Anything reported already (a bad field, an unknown service) says enough.
        guard diagnostics.count == failuresBefore, terminate != nil else { return nil }
        if close { return TLSDefault(serverNames: DefaultBackend(service: nil), terminated: nil) }
        guard entry["service"] != nil else {
            let choices =
                terminating ? "'service: NAME', 'close: true' or 'terminate: true'" : "'service: NAME' or 'close: true'"
            report(path, at: entry.mark, "a tls default is \(choices)")
            return nil
        }
        // nil without a report: the services section could not be read, so names are unchecked.
        guard let service else { return nil }
        return TLSDefault(serverNames: DefaultBackend(service: service), terminated: nil)
    }
}
