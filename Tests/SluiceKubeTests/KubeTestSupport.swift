import Foundation
import SluiceKube
import SluiceRouting
import Testing

/// The shared API fixtures (`../shared/k8s-fixtures` next to the package root), read at test
/// time. Tests that need them are disabled with `Fixtures.skipMessage` when they are absent.
enum Fixtures {
    static let directory: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // file, SluiceKubeTests, Tests
        return url.deletingLastPathComponent().appendingPathComponent("shared/k8s-fixtures")
    }()

    static var available: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("services-list.json").path)
    }

    static let skipMessage: Comment = "the shared Kubernetes fixtures (../shared/k8s-fixtures) are missing"

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: directory.appendingPathComponent(name)))
    }

    static let streams = ["watch-services.jsonl", "watch-endpointslices.jsonl"]

    static func services() throws -> KubeList<KubeService> { try KubeList.decode(try bytes("services-list.json")) }

    static func slices() throws -> KubeList<KubeEndpointSlice> {
        try KubeList.decode(try bytes("endpointslices-list.json"))
    }

    /// The lines of a stream file, split on newlines with no splitter involved.
    static func lines(_ name: String) throws -> [[UInt8]] {
        try bytes(name).split(separator: UInt8(ascii: "\n")).map(Array.init)
    }

    static func serviceEvents() throws -> [KubeWatchEvent<KubeService>] {
        try lines("watch-services.jsonl").map { try KubeWatchEvent.decode($0) }
    }

    static func sliceEvents() throws -> [KubeWatchEvent<KubeEndpointSlice>] {
        try lines("watch-endpointslices.jsonl").map { try KubeWatchEvent.decode($0) }
    }

    /// A cache holding both lists, as after the first full sync.
    static func listedCache() throws -> KubeCache {
        var cache = KubeCache()
        cache.services.replace(with: try services())
        cache.endpointSlices.replace(with: try slices())
        return cache
    }
}

/// Shorthand for addresses in expectations.
func addr(_ text: String) -> SocketAddress {
    guard case .success(let address) = SocketAddress.parse(text) else { fatalError("bad test address \(text)") }
    return address
}

extension KubeRoutingPlan {
    func service(_ key: String) -> PlannedService? { services.first { $0.key == key } }

    /// `host path -> service` for every route.
    var routeLines: [String] { routes.map { "\($0.host) \($0.pathPrefix) -> \($0.service)" } }
}

/// A Service with the given annotations and ports, for tests that build their own cluster.
func service(
    _ namespace: String, _ name: String, annotations: [String: String]? = nil,
    ports: [KubeService.Port] = [KubeService.Port(name: "http", port: 80, targetPort: .string("http"))],
    affinity: String? = nil
) -> KubeService {
    KubeService(
        metadata: KubeObjectMeta(name: name, namespace: namespace, resourceVersion: "1", annotations: annotations),
        spec: KubeService.Spec(ports: ports, sessionAffinity: affinity))
}

/// An EndpointSlice of `serviceName` with one port and the given endpoints.
func slice(
    _ namespace: String, _ name: String, service serviceName: String, family: String = "IPv4",
    port: KubeEndpointSlice.Port? = KubeEndpointSlice.Port(name: "http", port: 8080),
    endpoints: [KubeEndpointSlice.Endpoint]
) -> KubeEndpointSlice {
    KubeEndpointSlice(
        metadata: KubeObjectMeta(
            name: name, namespace: namespace, resourceVersion: "1",
            labels: [KubeEndpointSlice.serviceNameLabel: serviceName]),
        addressType: family, endpoints: endpoints, ports: port.map { [$0] })
}

func endpoint(_ address: String, ready: Bool? = true, serving: Bool? = nil, terminating: Bool? = nil)
    -> KubeEndpointSlice.Endpoint
{
    KubeEndpointSlice.Endpoint(
        addresses: [address],
        conditions: KubeEndpointSlice.Conditions(ready: ready, serving: serving, terminating: terminating))
}

/// A cache holding exactly these objects.
func cache(services: [KubeService], slices: [KubeEndpointSlice]) -> KubeCache {
    var cache = KubeCache()
    cache.services.replace(with: services, resourceVersion: "10")
    cache.endpointSlices.replace(with: slices, resourceVersion: "11")
    return cache
}
