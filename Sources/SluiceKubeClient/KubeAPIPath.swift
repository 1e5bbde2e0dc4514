/// The collections discovery reads, and the request targets (path and query) for listing
/// and watching them. Pure: no I/O.
public enum KubeResource: String, Sendable, CaseIterable, CustomStringConvertible {
    case services
    case endpointSlices

    /// The collection path, all namespaces or one.
    public func collectionPath(namespace: String?) -> String {
        let (prefix, plural) =
            switch self {
            case .services: ("/api/v1", "services")
            case .endpointSlices: ("/apis/discovery.k8s.io/v1", "endpointslices")
            }
        guard let namespace else { return "\(prefix)/\(plural)" }
        return "\(prefix)/namespaces/\(KubeAPIPath.escape(namespace))/\(plural)"
    }

    public var description: String {
        switch self {
        case .services: return "Services"
        case .endpointSlices: return "EndpointSlices"
        }
    }
}

public enum KubeAPIPath {
    /// Items per list page.
    public static let pageSize = 500

    /// One page of a paged list: `limit=` and, after the first page, `continue=`.
    public static func list(
        _ resource: KubeResource, namespace: String?, limit: Int = pageSize, continueToken: String? = nil
    ) -> String {
        var query = [("limit", String(limit))]
        if let continueToken, !continueToken.isEmpty { query.append(("continue", continueToken)) }
        return resource.collectionPath(namespace: namespace) + render(query)
    }

    /// A watch from `resourceVersion` (the list's, then the last event's or bookmark's), with
    /// bookmarks, closed by the server after `timeoutSeconds`.
    public static func watch(
        _ resource: KubeResource, namespace: String?, resourceVersion: String, timeoutSeconds: Int
    ) -> String {
        let query = [
            ("watch", "1"), ("resourceVersion", resourceVersion), ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", String(timeoutSeconds)),
        ]
        return resource.collectionPath(namespace: namespace) + render(query)
    }

    static func render(_ query: [(String, String)]) -> String {
        "?" + query.map { "\($0.0)=\(escape($0.1))" }.joined(separator: "&")
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters, so that a continue
    /// token (base64: `+`, `/`, `=`) or a resourceVersion survives as one opaque value.
    public static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}
