/// The cluster state discovery works from: the Services and the EndpointSlices, each with
/// its own resourceVersion (they are separate collections, listed and watched separately).
///
/// A value: the watcher owns one, applies lists and events to it, and hands copies to
/// `KubeTranslator`. Not shared between threads.
public struct KubeCache: Sendable {
    public var services = KubeStore<KubeService>()
    public var endpointSlices = KubeStore<KubeEndpointSlice>()

    public init() {}

    /// Whether both collections have been listed once (what `/readyz` waits for).
    public var hasSynced: Bool { services.hasSynced && endpointSlices.hasSynced }

    /// Applies a Service watch event.
    public mutating func apply(_ event: KubeWatchEvent<KubeService>) -> KubeStore<KubeService>.Outcome {
        services.apply(event)
    }

    /// Applies an EndpointSlice watch event.
    public mutating func apply(_ event: KubeWatchEvent<KubeEndpointSlice>) -> KubeStore<KubeEndpointSlice>.Outcome {
        endpointSlices.apply(event)
    }
}
