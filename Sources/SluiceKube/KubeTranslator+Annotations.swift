import SluiceRouting

/// The original controller's annotations, under their exact names.
public enum KubeAnnotation {
    /// Comma-separated hosts, each `HOST[:PORT]` or `*.DOMAIN[:PORT]`, optionally followed by
    /// `=PORTNAME` (or `=PORTNUMBER`) to pick the Service port (default: the first TCP port).
    public static let host = "serviceloadbalancer/lb.host"
    /// `"true"`: serve these hosts on the TLS listener, terminated with its certificates
    /// (without a TLS listener: served over HTTP, warned).
    public static let sslTerm = "serviceloadbalancer/lb.sslTerm"
    /// A path prefix the routes require (default `/`).
    public static let aclMatch = "serviceloadbalancer/lb.aclMatch"
    /// `roundrobin`, `leastconn`, `first` (as `leastconn`), `source`.
    public static let algorithm = "serviceloadbalancer/lb.algorithm"
    /// `"true"`: cookie stickiness (the `cookie` algorithm, cookie `SLUICE`).
    public static let cookieStickySession = "serviceloadbalancer/lb.cookie-sticky-session"
    /// Every annotation above.
    public static let all = [host, sslTerm, aclMatch, algorithm, cookieStickySession]
}

/// How a Service's annotations and spec say it is balanced.
struct Settings {
    var algorithm: Algorithm
    var pathPrefix: String
    var sslTerm: Bool
    var clientIPTimeoutSeconds: Int?
}

extension PlanBuilder {
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` when absent.
    static let defaultClientIPTimeoutSeconds = 10_800

    /// The algorithm named by `lb.algorithm` or `--balance-algorithm`. `first` (HAProxy: the
    /// first endpoint with a free connection slot) needs per-endpoint connection limits that
    /// Sluice does not have; `leastconn` is the nearest load-aware choice.
    static func algorithm(named name: String) -> Algorithm? {
        switch name {
        case "roundrobin": return .roundrobin
        case "leastconn", "first": return .leastconn
        case "source": return .source
        default: return nil
        }
    }

    /// Algorithm, path prefix, TLS and affinity of `service`. Precedence of the algorithm,
    /// as in the original's template: cookie stickiness, then `sessionAffinity: ClientIP`
    /// (→ `source`), then `lb.algorithm`, then `--balance-algorithm`.
    mutating func readSettings(_ service: KubeService) -> Settings {
        let annotations = service.metadata.annotations ?? [:]
        let object = "\(service.key)"
        var settings = Settings(algorithm: options.balanceAlgorithm, pathPrefix: "/", sslTerm: false)

        if let text = annotations[KubeAnnotation.algorithm] {
            if let algorithm = Self.algorithm(named: text.lowercased()) {
                settings.algorithm = algorithm
            } else {
                warn(
                    "Service", object,
                    "lb.algorithm '\(text)' is not one of roundrobin, leastconn, first, source; "
                        + "using \(options.balanceAlgorithm.rawValue)")
            }
        }
        if service.spec?.sessionAffinity == "ClientIP" {
            settings.algorithm = .source
            var timeout = Self.defaultClientIPTimeoutSeconds
            if let given = service.spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds {
                if (1...86_400).contains(given) {
                    timeout = given
                } else {
                    warn(
                        "Service", object,
                        "sessionAffinityConfig.clientIP.timeoutSeconds \(given) is not from 1 to 86400; "
                            + "using \(Self.defaultClientIPTimeoutSeconds)")
                }
            }
            settings.clientIPTimeoutSeconds = timeout
        }
        if readBool(annotations, KubeAnnotation.cookieStickySession, object: object) {
            settings.algorithm = .cookie
            settings.clientIPTimeoutSeconds = nil
        }
        if readBool(annotations, KubeAnnotation.sslTerm, object: object) {
            settings.sslTerm = true
            if plan.tls == nil {
                warn(
                    "Service", object,
                    "lb.sslTerm: there is no TLS listener (--tls-address); serving these hosts over http")
            }
        }
        if let text = annotations[KubeAnnotation.aclMatch] {
            if Self.isPathPrefix(text) {
                settings.pathPrefix = text
            } else {
                warn(
                    "Service", object,
                    "lb.aclMatch '\(text)' is not a path prefix (it must start with '/' and hold no '?', '#', "
                        + "spaces or control characters); using /")
            }
        }
        return settings
    }

    /// `"true"` or `"false"` (any case); anything else is a warning and false.
    mutating func readBool(_ annotations: [String: String], _ name: String, object: String) -> Bool {
        guard let text = annotations[name] else { return false }
        switch text.lowercased() {
        case "true": return true
        case "false", "": return false
        default:
            warn("Service", object, "\(Self.shortName(name)) '\(text)' is not true or false; using false")
            return false
        }
    }

    /// The hosts of `lb.host`, each with its optional `=port` selector. Unusable entries
    /// are warned about and skipped.
    mutating func readHosts(_ service: KubeService) -> [(HostPattern, String?)] {
        let text = service.metadata.annotations?[KubeAnnotation.host] ?? ""
        var hosts: [(HostPattern, String?)] = []
        for piece in text.split(separator: ",") {
            let entry = piece.trimmingSpaces
            if entry.isEmpty { continue }
            var hostText = entry
            var selector: String? = nil
            if let equals = entry.lastIndex(of: "=") {
                hostText = String(entry[..<equals])
                selector = String(entry[entry.index(after: equals)...])
            }
            switch HostPattern.parse(hostText) {
            case .success(let pattern):
                if hosts.contains(where: { $0.0 == pattern }) { continue }
                hosts.append((pattern, selector?.isEmpty == true ? nil : selector))
            case .failure(let error):
                warn("Service", "\(service.key)", "lb.host entry '\(entry)' is not a valid host (\(error)); skipped")
            }
        }
        return hosts
    }

    /// A path prefix as the configuration file accepts it.
    static func isPathPrefix(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return false }
        return !bytes.contains { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
    }

    /// `lb.algorithm` for `serviceloadbalancer/lb.algorithm`.
    static func shortName(_ annotation: String) -> String {
        annotation.split(separator: "/").last.map(String.init) ?? annotation
    }
}
