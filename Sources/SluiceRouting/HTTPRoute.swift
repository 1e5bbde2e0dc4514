/// One route of an HTTP listener, as configured: requests for `host` whose path starts with
/// `pathPrefix` (at a segment boundary) go to `service`.
public struct HTTPRoute: Sendable, Hashable {
    public var host: HostPattern
    /// Starts with `/`. A route without a path has prefix `/`, which matches every path.
    public var pathPrefix: [UInt8]
    /// Remove the prefix from the path before the request goes upstream.
    public var stripPath: Bool
    /// Index into `RoutingSnapshot.services`; -1 for routes that name none (`terminate` and
    /// `redirectHTTPS` routes).
    public var service: Int
    /// SNI tables only: connections naming this host are decrypted here, and their requests are
    /// routed by the listener's `terminatedRoutes` table. Lookups answer `.terminate`.
    public var terminate: Bool = false
    /// HTTP tables only: answer 308 with `Location: https://host[:httpsPort]target` instead of
    /// proxying. Lookups answer `.redirect(route:)`.
    public var redirectHTTPS: Bool = false
    /// The port in the redirect's `Location`; 443 is left out of it.
    public var httpsPort: UInt16 = 443
    /// Tables of decrypted requests: `Strict-Transport-Security: max-age=N\r\n`, precomputed,
    /// to add to every response of this route; nil when not configured.
    public var hstsField: [UInt8]?

    public init(
        host: HostPattern, pathPrefix: [UInt8] = [UInt8(ascii: "/")], stripPath: Bool = false, service: Int,
        terminate: Bool = false, redirectHTTPS: Bool = false, httpsPort: UInt16 = 443, hstsField: [UInt8]? = nil
    ) {
        precondition(pathPrefix.first == UInt8(ascii: "/"), "a path prefix starts with '/'")
        self.host = host
        self.pathPrefix = pathPrefix
        self.stripPath = stripPath
        self.service = service
        self.terminate = terminate
        self.redirectHTTPS = redirectHTTPS
        self.httpsPort = httpsPort
        self.hstsField = hstsField
    }

    /// A route from configuration text; nil `path` is `/`. Fails only on a bad host pattern.
    public init(
        host: String, path: String? = nil, stripPath: Bool = false, service: Int, terminate: Bool = false,
        redirectHTTPS: Bool = false, httpsPort: UInt16 = 443, hstsField: [UInt8]? = nil
    ) throws(HostPattern.ParseError) {
        let pattern: HostPattern
        switch HostPattern.parse(host) {
        case .success(let parsed): pattern = parsed
        case .failure(let error): throw error
        }
        self.init(
            host: pattern, pathPrefix: Array((path ?? "/").utf8), stripPath: stripPath, service: service,
            terminate: terminate, redirectHTTPS: redirectHTTPS, httpsPort: httpsPort, hstsField: hstsField)
    }

    /// The `Strict-Transport-Security` field line for `maxAge` seconds, CRLF-terminated.
    public static func hstsField(maxAge: Int) -> [UInt8] {
        Array("Strict-Transport-Security: max-age=\(maxAge)\r\n".utf8)
    }

    /// The `max-age` of `hstsField`, for display; nil when there is none.
    public var hstsMaxAge: Int? {
        guard let field = hstsField else { return nil }
        let digits = field.drop { $0 != UInt8(ascii: "=") }.dropFirst().prefix { $0 >= 0x30 && $0 <= 0x39 }
        return Int(String(decoding: digits, as: UTF8.self))
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
    /// SNI tables only: connections without a server name, or with one no route names, are
    /// decrypted with the default certificate (lookups answer `.terminate`); takes precedence
    /// over `service`.
    public var terminate: Bool = false

    public static let defaultBody: [UInt8] = Array("no route\n".utf8)

    public init(
        status: UInt16 = 404, body: [UInt8] = DefaultBackend.defaultBody, service: Int? = nil, terminate: Bool = false
    ) {
        self.status = status
        self.body = body
        self.service = service
        self.terminate = terminate
    }
}

/// The outcome of `HTTPRouteTable.lookup`.
public enum RouteMatch: Equatable, Sendable {
    /// Send the request to this service, after removing the first `stripPrefix` bytes of its
    /// path (0: none).
    case service(Int32, stripPrefix: Int32)
    /// No route and no default service: answer with `defaultBackend.status` and `.body`.
    case noRoute
    /// SNI tables: decrypt the connection here (a `terminate` route, or a default with
    /// `terminate`), then route its requests by `Listener.terminatedRoutes`.
    case terminate
    /// HTTP tables: a `redirectHTTPS` route, by its index into `HTTPRouteTable.routes`; answer
    /// 308 to `https://` the request's host (with that route's `httpsPort` unless 443) and target.
    case redirect(route: Int32)
}
