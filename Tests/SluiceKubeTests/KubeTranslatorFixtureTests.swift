import SluiceKube
import SluiceRouting
import Testing

@Suite("Translation of the fixture cluster", .enabled(if: Fixtures.available, Fixtures.skipMessage))
struct KubeTranslatorFixtureTests {
    let mysqlTCP = KubeTCPService(name: "mysql", port: "3306", listenPort: 3306)

    @Test func listsBecomeRoutesAndEndpoints() throws {
        let translation = KubeTranslator().translate(try Fixtures.listedCache())
        let plan = translation.plan
        // Only the opted-in Services: not kubernetes, mysql, db-headless or the LB itself.
        #expect(plan.services.map(\.key) == ["default/secure-app:8080", "monitoring/grafana:80"])
        #expect(
            plan.routeLines == [
                "secure.example.com / -> default/secure-app:8080",
                "grafana.example.com:30800 / -> monitoring/grafana:80",
            ])
        // grafana: the ready IPv4 and IPv6 endpoints on the slice's port for "http" (3000); the
        // not-ready one never, the terminating one not while another is ready.
        let grafana = try #require(plan.service("monitoring/grafana:80"))
        #expect(grafana.endpoints == [addr("10.244.1.17:3000"), addr("[fd00:10:244:1::11]:3000")])
        #expect(grafana.algorithm == .roundrobin)
        // secure-app: the named port "http" is 8080 in one slice, 8081 in the other; cookie
        // stickiness wins over ClientIP affinity and lb.algorithm.
        let secure = try #require(plan.service("default/secure-app:8080"))
        #expect(secure.endpoints == [addr("10.244.1.40:8080"), addr("10.244.2.41:8080"), addr("10.244.3.52:8081")])
        #expect(secure.algorithm == .cookie)
        #expect(secure.sslTerm)
        #expect(secure.clientIPTimeoutSeconds == nil)
        #expect(
            translation.warnings.map(\.description) == [
                "Service default/secure-app: lb.sslTerm: there is no TLS listener (--tls-address); serving these hosts over http"
            ])
        #expect(plan.tcpListeners.isEmpty)
        #expect(plan.defaultStatus == 404)
    }

    @Test func snapshotRoutesByHost() throws {
        let (snapshot, _) = KubeTranslator().snapshot(try Fixtures.listedCache(), generation: 3)
        #expect(snapshot.generation == 3)
        #expect(snapshot.listeners.count == 1)
        let listener = snapshot.listeners[0]
        #expect(listener.protocol == .http)
        #expect(listener.address == addr("0.0.0.0:80"))
        let table = snapshot.routeTables[listener.routes]
        let grafana = try #require(snapshot.serviceIndex(named: "monitoring/grafana:80"))
        #expect(lookup(table, "grafana.example.com:30800") == .service(Int32(grafana), stripPrefix: 0))
        #expect(lookup(table, "GRAFANA.Example.com:30800") == .service(Int32(grafana), stripPrefix: 0))
        #expect(lookup(table, "grafana.example.com") == .noRoute)
        let secure = try #require(snapshot.serviceIndex(named: "default/secure-app:8080"))
        #expect(lookup(table, "secure.example.com:30800") == .service(Int32(secure), stripPrefix: 0))
        #expect(lookup(table, "kubernetes") == .noRoute)
        #expect(table.defaultBackend.status == 404)
        let service = snapshot.services[grafana]
        #expect(
            snapshot.endpoints[service.endpoints].map(\.address) == [
                addr("10.244.1.17:3000"), addr("[fd00:10:244:1::11]:3000"),
            ])
        #expect(snapshot.services[secure].cookieName == Service.defaultCookieName)
    }

    func lookup(_ table: HTTPRouteTable, _ host: String, path: String = "/") -> RouteMatch {
        Array(host.utf8).withUnsafeBytes { hostBytes in
            Array(path.utf8).withUnsafeBytes { table.lookup(host: hostBytes, path: $0, defaultPort: 80) }
        }
    }

    @Test func tcpServicesExposeUnannotatedServices() throws {
        let options = KubeTranslatorOptions(tcpServices: [mysqlTCP])
        let plan = KubeTranslator(options: options).translate(try Fixtures.listedCache()).plan
        #expect(plan.service("default/mysql:3306")?.endpoints == [addr("10.244.2.35:3306")])
        #expect(plan.tcpListeners == [.init(address: addr("0.0.0.0:3306"), service: "default/mysql:3306")])
        let (snapshot, _) = KubeTranslator(options: options).snapshot(try Fixtures.listedCache(), generation: 1)
        let tcp = try #require(snapshot.listeners.first { $0.protocol == .tcp })
        #expect(snapshot.services[tcp.service].name == "default/mysql:3306")
    }

    @Test func serviceWatchStreamEventByEvent() throws {
        var cache = try Fixtures.listedCache()
        let translator = KubeTranslator(options: KubeTranslatorOptions(tcpServices: [mysqlTCP]))
        let events = try Fixtures.serviceEvents()
        var plan = translator.translate(cache).plan

        // ADDED kibana: a new route; no slice yet, so no endpoints.
        _ = cache.apply(events[0])
        var next = translator.translate(cache).plan
        #expect(next.routeLines.contains("kibana.example.com:30800 / -> logging/kibana:5601"))
        #expect(next.service("logging/kibana:5601")?.endpoints == [])
        #expect(next.contentHash != plan.contentHash)
        plan = next

        // MODIFIED grafana: leastconn.
        _ = cache.apply(events[1])
        next = translator.translate(cache).plan
        #expect(next.service("monitoring/grafana:80")?.algorithm == .leastconn)
        #expect(plan.service("monitoring/grafana:80")?.algorithm == .roundrobin)
        plan = next

        // BOOKMARK: nothing.
        _ = cache.apply(events[2])
        #expect(translator.translate(cache).plan == plan)

        // DELETED mysql: the TCP listener stays, with no endpoints, and a warning says why.
        _ = cache.apply(events[3])
        let translation = translator.translate(cache)
        #expect(translation.plan.tcpListeners.count == 1)
        #expect(translation.plan.service("default/mysql:3306")?.endpoints == [])
        #expect(translation.warnings.contains { $0.message.contains("no such Service") })
        plan = translation.plan

        // 410: nothing changes until the list comes back.
        _ = cache.apply(events[4])
        #expect(translator.translate(cache).plan == plan)
    }

    @Test func sliceWatchStreamEventByEvent() throws {
        var cache = try Fixtures.listedCache()
        _ = cache.apply(try Fixtures.serviceEvents()[0])  // kibana exists
        let translator = KubeTranslator(options: KubeTranslatorOptions(tcpServices: [mysqlTCP]))
        let events = try Fixtures.sliceEvents()
        let start = translator.translate(cache).plan

        // MODIFIED grafana-x7k2p: the formerly not-ready pod is ready, the terminating one left.
        _ = cache.apply(events[0])
        var plan = translator.translate(cache).plan
        #expect(
            plan.service("monitoring/grafana:80")?.endpoints == [
                addr("10.244.1.17:3000"), addr("10.244.2.33:3000"), addr("[fd00:10:244:1::11]:3000"),
            ])
        #expect(plan.contentHash != start.contentHash)

        // ADDED kibana slice with one endpoint that is neither ready nor serving: no change.
        _ = cache.apply(events[1])
        #expect(translator.translate(cache).plan.contentHash == plan.contentHash)
        #expect(translator.translate(cache).plan.service("logging/kibana:5601")?.endpoints == [])

        // BOOKMARK: nothing.
        _ = cache.apply(events[2])
        #expect(translator.translate(cache).plan == plan)

        // DELETED mysql slice: the TCP service loses its endpoint.
        _ = cache.apply(events[3])
        let next = translator.translate(cache).plan
        #expect(next.service("default/mysql:3306")?.endpoints == [])
        plan = next

        // 410: the cache keeps serving what it had.
        #expect(cache.apply(events[4]) != .changed)
        #expect(translator.translate(cache).plan == plan)
    }

    @Test func unrelatedChangesKeepTheContentHash() throws {
        var cache = try Fixtures.listedCache()
        let translator = KubeTranslator()
        let hash = translator.translate(cache).contentHash
        #expect(translator.translate(cache).contentHash == hash)

        // A leader-election style update in kube-system: a slice of an unexposed Service.
        let leader = slice(
            "kube-system", "kube-controller-manager-abcde", service: "kube-controller-manager",
            endpoints: [endpoint("10.0.0.5")])
        _ = cache.apply(KubeWatchEvent<KubeEndpointSlice>.added(leader))
        var renewed = leader
        renewed.metadata.resourceVersion = "2"
        renewed.metadata.annotations = ["control-plane.alpha.kubernetes.io/leader": "{\"renewTime\":\"now\"}"]
        _ = cache.apply(KubeWatchEvent<KubeEndpointSlice>.modified(renewed))
        #expect(translator.translate(cache).contentHash == hash)

        // A Service without the annotation changes.
        var headless = try #require(cache.services.items[KubeObjectKey(namespace: "default", name: "db-headless")])
        headless.metadata.labels = ["touched": "yes"]
        headless.spec?.ports?[0].port = 5433
        _ = cache.apply(KubeWatchEvent<KubeService>.modified(headless))
        #expect(translator.translate(cache).contentHash == hash)

        // An exposed Service gets a new resourceVersion and an unrelated label.
        var grafana = try #require(cache.services.items[KubeObjectKey(namespace: "monitoring", name: "grafana")])
        grafana.metadata.resourceVersion = "60000"
        grafana.metadata.labels?["release"] = "v2"
        _ = cache.apply(KubeWatchEvent<KubeService>.modified(grafana))
        #expect(translator.translate(cache).contentHash == hash)

        // The same endpoints in a different order, split differently: still no change.
        var x7k2p = try #require(
            cache.endpointSlices.items[KubeObjectKey(namespace: "monitoring", name: "grafana-x7k2p")])
        x7k2p.endpoints?.reverse()
        x7k2p.metadata.resourceVersion = "60001"
        _ = cache.apply(KubeWatchEvent<KubeEndpointSlice>.modified(x7k2p))
        #expect(translator.translate(cache).contentHash == hash)

        // A routing change does change it.
        grafana.metadata.annotations?[KubeAnnotation.aclMatch] = "/grafana"
        _ = cache.apply(KubeWatchEvent<KubeService>.modified(grafana))
        #expect(translator.translate(cache).contentHash != hash)
    }

    @Test func namespaceFilter() throws {
        let options = KubeTranslatorOptions(namespace: "monitoring")
        let plan = KubeTranslator(options: options).translate(try Fixtures.listedCache()).plan
        #expect(plan.services.map(\.key) == ["monitoring/grafana:80"])
    }

    @Test func contentHashIsStableText() throws {
        let plan = KubeTranslator().translate(try Fixtures.listedCache()).plan
        #expect(
            plan.canonicalText == """
                http 0.0.0.0:80 default 404
                route secure.example.com / default/secure-app:8080
                route grafana.example.com:30800 / monitoring/grafana:80
                service default/secure-app:8080 cookie sslTerm true
                  10.244.1.40:8080
                  10.244.2.41:8080
                  10.244.3.52:8081
                service monitoring/grafana:80 roundrobin sslTerm false
                  10.244.1.17:3000
                  [fd00:10:244:1::11]:3000

                """)
    }
}
