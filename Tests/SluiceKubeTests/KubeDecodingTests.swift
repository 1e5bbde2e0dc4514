import Foundation
import SluiceKube
import Testing

@Suite("Decoding API objects", .enabled(if: Fixtures.available, Fixtures.skipMessage))
struct KubeDecodingTests {
    @Test func serviceListItemsWithoutKind() throws {
        let list = try Fixtures.services()
        #expect(list.metadata.resourceVersion == "48213")
        #expect(!list.hasMorePages)
        #expect(
            list.items.map { "\($0.key)" }.sorted() == [
                "default/db-headless", "default/kubernetes", "default/mysql", "default/secure-app",
                "kube-system/service-loadbalancer", "monitoring/grafana",
            ])
        let byName = Dictionary(uniqueKeysWithValues: list.items.map { ($0.key.name, $0) })
        #expect(byName["grafana"]?.spec?.ports?.first?.targetPort == .string("http"))
        #expect(byName["mysql"]?.spec?.ports?.first?.targetPort == .int(3306))
        #expect(byName["mysql"]?.spec?.ports?.first?.name == nil)
        #expect(byName["secure-app"]?.spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds == 10800)
        #expect(byName["service-loadbalancer"]?.spec?.ports?.map(\.nodePort) == [30800, 30443])
    }

    @Test func endpointSliceListWithNullArrays() throws {
        let list = try Fixtures.slices()
        #expect(list.metadata.resourceVersion == "48217")
        #expect(list.items.count == 6)
        let headless = try #require(list.items.first { $0.key.name == "db-headless-p2w9d" })
        #expect(headless.endpoints == nil)
        #expect(headless.ports == nil)
        #expect(headless.serviceName == "db-headless")
        let grafana = try #require(list.items.first { $0.key.name == "grafana-x7k2p" })
        let states = (grafana.endpoints ?? []).map { [$0.isReady, $0.isServing, $0.isTerminating] }
        #expect(states == [[true, true, false], [false, false, false], [false, true, true]])
        let mysql = try #require(list.items.first { $0.key.name == "mysql-4mq9z" })
        #expect(mysql.ports?.first?.name == "")
    }

    @Test func absentConditionsUseTheAPIDefaults() throws {
        let json =
            #"{"addressType":"IPv4","metadata":{"name":"s","namespace":"n"},"#
            + #""endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"],"conditions":{}}],"ports":[]}"#
        let slice = try JSONDecoderHelper.decode(KubeEndpointSlice.self, json)
        for endpoint in slice.endpoints ?? [] {
            #expect(endpoint.isReady)
            #expect(endpoint.isServing)
            #expect(!endpoint.isTerminating)
        }
    }

    @Test func watchEventsOfEveryType() throws {
        let services = try Fixtures.serviceEvents()
        #expect(services.count == 5)
        guard case .added(let kibana) = services[0] else { Issue.record("expected ADDED"); return }
        #expect("\(kibana.key)" == "logging/kibana")
        guard case .modified = services[1], case .deleted(let mysql) = services[3] else {
            Issue.record("expected MODIFIED and DELETED")
            return
        }
        #expect(mysql.metadata.resourceVersion == "48310")
        #expect(services[2] == .bookmark(resourceVersion: "48302"))
        guard case .error(let status) = services[4] else { Issue.record("expected ERROR"); return }
        #expect(status.code == 410)
        #expect(status.reason == "Expired")
        #expect(status.isGone)

        let slices = try Fixtures.sliceEvents()
        #expect(slices.count == 5)
        #expect(slices[2] == .bookmark(resourceVersion: "48300"))
    }

    @Test func unknownAndMalformedEvents() {
        #expect(throws: KubeWatchEvent<KubeService>.DecodeError.unknownType("SYNC")) {
            try KubeWatchEvent<KubeService>.decode(Array(#"{"type":"SYNC","object":{}}"#.utf8))
        }
        #expect(throws: KubeWatchEvent<KubeService>.DecodeError.self) {
            try KubeWatchEvent<KubeService>.decode(Array(#"{"type":"ADDED""#.utf8))
        }
        // A status that is not 410 (e.g. 500) decodes too.
        let line = #"{"type":"ERROR","object":{"kind":"Status","code":500,"message":"etcd"}}"#
        #expect(
            (try? KubeWatchEvent<KubeService>.decode(Array(line.utf8)))
                == .error(KubeStatus(message: "etcd", code: 500)))
    }

    @Test func bareStatusBodyAndPagedListMetadata() throws {
        let status = try JSONDecoderHelper.decode(
            KubeStatus.self,
            #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"Gone","code":410}"#
        )
        #expect(status.isGone)
        let page = try KubeList<KubeService>.decode(
            Array(#"{"metadata":{"resourceVersion":"7","continue":"abc"},"items":null}"#.utf8))
        #expect(page.hasMorePages)
        #expect(page.items.isEmpty)
        #expect(page.metadata.continueToken == "abc")
    }
}

enum JSONDecoderHelper {
    static func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }
}
