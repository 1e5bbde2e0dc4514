/// The fields of the Kubernetes API objects that discovery reads, as the API server sends
/// them in JSON (core/v1 Service, discovery.k8s.io/v1 EndpointSlice).
///
/// Everything the API may omit is optional, and arrays the API may send as `null` (a
/// placeholder slice's `endpoints` and `ports`) decode as nil. Unknown fields are ignored, so
/// newer servers decode. List items carry no `kind`/`apiVersion`; watch objects do; neither is
/// read here.
///
/// Only what discovery reads is decoded and kept: a list page or an event may carry large
/// fields of no use here (`managedFields`, `kubectl.kubernetes.io/last-applied-configuration`,
/// labels of other controllers, endpoint hints and pod references), and the cache holds every
/// object of the cluster for as long as it runs. The decoder skips them without making Swift
/// values of them.

/// `metadata` of any object. A bookmark's object has only `resourceVersion`.
///
/// Decoded from JSON, `annotations` holds only those under `KubeObjectMeta.annotationPrefix`
/// and `labels` only those in `KubeObjectMeta.labelsRead` (nil when none is there); every
/// other metadata field (`managedFields`, `ownerReferences`, …) is skipped. Made in code,
/// both hold what they are given.
public struct KubeObjectMeta: Codable, Hashable, Sendable {
    /// The annotations discovery reads (`KubeAnnotation`) all start with this.
    public static let annotationPrefix = "serviceloadbalancer/"
    /// The labels discovery reads: the one joining an EndpointSlice to its Service.
    public static let labelsRead: Set<String> = [KubeEndpointSlice.serviceNameLabel]

    public var name: String?
    public var namespace: String?
    /// Opaque: compared for equality only, never ordered.
    public var resourceVersion: String?
    public var annotations: [String: String]?
    /// `labels`: an EndpointSlice's one label (the only one decoding keeps) as its value
    /// alone, without a map of its own; any other labels as given. One form per value.
    private var labelStorage: Labels?

    private enum Labels: Hashable, Sendable {
        case serviceName(String)
        case map([String: String])

        init?(_ labels: [String: String]?) {
            guard let labels else { return nil }
            if labels.count == 1, let name = labels[KubeEndpointSlice.serviceNameLabel] {
                self = .serviceName(name)
            } else {
                self = .map(labels)
            }
        }
    }

    public var labels: [String: String]? {
        get {
            switch labelStorage {
            case nil: nil
            case .serviceName(let name): [KubeEndpointSlice.serviceNameLabel: name]
            case .map(let labels): labels
            }
        }
        set { labelStorage = Labels(newValue) }
    }

    /// `labels[KubeEndpointSlice.serviceNameLabel]`, without making the map.
    public var serviceNameLabel: String? {
        switch labelStorage {
        case nil: nil
        case .serviceName(let name): name
        case .map(let labels): labels[KubeEndpointSlice.serviceNameLabel]
        }
    }

    public init(
        name: String? = nil, namespace: String? = nil, resourceVersion: String? = nil,
        labels: [String: String]? = nil, annotations: [String: String]? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.resourceVersion = resourceVersion
        self.labelStorage = Labels(labels)
        self.annotations = annotations
    }

    private enum CodingKeys: String, CodingKey {
        case name, namespace, resourceVersion, labels, annotations
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        namespace = try container.decodeIfPresent(String.self, forKey: .namespace)
        resourceVersion = try container.decodeIfPresent(String.self, forKey: .resourceVersion)
        labelStorage = Labels(try Self.decodeMap(container, .labels) { Self.labelsRead.contains($0) })
        annotations = try Self.decodeMap(container, .annotations) { $0.hasPrefix(Self.annotationPrefix) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encodeIfPresent(namespace, forKey: .namespace)
        try container.encodeIfPresent(resourceVersion, forKey: .resourceVersion)
        try container.encodeIfPresent(labels, forKey: .labels)
        try container.encodeIfPresent(annotations, forKey: .annotations)
    }

    /// The entries of the string map at `key` whose name `keep` accepts; nil when the map is
    /// absent, `null`, or keeps nothing. The values of the other entries are never decoded.
    private static func decodeMap(
        _ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys, keep: (String) -> Bool
    ) throws -> [String: String]? {
        guard container.contains(key), try !container.decodeNil(forKey: key) else { return nil }
        let map = try container.nestedContainer(keyedBy: MapKey.self, forKey: key)
        var kept: [String: String] = [:]
        for entry in map.allKeys where keep(entry.stringValue) {
            kept[Self.knownKeys[entry.stringValue] ?? entry.stringValue] = try map.decode(String.self, forKey: entry)
        }
        return kept.isEmpty ? nil : kept
    }

    /// Any key of a JSON object.
    /// The keys discovery reads, each as one shared string: every object's map holds the same
    /// storage instead of its own copy of the key.
    private static let knownKeys: [String: String] = Dictionary(
        uniqueKeysWithValues: ([KubeEndpointSlice.serviceNameLabel] + KubeAnnotation.all).map { ($0, $0) })

    private struct MapKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// An object the cache stores by `namespace/name`.
public protocol KubeObject: Codable, Hashable, Sendable {
    var metadata: KubeObjectMeta { get }
}

extension KubeObject {
    /// `namespace/name`; a missing namespace reads as empty (cluster-scoped objects have none).
    public var key: KubeObjectKey {
        KubeObjectKey(namespace: metadata.namespace ?? "", name: metadata.name ?? "")
    }
}

/// How the cache and the warnings name an object: `namespace/name`.
public struct KubeObjectKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    public static func < (lhs: KubeObjectKey, rhs: KubeObjectKey) -> Bool {
        (lhs.namespace, lhs.name) < (rhs.namespace, rhs.name)
    }

    public var description: String { "\(namespace)/\(name)" }
}

// MARK: - Service (core/v1)

public struct KubeService: KubeObject {
    public var metadata: KubeObjectMeta
    public var spec: Spec?

    public init(metadata: KubeObjectMeta, spec: Spec? = nil) {
        self.metadata = metadata
        self.spec = spec
    }

    /// The fields of `spec` discovery reads: `ports`, `sessionAffinity` and
    /// `sessionAffinityConfig`. The others (`type`, `selector`, `clusterIP`, `ipFamilies`, …)
    /// are skipped when decoded and not kept: the cache holds every Service of the cluster.
    public struct Spec: Codable, Hashable, Sendable {
        public var ports: [Port]?
        /// `None` (the API's default) or `ClientIP`.
        public var sessionAffinity: String?
        public var sessionAffinityConfig: SessionAffinityConfig?

        public init(
            ports: [Port]? = nil, sessionAffinity: String? = nil, sessionAffinityConfig: SessionAffinityConfig? = nil
        ) {
            self.ports = ports
            self.sessionAffinity = sessionAffinity
            self.sessionAffinityConfig = sessionAffinityConfig
        }
    }

    public struct Port: Codable, Hashable, Sendable {
        /// Required when a Service has several ports; nil or `""` for a single unnamed one.
        public var name: String?
        /// `TCP` when absent.
        public var `protocol`: String?
        public var port: Int
        public var targetPort: IntOrString?
        public var nodePort: Int?
        public var appProtocol: String?

        public init(
            name: String? = nil, protocol: String? = nil, port: Int, targetPort: IntOrString? = nil,
            nodePort: Int? = nil, appProtocol: String? = nil
        ) {
            self.name = name
            self.protocol = `protocol`
            self.port = port
            self.targetPort = targetPort
            self.nodePort = nodePort
            self.appProtocol = appProtocol
        }
    }

    public struct SessionAffinityConfig: Codable, Hashable, Sendable {
        public var clientIP: ClientIPConfig?

        public init(clientIP: ClientIPConfig? = nil) { self.clientIP = clientIP }
    }

    public struct ClientIPConfig: Codable, Hashable, Sendable {
        /// 10800 when absent.
        public var timeoutSeconds: Int?

        public init(timeoutSeconds: Int? = nil) { self.timeoutSeconds = timeoutSeconds }
    }
}

/// `targetPort`: a JSON number (a port) or a JSON string (a named container port).
public enum IntOrString: Codable, Hashable, Sendable {
    case int(Int)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            self = .int(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let number): try container.encode(number)
        case .string(let text): try container.encode(text)
        }
    }
}

// MARK: - EndpointSlice (discovery.k8s.io/v1)

public struct KubeEndpointSlice: KubeObject {
    /// The label that joins a slice to its Service (same namespace).
    public static let serviceNameLabel = "kubernetes.io/service-name"

    public var metadata: KubeObjectMeta
    /// `IPv4`, `IPv6` or `FQDN` (deprecated, no defined semantics); `""` in a bookmark.
    public var addressType: String?
    /// nil for a placeholder slice (JSON `null`).
    public var endpoints: [Endpoint]?
    /// nil for a placeholder slice (JSON `null`). Apply to every endpoint of this slice only.
    public var ports: [Port]?

    public init(
        metadata: KubeObjectMeta, addressType: String? = nil, endpoints: [Endpoint]? = nil, ports: [Port]? = nil
    ) {
        self.metadata = metadata
        self.addressType = addressType
        self.endpoints = endpoints
        self.ports = ports
    }

    /// The Service this slice belongs to, from its `kubernetes.io/service-name` label.
    public var serviceName: String? { metadata.serviceNameLabel }

    /// An endpoint as discovery reads it: its first address and its conditions. `hostname`,
    /// `nodeName`, `zone`, `hints` and `targetRef` are not decoded, nor addresses after the
    /// first (kube-proxy reads only the first).
    ///
    /// Eight bytes for the usual case, an IPv4 address in canonical dotted-quad form: the
    /// address as a number and the conditions as a byte, inline. Any other address (IPv6,
    /// a non-canonical or bad literal, none) is kept as given, with its conditions, in a
    /// shared immutable box. One form per value, so equality compares the storage.
    public struct Endpoint: Codable, Hashable, Sendable {
        private enum Storage: Hashable, Sendable {
            /// The address (host order) and `Endpoint.conditionBits` of the conditions.
            case ipv4(UInt32, UInt8)
            case other(Other)
        }

        private final class Other: Hashable, Sendable {
            let address: String?
            let conditions: Conditions?

            init(address: String?, conditions: Conditions?) {
                self.address = address
                self.conditions = conditions
            }

            static func == (lhs: Other, rhs: Other) -> Bool {
                lhs === rhs || (lhs.address == rhs.address && lhs.conditions == rhs.conditions)
            }

            func hash(into hasher: inout Hasher) {
                hasher.combine(address)
                hasher.combine(conditions)
            }
        }

        private var storage: Storage

        /// The first of `addresses`; nil when there is none.
        public var address: String? {
            get {
                switch storage {
                case .ipv4(let value, _): Self.dottedQuad(value)
                case .other(let other): other.address
                }
            }
            set { self = Endpoint(address: newValue, conditions: conditions) }
        }

        public var conditions: Conditions? {
            get {
                switch storage {
                case .ipv4(_, let bits): Self.conditions(bits)
                case .other(let other): other.conditions
                }
            }
            set { self = Endpoint(address: address, conditions: newValue) }
        }

        /// The address as a number when it is a canonical dotted-quad IPv4 literal (what
        /// `SocketAddress.parseIP` makes of it), without formatting it.
        var packedIPv4: UInt32? {
            if case .ipv4(let value, _) = storage { return value }
            return nil
        }

        /// The controller sets exactly one; extras are ignored (and not kept), as kube-proxy
        /// ignores them.
        public var addresses: [String] {
            get { address.map { [$0] } ?? [] }
            set { address = newValue.first }
        }

        public init(addresses: [String], conditions: Conditions? = nil) {
            self.init(address: addresses.first, conditions: conditions)
        }

        private init(address: String?, conditions: Conditions?) {
            if let address, let value = Self.canonicalIPv4(address) {
                storage = .ipv4(value, Self.conditionBits(conditions))
            } else {
                storage = .other(Other(address: address, conditions: conditions))
            }
        }

        private enum CodingKeys: String, CodingKey {
            case addresses, conditions
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                address: try container.decodeIfPresent([String].self, forKey: .addresses)?.first,
                conditions: try container.decodeIfPresent(Conditions.self, forKey: .conditions))
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(addresses, forKey: .addresses)
            try container.encodeIfPresent(conditions, forKey: .conditions)
        }

        /// `conditions.ready`, nil meaning true.
        public var isReady: Bool { conditions?.ready ?? true }
        /// `conditions.serving`, nil meaning true.
        public var isServing: Bool { conditions?.serving ?? true }
        /// `conditions.terminating`, nil meaning false.
        public var isTerminating: Bool { conditions?.terminating ?? false }

        /// Bit 6: conditions present; bits 0–1, 2–3, 4–5: `ready`, `serving`, `terminating`
        /// (0 nil, 1 false, 2 true).
        private static func conditionBits(_ conditions: Conditions?) -> UInt8 {
            guard let conditions else { return 0 }
            func tri(_ value: Bool?) -> UInt8 { value.map { $0 ? 2 : 1 } ?? 0 }
            return 0x40 | tri(conditions.ready) | tri(conditions.serving) << 2 | tri(conditions.terminating) << 4
        }

        private static func conditions(_ bits: UInt8) -> Conditions? {
            guard bits & 0x40 != 0 else { return nil }
            func tri(_ value: UInt8) -> Bool? { value & 3 == 0 ? nil : value & 3 == 2 }
            return Conditions(ready: tri(bits), serving: tri(bits >> 2), terminating: tri(bits >> 4))
        }

        /// `a.b.c.d`, each part 0–255 in decimal without leading zeros, as a number; nil for
        /// anything else (which is kept as text, so that it reads back as it was given).
        static func canonicalIPv4(_ text: String) -> UInt32? {
            var value: UInt32 = 0
            var part: UInt32 = 0
            var digits = 0
            var parts = 0
            for byte in text.utf8 {
                if byte == UInt8(ascii: ".") {
                    guard digits > 0, parts < 3 else { return nil }
                    value = value << 8 | part
                    parts += 1
                    part = 0
                    digits = 0
                } else {
                    guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits < 3 else { return nil }
                    // No leading zero: "0" alone only.
                    if digits == 1 && part == 0 { return nil }
                    part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                    guard part <= 255 else { return nil }
                    digits += 1
                }
            }
            guard digits > 0, parts == 3 else { return nil }
            return value << 8 | part
        }

        /// The canonical text of an IPv4 address (at most 15 bytes: a small string, no
        /// allocation).
        static func dottedQuad(_ value: UInt32) -> String {
            "\(value >> 24).\((value >> 16) & 0xFF).\((value >> 8) & 0xFF).\(value & 0xFF)"
        }
    }

    /// Each nil is the API's "unknown", read through `Endpoint.isReady` and the like.
    public struct Conditions: Codable, Hashable, Sendable {
        public var ready: Bool?
        public var serving: Bool?
        public var terminating: Bool?

        public init(ready: Bool? = nil, serving: Bool? = nil, terminating: Bool? = nil) {
            self.ready = ready
            self.serving = serving
            self.terminating = terminating
        }
    }

    public struct Port: Codable, Hashable, Sendable {
        /// Equals the Service port's `name`; `""` (or absent) for an unnamed port.
        public var name: String?
        /// `TCP` when absent.
        public var `protocol`: String?
        /// The target port number, for the endpoints of this slice. Absent: unspecified.
        public var port: Int?
        public var appProtocol: String?

        public init(name: String? = nil, protocol: String? = nil, port: Int? = nil, appProtocol: String? = nil) {
            self.name = name
            self.protocol = `protocol`
            self.port = port
            self.appProtocol = appProtocol
        }
    }
}

// MARK: - Status

/// A `Status` object: the `object` of an `ERROR` watch event, or the body of a non-200 answer.
public struct KubeStatus: Codable, Hashable, Sendable, Error, CustomStringConvertible {
    public var status: String?
    public var message: String?
    /// `Expired` (current servers) or `Gone` (older ones) with code 410.
    public var reason: String?
    public var code: Int?

    public init(status: String? = nil, message: String? = nil, reason: String? = nil, code: Int? = nil) {
        self.status = status
        self.message = message
        self.reason = reason
        self.code = code
    }

    /// 410: the resourceVersion is too old to watch from; list again.
    public var isGone: Bool { code == 410 }

    public var description: String {
        "\(code.map(String.init) ?? "no code") \(reason ?? "")\(message.map { ": \($0)" } ?? "")"
    }
}
