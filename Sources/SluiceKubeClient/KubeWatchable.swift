import SluiceKube

/// A kind discovery lists and watches: its collection, and its store in `KubeCache`
/// (mutated in place).
public protocol KubeWatchable: KubeObject {
    static var resource: KubeResource { get }
    static func resourceVersion(in cache: KubeCache) -> String?
    static func replace(in cache: inout KubeCache, with items: [Self], resourceVersion: String?)
    static func apply(_ event: KubeWatchEvent<Self>, to cache: inout KubeCache) -> KubeStore<Self>.Outcome
    /// The object stored under `key`, if any.
    static func stored(_ key: KubeObjectKey, in cache: KubeCache) -> Self?
    /// The Service whose part of the plan this object is an input of (nil: none).
    var serviceKey: KubeObjectKey? { get }
}

extension KubeService: KubeWatchable {
    public static var resource: KubeResource { .services }
    public static func resourceVersion(in cache: KubeCache) -> String? { cache.services.resourceVersion }
    public static func replace(in cache: inout KubeCache, with items: [Self], resourceVersion: String?) {
        cache.services.replace(with: items, resourceVersion: resourceVersion)
    }
    public static func apply(_ event: KubeWatchEvent<Self>, to cache: inout KubeCache) -> KubeStore<Self>.Outcome {
        cache.services.apply(event)
    }
    public static func stored(_ key: KubeObjectKey, in cache: KubeCache) -> Self? { cache.services.items[key] }
    public var serviceKey: KubeObjectKey? { key }
}

extension KubeEndpointSlice: KubeWatchable {
    public static var resource: KubeResource { .endpointSlices }
    public static func resourceVersion(in cache: KubeCache) -> String? { cache.endpointSlices.resourceVersion }
    public static func replace(in cache: inout KubeCache, with items: [Self], resourceVersion: String?) {
        cache.endpointSlices.replace(with: items, resourceVersion: resourceVersion)
    }
    public static func apply(_ event: KubeWatchEvent<Self>, to cache: inout KubeCache) -> KubeStore<Self>.Outcome {
        cache.endpointSlices.apply(event)
    }
    public static func stored(_ key: KubeObjectKey, in cache: KubeCache) -> Self? { cache.endpointSlices.items[key] }
    public var serviceKey: KubeObjectKey? {
        serviceName.map { KubeObjectKey(namespace: metadata.namespace ?? "", name: $0) }
    }
}
