import Foundation

/// One line of a watch stream: `{"type": "...", "object": {...}}`.
///
/// `ADDED`, `MODIFIED` and `DELETED` carry a full object (`DELETED` its last state);
/// `BOOKMARK` only a resourceVersion ("every change up to here was sent"); `ERROR` a `Status`,
/// where code 410 means the watch's resourceVersion is too old and the client must list again.
public enum KubeWatchEvent<Object: KubeObject>: Hashable, Sendable {
    case added(Object)
    case modified(Object)
    case deleted(Object)
    case bookmark(resourceVersion: String?)
    case error(KubeStatus)

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        /// A `type` outside ADDED, MODIFIED, DELETED, BOOKMARK, ERROR.
        case unknownType(String)
        /// Not JSON, or not the event's shape.
        case malformed(String)

        public var description: String {
            switch self {
            case .unknownType(let type): return "unknown watch event type '\(type)'"
            case .malformed(let detail): return "malformed watch event: \(detail)"
            }
        }
    }

    /// Decodes one line from `WatchLineSplitter`, in one pass over its bytes: `type` first,
    /// then `object` as that type says (of which only the fields discovery reads, see
    /// `KubeObjectMeta`). Throws `DecodeError` only.
    public static func decode(_ line: some Collection<UInt8>) throws(DecodeError) -> KubeWatchEvent {
        do {
            return try JSONDecoder().decode(Line.self, from: Data(line)).event
        } catch let error as DecodeError {
            throw error
        } catch {
            throw .malformed(String(describing: error))
        }
    }

    /// `{"type": ..., "object": ...}`; an unknown `type` throws `DecodeError.unknownType`
    /// before its object is read.
    private struct Line: Decodable {
        var event: KubeWatchEvent

        private enum CodingKeys: String, CodingKey {
            case type, object
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let type = try container.decode(String.self, forKey: .type)
            switch type {
            case "ADDED": event = .added(try container.decode(Object.self, forKey: .object))
            case "MODIFIED": event = .modified(try container.decode(Object.self, forKey: .object))
            case "DELETED": event = .deleted(try container.decode(Object.self, forKey: .object))
            case "BOOKMARK":
                let object = try container.decode(Bookmark.self, forKey: .object)
                event = .bookmark(resourceVersion: object.metadata?.resourceVersion)
            case "ERROR": event = .error(try container.decode(KubeStatus.self, forKey: .object))
            default: throw DecodeError.unknownType(type)
            }
        }
    }

    /// Only `metadata.resourceVersion` of a bookmark is meaningful; the rest are zero values.
    private struct Bookmark: Decodable {
        var metadata: KubeObjectMeta?
    }
}
