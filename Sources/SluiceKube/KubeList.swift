import Foundation

/// A list document (`ServiceList`, `EndpointSliceList`): one page of items and the list's
/// metadata. The list's `resourceVersion` (not any item's) is where the watch starts.
public struct KubeList<Object: KubeObject>: Codable, Hashable, Sendable {
    public var metadata: ListMeta
    /// A JSON `null` or absent `items` reads as empty.
    public var items: [Object]

    public init(resourceVersion: String?, items: [Object], continueToken: String? = nil) {
        self.metadata = ListMeta(resourceVersion: resourceVersion, continueToken: continueToken)
        self.items = items
    }

    public struct ListMeta: Codable, Hashable, Sendable {
        /// Constant across the pages of one paged list.
        public var resourceVersion: String?
        /// Non-empty: more pages follow; pass it as `continue=`.
        public var continueToken: String?

        public init(resourceVersion: String? = nil, continueToken: String? = nil) {
            self.resourceVersion = resourceVersion
            self.continueToken = continueToken
        }

        private enum CodingKeys: String, CodingKey {
            case resourceVersion
            case continueToken = "continue"
        }
    }

    private enum CodingKeys: String, CodingKey {
        case metadata, items
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        metadata = try container.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
        items = try container.decodeIfPresent([Object].self, forKey: .items) ?? []
    }

    /// Decodes a list response body: the list's metadata and, of each item, only the fields
    /// discovery reads (see `KubeObjectMeta`). Throws `DecodingError`.
    public static func decode(_ body: Data) throws -> KubeList {
        try JSONDecoder().decode(KubeList.self, from: body)
    }

    /// `decode` from bytes (a copy is made).
    public static func decode(_ body: some Collection<UInt8>) throws -> KubeList {
        try decode(Data(body))
    }

    /// Whether another page follows this one.
    public var hasMorePages: Bool { !(metadata.continueToken ?? "").isEmpty }
}
