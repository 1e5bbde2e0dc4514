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

    /// Decodes one line from `WatchLineSplitter`. Throws `DecodeError` only.
    public static func decode(_ line: some Collection<UInt8>) throws(DecodeError) -> KubeWatchEvent {
        let decoder = JSONDecoder()
        let data = Data(line)
        let type: String
        do {
            type = try decoder.decode(Envelope<Ignored>.self, from: data).type
        } catch {
            throw .malformed(String(describing: error))
        }
        do {
            switch type {
            case "ADDED": return .added(try decoder.decode(Envelope<Object>.self, from: data).object)
            case "MODIFIED": return .modified(try decoder.decode(Envelope<Object>.self, from: data).object)
            case "DELETED": return .deleted(try decoder.decode(Envelope<Object>.self, from: data).object)
            case "BOOKMARK":
                let object = try decoder.decode(Envelope<Bookmark>.self, from: data).object
                return .bookmark(resourceVersion: object.metadata?.resourceVersion)
            case "ERROR": return .error(try decoder.decode(Envelope<KubeStatus>.self, from: data).object)
            default: throw DecodeError.unknownType(type)
            }
        } catch let error as DecodeError {
            throw error
        } catch {
            throw .malformed(String(describing: error))
        }
    }

    private struct Envelope<Payload: Decodable>: Decodable {
        var type: String
        var object: Payload
    }

    private struct Ignored: Decodable {}

    /// Only `metadata.resourceVersion` of a bookmark is meaningful; the rest are zero values.
    private struct Bookmark: Decodable {
        var metadata: KubeObjectMeta?
    }
}
