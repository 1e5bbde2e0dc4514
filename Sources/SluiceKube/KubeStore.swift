/// The objects of one kind (Services or EndpointSlices) as the last list and the watch
/// events since made them, by `namespace/name`, and the resourceVersion to watch from.
///
/// | state              | `resourceVersion` | next step of the caller            |
/// | ------------------ | ----------------- | ---------------------------------- |
/// | never listed       | nil               | LIST                               |
/// | listed / watching  | last seen         | WATCH from it                      |
/// | 410 received       | nil               | LIST again (items kept until then) |
///
/// Items survive a 410 and any other error: the last good table keeps serving until a new
/// list replaces it whole. ResourceVersions are opaque strings, compared for equality only.
public struct KubeStore<Object: KubeObject>: Sendable {
    public private(set) var items: [KubeObjectKey: Object] = [:]
    /// Where the next watch starts; nil when a (re-)list is needed.
    public private(set) var resourceVersion: String?
    /// Whether a list has been applied since the store was made (the first full sync).
    public private(set) var hasSynced = false

    public init() {}

    /// What applying an event or a list meant.
    public enum Outcome: Equatable, Sendable {
        /// The stored objects changed.
        case changed
        /// Only the resourceVersion moved (a bookmark, or an object stored as it already was).
        case unchanged
        /// 410: the resourceVersion is too old. List again, then watch from the list's.
        case relist(KubeStatus)
        /// Another error: back off and watch again from `resourceVersion`.
        case rewatch(KubeStatus)
    }

    /// Replaces every object with a complete list (all pages joined) taken at
    /// `resourceVersion`. Returns `.changed` or `.unchanged`.
    @discardableResult
    public mutating func replace(with objects: [Object], resourceVersion: String?) -> Outcome {
        var fresh: [KubeObjectKey: Object] = [:]
        fresh.reserveCapacity(objects.count)
        for object in objects { fresh[object.key] = object }
        self.resourceVersion = resourceVersion
        hasSynced = true
        if fresh == items { return .unchanged }
        items = fresh
        return .changed
    }

    /// Replaces every object with a one-page list document.
    @discardableResult
    public mutating func replace(with list: KubeList<Object>) -> Outcome {
        replace(with: list.items, resourceVersion: list.metadata.resourceVersion)
    }

    /// Applies one watch event. A 410 `ERROR` forgets the resourceVersion (the next step is
    /// a list) but keeps the objects.
    public mutating func apply(_ event: KubeWatchEvent<Object>) -> Outcome {
        switch event {
        case .added(let object), .modified(let object):
            remember(object.metadata.resourceVersion)
            let key = object.key
            if items[key] == object { return .unchanged }
            items[key] = object
            return .changed
        case .deleted(let object):
            remember(object.metadata.resourceVersion)
            return items.removeValue(forKey: object.key) == nil ? .unchanged : .changed
        case .bookmark(let version):
            remember(version)
            return .unchanged
        case .error(let status):
            if status.isGone {
                resourceVersion = nil
                return .relist(status)
            }
            return .rewatch(status)
        }
    }

    private mutating func remember(_ version: String?) {
        if let version, !version.isEmpty { resourceVersion = version }
    }
}
