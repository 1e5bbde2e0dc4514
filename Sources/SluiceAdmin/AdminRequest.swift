import SluiceWire

/// What the admin listener serves.
public enum AdminRoute: Sendable, Equatable {
    /// `/`: a plain-text list of the paths below.
    case index
    /// `/healthz`: the loops answer their mailboxes (and, in kube mode, the watchers live).
    case health
    /// `/readyz`: the table is in force and the process is not stopping.
    case ready
    /// `/metrics[?scope=…]`: the families of the scopes asked for (all when none).
    case metrics(MetricsFormat, MetricsScope = .all)
    case routes
    case stats
    case statsJSON

    /// The route for a path (the target up to `?`) and its query; nil: 404.
    public static func route(
        path: UnsafeRawBufferPointer, query: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        accept: String?
    ) -> AdminRoute? {
        switch String(decoding: path, as: UTF8.self) {
        case "/": .index
        case "/healthz": .health
        case "/readyz": .ready
        case "/metrics": .metrics(MetricsFormat.negotiate(accept: accept), MetricsScope(query: query))
        case "/routes": .routes
        case "/stats": .stats
        case "/stats.json": .statsJSON
        default: nil
        }
    }

    /// Needs the loops' tables (`Reactor.collect`).
    public var collects: Bool {
        switch self {
        case .metrics, .routes, .stats, .statsJSON: true
        case .index, .health, .ready: false
        }
    }
}

/// One request, as the admin listener acts on it. Pure: built from a parsed head.
public struct AdminRequest: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// Serve `route` (GET or HEAD on a known path).
        case serve(AdminRoute)
        case notFound
        case methodNotAllowed
    }

    public var outcome: Outcome
    /// HEAD: the head only.
    public var headOnly: Bool
    /// The connection stays open after the answer: HTTP/1.1 without `Connection: close`,
    /// HTTP/1.0 with `Connection: keep-alive`, and no request body (the listener reads none).
    public var keepAlive: Bool
    /// An HTTP/1.0 client kept open (the answer says `Connection: keep-alive`).
    public var http10KeepAlive: Bool

    /// Interprets `head`, parsed from `buffer` with its `fields`.
    public init(_ head: HTTPRequestHead, buffer: UnsafeRawBufferPointer, fields: UnsafeBufferPointer<HTTPField>) {
        let path = Self.pathBytes(head, buffer)
        let query = Self.queryBytes(head, buffer)
        let accept = Self.fieldValue("accept", head, buffer, fields)
        headOnly = head.method == .head
        let hasBody = head.bodyKind != .none
        if head.minorVersion == 0 {
            keepAlive = head.connectionKeepAlive && !head.connectionClose && !hasBody
            http10KeepAlive = keepAlive
        } else {
            keepAlive = !head.connectionClose && !hasBody
            http10KeepAlive = false
        }
        guard let route = AdminRoute.route(path: path, query: query, accept: accept) else {
            outcome = .notFound
            return
        }
        outcome = head.method == .get || head.method == .head ? .serve(route) : .methodNotAllowed
    }

    /// The target's path without the query.
    static func pathBytes(_ head: HTTPRequestHead, _ buffer: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let lo = Int(head.path.lowerBound)
        var hi = lo
        let end = Int(head.path.upperBound)
        while hi < end && buffer[hi] != UInt8(ascii: "?") { hi += 1 }
        return UnsafeRawBufferPointer(rebasing: buffer[lo..<hi])
    }

    /// The target's query, after `?` (empty when none).
    static func queryBytes(_ head: HTTPRequestHead, _ buffer: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var lo = Int(head.path.lowerBound)
        let end = Int(head.path.upperBound)
        while lo < end && buffer[lo] != UInt8(ascii: "?") { lo += 1 }
        return lo < end
            ? UnsafeRawBufferPointer(rebasing: buffer[(lo + 1)..<end])
            : UnsafeRawBufferPointer(rebasing: buffer[end..<end])
    }

    /// The first value of the field called `lowercaseName` (compared case-insensitively).
    static func fieldValue(
        _ lowercaseName: String, _ head: HTTPRequestHead, _ buffer: UnsafeRawBufferPointer,
        _ fields: UnsafeBufferPointer<HTTPField>
    ) -> String? {
        let name = Array(lowercaseName.utf8)
        for k in 0..<min(Int(head.fieldCount), fields.count) {
            let field = fields[k]
            let lo = Int(field.name.lowerBound)
            guard Int(field.name.upperBound) - lo == name.count else { continue }
            var same = true
            for i in 0..<name.count {
                var b = buffer[lo + i]
                if b >= 0x41 && b <= 0x5A { b |= 0x20 }
                if b != name[i] {
                    same = false
                    break
                }
            }
            if same {
                return String(
                    decoding: buffer[Int(field.value.lowerBound)..<Int(field.value.upperBound)], as: UTF8.self)
            }
        }
        return nil
    }
}

/// Which families `/metrics` renders, as HAProxy's exporter takes them:
/// `?scope=process&scope=frontend&scope=backend&scope=server` (any subset; `*` or none: all).
/// Scraping without `server` keeps a large table's series per service, not per endpoint.
public struct MetricsScope: OptionSet, Sendable, Equatable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let process = MetricsScope(rawValue: 1)
    public static let frontend = MetricsScope(rawValue: 2)
    public static let backend = MetricsScope(rawValue: 4)
    public static let server = MetricsScope(rawValue: 8)
    public static let all: MetricsScope = [.process, .frontend, .backend, .server]

    /// From a query string: every `scope=NAME` parameter; unknown names select nothing, so a
    /// typo gives an empty answer rather than every series.
    public init(query: UnsafeRawBufferPointer) {
        var scope: MetricsScope = []
        var named = false
        for parameter in query.split(separator: UInt8(ascii: "&")) {
            let text = String(decoding: parameter, as: UTF8.self)
            guard text.hasPrefix("scope=") else { continue }
            named = true
            switch text.dropFirst(6) {
            case "*", "all": scope.formUnion(.all)
            case "process", "global": scope.insert(.process)
            case "frontend": scope.insert(.frontend)
            case "backend": scope.insert(.backend)
            case "server": scope.insert(.server)
            default: break
            }
        }
        self = named ? scope : .all
    }
}
