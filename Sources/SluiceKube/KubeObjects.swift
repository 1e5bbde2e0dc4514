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
    public var uid: String?
    /// Opaque: compared for equality only, never ordered.
    public var resourceVersion: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?

    public init(
        name: String? = nil, namespace: String? = nil, uid: String? = nil, resourceVersion: String? = nil,
        labels: [String: String]? = nil, annotations: [String: String]? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.labels = labels
        self.annotations = annotations
    }

    private enum CodingKeys: String, CodingKey {
        case name, namespace, uid, resourceVersion, labels, annotations
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        namespace = try container.decodeIfPresent(String.self, forKey: .namespace)
        // Not read by discovery: kept out of the cache (a 36-byte string per object).
        uid = nil
        resourceVersion = try container.decodeIfPresent(String.self, forKey: .resourceVersion)
        labels = try Self.decodeMap(container, .labels) { Self.labelsRead.contains($0) }
        annotations = try Self.decodeMap(container, .annotations) { $0.hasPrefix(Self.annotationPrefix) }
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

    /// Decoded from JSON, only `ports`, `sessionAffinity` and `sessionAffinityConfig` (what
    /// discovery reads); the other fields stay nil. Made in code, every field holds what it
    /// is given.
    public struct Spec: Codable, Hashable, Sendable {
        public var type: String?
        public var ports: [Port]?
        /// Absent: the Service's endpoints are not managed by the EndpointSlice controller.
        public var selector: [String: String]?
        /// `"None"` for a headless Service.
        public var clusterIP: String?
        /// `None` (the API's default) or `ClientIP`.
        public var sessionAffinity: String?
        public var sessionAffinityConfig: SessionAffinityConfig?
        public var externalTrafficPolicy: String?
        public var internalTrafficPolicy: String?
        public var ipFamilies: [String]?

        public init(
            type: String? = nil, ports: [Port]? = nil, selector: [String: String]? = nil, clusterIP: String? = nil,
            sessionAffinity: String? = nil, sessionAffinityConfig: SessionAffinityConfig? = nil,
            externalTrafficPolicy: String? = nil, internalTrafficPolicy: String? = nil, ipFamilies: [String]? = nil
        ) {
            self.type = type
            self.ports = ports
            self.selector = selector
            self.clusterIP = clusterIP
            self.sessionAffinity = sessionAffinity
            self.sessionAffinityConfig = sessionAffinityConfig
            self.externalTrafficPolicy = externalTrafficPolicy
            self.internalTrafficPolicy = internalTrafficPolicy
            self.ipFamilies = ipFamilies
        }

        private enum CodingKeys: String, CodingKey {
            case type, ports, selector, clusterIP, sessionAffinity, sessionAffinityConfig, externalTrafficPolicy,
                internalTrafficPolicy, ipFamilies
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            ports = try container.decodeIfPresent([Port].self, forKey: .ports)
            sessionAffinity = try container.decodeIfPresent(String.self, forKey: .sessionAffinity)
            sessionAffinityConfig = try container.decodeIfPresent(
                SessionAffinityConfig.self, forKey: .sessionAffinityConfig)
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
    public var serviceName: String? { metadata.labels?[Self.serviceNameLabel] }

    /// An endpoint as discovery reads it: its first address and its conditions. `hostname`,
    /// `nodeName`, `zone`, `hints` and `targetRef` are not decoded, nor addresses after the
    /// first (kube-proxy reads only the first); one address is kept inline, with no array.
    public struct Endpoint: Codable, Hashable, Sendable {
        /// The first of `addresses`; nil when there is none.
        public var address: String?
        public var conditions: Conditions?

        /// The controller sets exactly one; extras are ignored (and not kept), as kube-proxy
        /// ignores them.
        public var addresses: [String] {
            get { address.map { [$0] } ?? [] }
            set { address = newValue.first }
        }

        public init(addresses: [String], conditions: Conditions? = nil) {
            self.address = addresses.first
            self.conditions = conditions
        }

        private enum CodingKeys: String, CodingKey {
            case addresses, conditions
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            address = try container.decodeIfPresent([String].self, forKey: .addresses)?.first
            conditions = try container.decodeIfPresent(Conditions.self, forKey: .conditions)
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
