import SluiceKube
import Testing

@Suite("Cache: lists and watch events", .enabled(if: Fixtures.available, Fixtures.skipMessage))
struct KubeCacheTests {
    @Test func listsReplaceEverythingAndRememberTheListVersion() throws {
        var cache = KubeCache()
        #expect(!cache.hasSynced)
        #expect(cache.services.replace(with: try Fixtures.services()) == .changed)
        #expect(!cache.hasSynced)
        #expect(cache.endpointSlices.replace(with: try Fixtures.slices()) == .changed)
        #expect(cache.hasSynced)
        #expect(cache.services.resourceVersion == "48213")
        #expect(cache.endpointSlices.resourceVersion == "48217")
        #expect(cache.services.items.count == 6)
        #expect(cache.endpointSlices.items.count == 6)
        // The same list again changes nothing; a shorter one drops what it lacks.
        #expect(cache.services.replace(with: try Fixtures.services()) == .unchanged)
        let grafanaOnly = try Fixtures.services().items.filter { $0.key.name == "grafana" }
        #expect(cache.services.replace(with: grafanaOnly, resourceVersion: "50000") == .changed)
        #expect(cache.services.items.keys.map(\.description) == ["monitoring/grafana"])
        #expect(cache.services.resourceVersion == "50000")
    }

    @Test func serviceEventsOneByOne() throws {
        var cache = try Fixtures.listedCache()
        let events = try Fixtures.serviceEvents()
        let kibana = KubeObjectKey(namespace: "logging", name: "kibana")
        let grafana = KubeObjectKey(namespace: "monitoring", name: "grafana")
        let mysql = KubeObjectKey(namespace: "default", name: "mysql")

        #expect(cache.apply(events[0]) == .changed)
        #expect(cache.services.items[kibana] != nil)
        #expect(cache.services.resourceVersion == "48230")

        #expect(cache.apply(events[1]) == .changed)
        #expect(cache.services.items[grafana]?.metadata.annotations?[KubeAnnotation.algorithm] == "leastconn")
        #expect(cache.services.resourceVersion == "48241")

        let before = cache.services.items
        #expect(cache.apply(events[2]) == .unchanged)
        #expect(cache.services.items == before)
        #expect(cache.services.resourceVersion == "48302")

        #expect(cache.apply(events[3]) == .changed)
        #expect(cache.services.items[mysql] == nil)
        #expect(cache.services.resourceVersion == "48310")
        // Deleting what is not there changes nothing.
        #expect(cache.apply(events[3]) == .unchanged)

        guard case .relist(let status) = cache.apply(events[4]) else {
            Issue.record("a 410 asks for a new list")
            return
        }
        #expect(status.code == 410)
        #expect(cache.services.resourceVersion == nil)
        // The objects stay (the last good table keeps serving) until the new list arrives.
        #expect(cache.services.items.count == 6)
        #expect(cache.services.replace(with: try Fixtures.services()) == .changed)
        #expect(cache.services.resourceVersion == "48213")
        #expect(cache.services.items[kibana] == nil)
        #expect(cache.services.items[mysql] != nil)
    }

    @Test func sliceEventsOneByOne() throws {
        var cache = try Fixtures.listedCache()
        let events = try Fixtures.sliceEvents()
        #expect(cache.apply(events[0]) == .changed)
        #expect(cache.apply(events[1]) == .changed)
        #expect(cache.endpointSlices.items.count == 7)
        #expect(cache.apply(events[2]) == .unchanged)
        #expect(cache.endpointSlices.resourceVersion == "48300")
        #expect(cache.apply(events[3]) == .changed)
        #expect(cache.endpointSlices.items.count == 6)
        #expect(
            cache.apply(events[4])
                == .relist(
                    KubeStatus(
                        status: "Failure", message: "too old resource version: 48217 (48533)", reason: "Expired",
                        code: 410)))
        #expect(cache.endpointSlices.resourceVersion == nil)
    }

    @Test func otherErrorsKeepTheVersionForTheNextWatch() throws {
        var cache = try Fixtures.listedCache()
        let outcome = cache.apply(KubeWatchEvent<KubeService>.error(KubeStatus(reason: "InternalError", code: 500)))
        #expect(outcome == .rewatch(KubeStatus(reason: "InternalError", code: 500)))
        #expect(cache.services.resourceVersion == "48213")
    }

    @Test func reapplyingAnUnchangedObjectOnlyMovesTheVersion() throws {
        var cache = try Fixtures.listedCache()
        var grafana = try #require(cache.services.items[KubeObjectKey(namespace: "monitoring", name: "grafana")])
        #expect(cache.apply(.modified(grafana)) == .unchanged)
        grafana.metadata.resourceVersion = "99999"
        #expect(cache.apply(.modified(grafana)) == .changed)
        #expect(cache.services.resourceVersion == "99999")
    }
}
