/// One route of an HTTP listener, as configured: requests for `host` whose path starts with
/// `pathPrefix` (at a segment boundary) go to `service`.
public struct HTTPRoute: Sendable, Hashable {
    public var host: HostPattern
    /// Starts with `/`. A route without a path has prefix `/`, which matches every path.
    public var pathPrefix: [UInt8]
    /// Remove the prefix from the path before the request goes upstream.
    public var stripPath: Bool
    /// Index into `RoutingSnapshot.services`.
    public var service: Int

    public init(host: HostPattern, pathPrefix: [UInt8] = [UInt8(ascii: "/")], stripPath: Bool = false, service: Int) {
        precondition(pathPrefix.first == UInt8(ascii: "/"), "a path prefix starts with '/'")
        self.host = host
        self.pathPrefix = pathPrefix
        self.stripPath = stripPath
        self.service = service
    }

    /// A route from configuration text; nil `path` is `/`. Fails only on a bad host pattern.
    public init(host: String, path: String? = nil, stripPath: Bool = false, service: Int)
        throws(HostPattern.ParseError)
    {
        let pattern: HostPattern
        switch HostPattern.parse(host) {
        case .success(let parsed): pattern = parsed
        case .failure(let error): throw error
        }
        self.init(host: pattern, pathPrefix: Array((path ?? "/").utf8), stripPath: stripPath, service: service)
    }

    /// How many bytes of a matching path go when `stripPath` is set: the prefix without a
    /// trailing `/`, so what remains starts with `/` (or `?`, or is empty: the caller then
    /// writes `/` in front). Prefix `/` strips nothing.
    public var stripLength: Int32 {
        guard stripPath else { return 0 }
        let count = pathPrefix.last == UInt8(ascii: "/") ? pathPrefix.count - 1 : pathPrefix.count
        return Int32(count)
    }
}

/// What an HTTP listener does with a request no route matches.
public struct DefaultBackend: Sendable, Hashable {
    /// 400–599; the proxy answers with it and `body` when `service` is nil.
    public var status: UInt16
    public var body: [UInt8]
    /// Send unmatched requests to this service (index into `RoutingSnapshot.services`) instead.
    public var service: Int?

    public static let defaultBody: [UInt8] = Array("no route\n".utf8)

    public init(status: UInt16 = 404, body: [UInt8] = DefaultBackend.defaultBody, service: Int? = nil) {
        self.status = status
        self.body = body
        self.service = service
    }
}

/// The outcome of `HTTPRouteTable.lookup`.
public enum RouteMatch: Equatable, Sendable {
    /// Send the request to this service, after removing the first `stripPrefix` bytes of its
    /// path (0: none).
    case service(Int32, stripPrefix: Int32)
    /// No route and no default service: answer with `defaultBackend.status` and `.body`.
    case noRoute
}
