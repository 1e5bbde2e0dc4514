import SluiceRouting

/// What the command line decides about the table built from the cluster (the original
/// controller's flags, under the same names where they exist).
public struct KubeTranslatorOptions: Sendable, Hashable {
    /// The HTTP listener every `lb.host` Service is routed on; nil: none. TCP services listen
    /// on the same IP.
    public var httpAddress: SocketAddress?
    /// `--tls-address`: the TLS listener `lb.sslTerm: "true"` Services are served on,
    /// terminated with `tlsContext`; nil: none (sslTerm Services are then served over HTTP).
    public var tlsAddress: SocketAddress?
    /// The certificates of the TLS listener (`--tls-certificate`/`--tls-key`). Without it
    /// `tlsAddress` is not used.
    public var tlsContext: KubeTLSContextSlot?
    /// `--tcp-services`: Services exposed as raw TCP on their own port, annotated or not.
    public var tcpServices: [KubeTCPService]
    /// `--default-return-code`: the answer to a request no route matches (400–599).
    public var defaultReturnCode: UInt16
    /// `--balance-algorithm`: for Services that name none.
    public var balanceAlgorithm: Algorithm
    /// `--namespace`: only Services (and slices) of this namespace; nil: all.
    public var namespace: String?
    public var timeouts: Timeouts
    public var limits: Limits
    public var tuning: Tuning
    /// `--access-log-mode`/`--access-log-sample`: every listener's access-log policy (without
    /// `--access-log` the loops have no rings and record nothing, whatever it says).
    public var accessLog: AccessLogPolicy
    /// `--http2`: HTTP/2 from clients on the http listener (prior knowledge) and on the TLS
    /// listener (ALPN h2).
    public var http2 = false

    public init(
        httpAddress: SocketAddress? = SocketAddress(ip: .v4(0), port: 80), tcpServices: [KubeTCPService] = [],
        defaultReturnCode: UInt16 = 404, balanceAlgorithm: Algorithm = .roundrobin, namespace: String? = nil,
        timeouts: Timeouts = Timeouts(), limits: Limits = Limits(), tuning: Tuning = Tuning(),
        tlsAddress: SocketAddress? = nil, tlsContext: KubeTLSContextSlot? = nil,
        accessLog: AccessLogPolicy = AccessLogPolicy()
    ) {
        self.accessLog = accessLog
        self.httpAddress = httpAddress
        self.tlsAddress = tlsAddress
        self.tlsContext = tlsContext
        self.tcpServices = tcpServices
        self.defaultReturnCode = defaultReturnCode
        self.balanceAlgorithm = balanceAlgorithm
        self.namespace = namespace
        self.timeouts = timeouts
        self.limits = limits
        self.tuning = tuning
    }
}

/// One `--tcp-services` entry: a Service port, and the port Sluice listens on for it.
public struct KubeTCPService: Sendable, Hashable, CustomStringConvertible {
    /// Without one, the `--namespace` namespace, or `default` when all are watched.
    public var namespace: String?
    public var name: String
    /// A Service port: its number (`"3306"`) or its name (`"mysql"`).
    public var port: String
    public var listenPort: UInt16

    public init(namespace: String? = nil, name: String, port: String, listenPort: UInt16) {
        self.namespace = namespace
        self.name = name
        self.port = port
        self.listenPort = listenPort
    }

    /// `[namespace/]name:port`, as the original flag took it: the listen port is the Service
    /// port, which must then be a number.
    public static func parse(_ text: String) -> Result<KubeTCPService, ParseError> {
        guard let colon = text.lastIndex(of: ":") else { return .failure(.missingPort(text)) }
        let reference = text[..<colon]
        let portText = String(text[text.index(after: colon)...])
        guard let port = UInt16(portText), port > 0 else { return .failure(.badPort(text)) }
        let parts = reference.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1 where !parts[0].isEmpty:
            return .success(KubeTCPService(name: String(parts[0]), port: portText, listenPort: port))
        case 2 where !parts[0].isEmpty && !parts[1].isEmpty:
            return .success(
                KubeTCPService(namespace: String(parts[0]), name: String(parts[1]), port: portText, listenPort: port))
        default:
            return .failure(.badName(text))
        }
    }

    /// A comma-separated list of `parse` entries (empty entries skipped).
    public static func parseList(_ text: String) -> Result<[KubeTCPService], ParseError> {
        var entries: [KubeTCPService] = []
        for piece in text.split(separator: ",") {
            let trimmed = piece.trimmingSpaces
            if trimmed.isEmpty { continue }
            switch parse(trimmed) {
            case .success(let entry): entries.append(entry)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(entries)
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingPort(String)
        case badPort(String)
        case badName(String)

        public var description: String {
            switch self {
            case .missingPort(let text): return "'\(text)': expected [namespace/]name:port"
            case .badPort(let text): return "'\(text)': the port must be a number from 1 to 65535"
            case .badName(let text): return "'\(text)': expected [namespace/]name:port"
            }
        }
    }

    public var description: String { "\(namespace.map { "\($0)/" } ?? "")\(name):\(port)" }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
