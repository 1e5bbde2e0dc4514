import Foundation
import SluiceKube
import Testing

/// Objects as a busy cluster sends them: server-side-apply `managedFields`, a
/// `last-applied-configuration`, annotations and labels of other controllers, endpoint hints
/// and pod references. None of it is read, and none of it may stay in the cache.
@Suite("Decoding only what is read")
struct KubeLeanDecodingTests {
    static let mebibyte = String(repeating: "x", count: 1 << 20)

    /// `managedFields` of `entries` entries of about 8 KiB each.
    static func managedFields(entries: Int) -> [[String: Any]] {
        (0..<entries).map { index in
            [
                "manager": "controller-\(index)", "operation": "Update", "apiVersion": "v1",
                "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": ["f:metadata": ["f:annotations": ["f:k\(index)": String(repeating: "y", count: 8 << 10)]]],
            ]
        }
    }

    static func heavyMetadata(name: String, labels: [String: String], annotations: [String: String]) -> [String: Any] {
        var allLabels: [String: String] = labels
        for index in 0..<200 { allLabels["team.example.com/label-\(index)"] = "value-\(index)" }
        var allAnnotations = annotations
        allAnnotations["example.com/unrelated-blob"] = mebibyte
        allAnnotations["kubectl.kubernetes.io/last-applied-configuration"] = mebibyte
        return [
            "name": name, "namespace": "shop", "uid": "u-\(name)", "resourceVersion": "7",
            "creationTimestamp": "2025-01-01T00:00:00Z", "labels": allLabels, "annotations": allAnnotations,
            "managedFields": managedFields(entries: 256),
            "ownerReferences": [["apiVersion": "v1", "kind": "Service", "name": "web", "uid": "u-web"]],
        ]
    }

    static func heavyService() -> [String: Any] {
        [
            "metadata": heavyMetadata(
                name: "web", labels: ["app": "web"],
                annotations: [KubeAnnotation.host: "web.example.com", KubeAnnotation.algorithm: "leastconn"]),
            "spec": [
                "type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": ["app": "web"],
                "ports": [["name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"]],
            ],
            "status": ["loadBalancer": [String: Any]()],
        ]
    }

    static func heavySlice() -> [String: Any] {
        let endpoints: [[String: Any]] = (1...100).map { index in
            [
                "addresses": ["10.1.0.\(index)"], "conditions": ["ready": true, "serving": true, "terminating": false],
                "hostname": "web-\(index)", "nodeName": "node-\(index)", "zone": "zone-a",
                "targetRef": ["kind": "Pod", "namespace": "shop", "name": "web-\(index)", "uid": "p-\(index)"],
                "hints": ["forZones": [["name": "zone-a"]]],
            ]
        }
        return [
            "metadata": heavyMetadata(
                name: "web-abcde",
                labels: [
                    KubeEndpointSlice.serviceNameLabel: "web",
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                ],
                annotations: ["endpoints.kubernetes.io/last-change-trigger-time": "2025-01-01T00:00:00Z"]),
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [["name": "http", "protocol": "TCP", "port": 8080]],
        ]
    }

    static func json(_ object: Any) throws -> Data {
        try JSONSerialization.data(withJSONObject: object)
    }

    static func list(_ item: [String: Any]) throws -> Data {
        try json(["kind": "List", "apiVersion": "v1", "metadata": ["resourceVersion": "9"], "items": [item, item]])
    }

    /// The decoded object written back as JSON: what the cache holds of it.
    static func retained(_ object: some Encodable) throws -> Int {
        try JSONEncoder().encode(object).count
    }

    @Test func aServiceKeepsOnlyItsSluiceAnnotations() throws {
        let body = try Self.list(Self.heavyService())
        #expect(body.count > 4 << 20, "the fixture is heavy")
        let page = try KubeList<KubeService>.decode(body)
        #expect(page.metadata.resourceVersion == "9")
        #expect(page.items.count == 2)
        let web = try #require(page.items.first)
        #expect("\(web.key)" == "shop/web")
        #expect(web.metadata.resourceVersion == "7")
        #expect(
            web.metadata.annotations == [KubeAnnotation.host: "web.example.com", KubeAnnotation.algorithm: "leastconn"])
        #expect(web.metadata.labels == nil)
        #expect(web.spec?.ports?.first?.targetPort == .string("http"))
        #expect(try Self.retained(web) < 1024)
    }

    @Test func aSliceKeepsOnlyTheServiceNameLabelAndEndpointState() throws {
        let page = try KubeList<KubeEndpointSlice>.decode(try Self.list(Self.heavySlice()))
        let slice = try #require(page.items.first)
        #expect(slice.serviceName == "web")
        #expect(slice.metadata.labels == [KubeEndpointSlice.serviceNameLabel: "web"])
        #expect(slice.metadata.annotations == nil)
        #expect(slice.endpoints?.count == 100)
        #expect(
            slice.endpoints?.first
                == KubeEndpointSlice.Endpoint(
                    addresses: ["10.1.0.1"],
                    conditions: KubeEndpointSlice.Conditions(ready: true, serving: true, terminating: false)))
        #expect(slice.ports?.first?.port == 8080)
        // 100 endpoints of an address and three conditions each.
        #expect(try Self.retained(slice) < 100 * 100)
    }

    @Test func watchEventsAreDecodedTheSameWay() throws {
        var object = Self.heavyService()
        object["kind"] = "Service"
        object["apiVersion"] = "v1"
        let line = try Self.json(["type": "MODIFIED", "object": object])
        guard case .modified(let web) = try KubeWatchEvent<KubeService>.decode(line) else {
            Issue.record("expected MODIFIED")
            return
        }
        #expect(web.metadata.annotations?.keys.sorted() == [KubeAnnotation.algorithm, KubeAnnotation.host])
        #expect(try Self.retained(web) < 1024)

        let sliceLine = try Self.json(["type": "ADDED", "object": Self.heavySlice()])
        guard case .added(let slice) = try KubeWatchEvent<KubeEndpointSlice>.decode(sliceLine) else {
            Issue.record("expected ADDED")
            return
        }
        #expect(slice.metadata.labels?.keys.sorted() == [KubeEndpointSlice.serviceNameLabel])
    }

    @Test func everyAnnotationReadIsUnderThePrefixKept() {
        let read = [
            KubeAnnotation.host, KubeAnnotation.sslTerm, KubeAnnotation.aclMatch, KubeAnnotation.algorithm,
            KubeAnnotation.cookieStickySession,
        ]
        for name in read { #expect(name.hasPrefix(KubeObjectMeta.annotationPrefix)) }
        #expect(KubeObjectMeta.labelsRead.contains(KubeEndpointSlice.serviceNameLabel))
    }

    @Test func nullAndEmptyMapsDecodeAsNil() throws {
        let json = #"{"metadata":{"name":"a","labels":null,"annotations":{}},"spec":{"ports":[]}}"#
        let service = try JSONDecoder().decode(KubeService.self, from: Data(json.utf8))
        #expect(service.metadata.labels == nil)
        #expect(service.metadata.annotations == nil)
    }
}
