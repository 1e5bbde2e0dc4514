import SluiceRouting
import Yams

/// The `routes` and `default` of an HTTP listener, and the `cookie` of a service.
///
/// TLS listeners (`ConfigDecoder+TLSRoutes.swift`) reuse the host patterns read here.
extension ConfigDecoder {
    /// The route table of the HTTP listener `entry`, or nil after a report. It needs at least
    /// one route or a default; (host, path) pairs must be unique within the listener.
    mutating func httpRoutes(_ entry: Fields, path: String, services: ServiceTable?) -> HTTPRouteTable? {
        guard entry["routes"] != nil || entry["default"] != nil else {
            report(
                "\(path).routes", at: entry.mark,
                "required field is missing (an http listener needs routes or a default)")
            return nil
        }
        let failuresBefore = diagnostics.count
        var routes: [HTTPRoute] = []
        if let node = entry["routes"], let items = sequence(node, path: "\(path).routes") {
            if items.isEmpty, entry["default"] == nil {
                report("\(path).routes", at: node, "at least one route is required when there is no default")
            }
            var firstIndexByKey: [RouteKey: Int] = [:]
            for (index, item) in items.enumerated() {
                guard let route = httpRoute(item, path: "\(path).routes[\(index)]", services: services) else {
                    continue
                }
                let key = RouteKey(host: route.host, path: route.pathPrefix)
                if let first = firstIndexByKey[key] {
                    let pathText = String(decoding: route.pathPrefix, as: UTF8.self)
                    report(
                        "\(path).routes[\(index)]", at: item,
                        "host '\(route.host)' with path '\(pathText)' is already routed by \(path).routes[\(first)]")
                    continue
                }
                firstIndexByKey[key] = index
                routes.append(route)
            }
        }
        let fallback = entry["default"].flatMap { defaultBackend($0, path: "\(path).default", services: services) }
        guard diagnostics.count == failuresBefore else { return nil }
        return HTTPRouteTable(routes: routes, defaultBackend: fallback ?? DefaultBackend())
    }

    /// Two routes of one listener may not share host and path: the second could never match.
    private struct RouteKey: Hashable {
        var host: HostPattern
        var path: [UInt8]
    }

    /// One route: `host` required, `path` and `stripPath` optional, and either `service` or
    /// `redirectHTTPS: true` (with an optional `httpsPort`).
    private mutating func httpRoute(_ node: Node, path: String, services: ServiceTable?) -> HTTPRoute? {
        let known = ["host", "path", "stripPath", "service", "redirectHTTPS", "httpsPort", "hsts"]
        guard let entry = fields(node, path: path, known: known) else { return nil }
        let failuresBefore = diagnostics.count
        let host = required(entry, "host").flatMap { hostPattern($0, path: "\(path).host") }
        // Absent: the defaults; present but invalid: nil (reported).
        let prefix = entry["path"].map { pathPrefix($0, path: "\(path).path") } ?? [UInt8(ascii: "/")]
        let strip = entry["stripPath"].map { bool($0, path: "\(path).stripPath") } ?? false
        let redirect = entry["redirectHTTPS"].map { bool($0, path: "\(path).redirectHTTPS") } ?? false
        if let node = entry["hsts"] {
            report(
                "\(path).hsts", at: node,
                "only terminated routes of a tls listener add Strict-Transport-Security (browsers ignore it over "
                    + "plain HTTP)")
        }
        var httpsPort: UInt16 = 443
        if let node = entry["httpsPort"] {
            if redirect != true {
                report("\(path).httpsPort", at: node, "httpsPort is the port of a redirect; add 'redirectHTTPS: true'")
            } else if let port = integer(node, path: "\(path).httpsPort", in: 1...65535) {
                httpsPort = UInt16(port)
            }
        }
        var service = -1
        if redirect == true {
            if let node = entry["service"] {
                report(
                    "\(path).service", at: node,
                    "a route either redirects to https or has a service; remove 'service' or 'redirectHTTPS: true'")
            }
        } else if redirect == false, let node = required(entry, "service"),
            let index = httpServiceReference(node, path: "\(path).service", in: services)
        {
            service = index
        }
        guard diagnostics.count == failuresBefore, let host, let prefix, let strip, let redirect else { return nil }
        // nil without a report: the services section could not be read, so names are unchecked.
        guard redirect || service >= 0 else { return nil }
        return HTTPRoute(
            host: host, pathPrefix: prefix, stripPath: strip, service: service, redirectHTTPS: redirect,
            httpsPort: httpsPort)
    }

    /// `example.com`, `*.example.com`, `[::1]`, each with an optional `:PORT`.
    mutating func hostPattern(_ node: Node, path: String) -> HostPattern? {
        guard let text = name(node, path: path) else { return nil }
        switch HostPattern.parse(text) {
        case .success(let pattern):
            return pattern
        case .failure(let error):
            report(path, at: node, "'\(text)' is not a valid host pattern: \(error)")
            return nil
        }
    }

    /// A path prefix: starts with `/`; no query, fragment, spaces or control characters.
    mutating func pathPrefix(_ node: Node, path: String) -> [UInt8]? {
        guard let text = string(node, path: path) else { return nil }
        let bytes = Array(text.utf8)
        guard bytes.first == UInt8(ascii: "/") else {
            report(path, at: node, "must start with '/', found '\(text)'")
            return nil
        }
        let forbidden = bytes.contains {
            $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#")
        }
        guard !forbidden else {
            report(path, at: node, "'\(text)' must not contain '?', '#', spaces or control characters")
            return nil
        }
        return bytes
    }

    /// `default`: either a `service`, or a `status` (400–599, 404 when absent) and a `body`.
    private mutating func defaultBackend(_ node: Node, path: String, services: ServiceTable?) -> DefaultBackend? {
        guard let entry = fields(node, path: path, known: ["status", "body", "service"]) else { return nil }
        return defaultBackend(entry, path: path, services: services)
    }

    /// The `status`, `body` and `service` of a default whose other fields were checked by the
    /// caller (a tls listener's terminating default has those too).
    mutating func defaultBackend(_ entry: Fields, path: String, services: ServiceTable?) -> DefaultBackend? {
        var backend = DefaultBackend()
        var valid = true
        if let node = entry["status"] {
            if let status = integer(node, path: "\(path).status", in: 400...599) {
                backend.status = UInt16(status)
            } else {
                valid = false
            }
        }
        if let node = entry["body"] {
            if let body = string(node, path: "\(path).body") {
                backend.body = Array(body.utf8)
            } else {
                valid = false
            }
        }
        if let node = entry["service"] {
            if entry["status"] != nil || entry["body"] != nil {
                report(path, at: entry.mark, "give either 'service' or 'status' and 'body', not both")
                valid = false
            } else if let service = httpServiceReference(node, path: "\(path).service", in: services) {
                backend.service = service
            } else {
                valid = false
            }
        }
        return valid ? backend : nil
    }

    /// A cookie name (an RFC 6265 token), for services whose algorithm is `cookie`.
    /// `algorithm` is nil when it was invalid (reported already): then only the name is checked.
    mutating func cookieName(_ node: Node, path: String, algorithm: Algorithm?) -> [UInt8]? {
        guard let text = name(node, path: path) else { return nil }
        if let algorithm, algorithm != .cookie {
            report(path, at: node, "only the cookie algorithm uses a cookie (this service's algorithm is \(algorithm))")
            return nil
        }
        let separators = Array("()<>@,;:\\\"/[]?={}".utf8)
        let valid = text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && !separators.contains($0) }
        guard valid else {
            report(path, at: node, "'\(text)' is not a valid cookie name: use letters, digits and !#$%&'*+-.^_`|~")
            return nil
        }
        guard text.utf8.count <= Service.maxCookieNameLength else {
            report(
                path, at: node,
                "a cookie name of \(text.utf8.count) bytes is too long (at most \(Service.maxCookieNameLength))")
            return nil
        }
        return Array(text.utf8)
    }
}
