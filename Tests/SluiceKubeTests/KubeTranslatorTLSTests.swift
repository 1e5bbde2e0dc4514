import SluiceKube
import SluiceRouting
import Testing

/// A context that owns nothing: the translation only carries it into the snapshot.
func fakeTLSContext(_ summary: String = "test") -> TLSContextHandle {
    TLSContextHandle(pointer: OpaquePointer(bitPattern: 1)!, summary: summary, release: { _ in })
}

extension HTTPRouteTable {
    func match(host: String, path: String = "/", defaultPort: UInt16 = 443) -> RouteMatch {
        Array(host.utf8).withUnsafeBytes { host in
            Array(path.utf8).withUnsafeBytes { path in lookup(host: host, path: path, defaultPort: defaultPort) }
        }
    }

    func match(serverName: String) -> RouteMatch {
        Array(serverName.utf8).withUnsafeBytes { lookup(serverName: $0) }
    }
}

extension KubeRoutingPlan {
    /// `host path -> service` for every route of the TLS listener.
    var terminatedRouteLines: [String] { terminatedRoutes.map { "\($0.host) \($0.pathPrefix) -> \($0.service)" } }
}

@Suite("lb.sslTerm on the TLS listener")
struct KubeTranslatorTLSTests {
    let slot = KubeTLSContextSlot(fakeTLSContext())

    var options: KubeTranslatorOptions {
        KubeTranslatorOptions(defaultReturnCode: 421, tlsAddress: addr("0.0.0.0:443"), tlsContext: slot)
    }

    /// `secure` terminated (two hosts, one with a port, under /app), `web` over HTTP.
    var cluster: KubeCache {
        cache(
            services: [
                service(
                    "ns", "secure",
                    annotations: [
                        KubeAnnotation.host: "secure.example.com, grafana.example.com:30800",
                        KubeAnnotation.sslTerm: "true", KubeAnnotation.aclMatch: "/app",
                    ]),
                service("ns", "web", annotations: [KubeAnnotation.host: "web.example.com"]),
            ],
            slices: [
                slice("ns", "secure-1", service: "secure", endpoints: [endpoint("10.0.0.1")]),
                slice("ns", "web-1", service: "web", endpoints: [endpoint("10.0.0.2")]),
            ])
    }

    @Test func sslTermServicesAreTerminatedOnTheTLSListenerOnly() {
        let translation = KubeTranslator(options: options).translate(cluster)
        let plan = translation.plan
        #expect(translation.warnings.isEmpty)
        #expect(plan.routeLines == ["web.example.com / -> ns/web:80"])
        // The port of grafana.example.com:30800 is dropped: the name on any port.
        #expect(
            plan.terminatedRouteLines == [
                "secure.example.com /app -> ns/secure:80", "grafana.example.com /app -> ns/secure:80",
            ])
        #expect(plan.tls?.address == addr("0.0.0.0:443"))
        #expect(plan.tls?.contextVersion == 1)
        #expect(plan.service("ns/secure:80")?.sslTerm == true)
        #expect(plan.service("ns/secure:80")?.endpoints == [addr("10.0.0.1:8080")])
    }

    @Test func snapshotHasATerminatingTLSListener() throws {
        let handle = slot.current.handle
        let (snapshot, _) = KubeTranslator(options: options).snapshot(cluster, generation: 2)
        #expect(snapshot.listeners.map(\.name) == ["http", "tls"])
        let tls = snapshot.listeners[1]
        #expect(tls.protocol == .tls)
        #expect(tls.address == addr("0.0.0.0:443"))
        #expect(tls.service == -1)
        #expect(snapshot.tlsContexts.count == 1)
        #expect(snapshot.tlsContexts.first === handle)
        #expect(tls.tlsContext == 0)
        try #require(snapshot.routeTables.indices.contains(tls.routes))
        try #require(snapshot.routeTables.indices.contains(tls.terminatedRoutes))
        #expect(Set([snapshot.listeners[0].routes, tls.routes, tls.terminatedRoutes]).count == 3)

        // Server names: one terminate entry per host, and the default terminates too (with
        // the first certificate), so unknown names get the default code over TLS.
        let serverNames = snapshot.routeTables[tls.routes]
        #expect(serverNames.routes.map(\.terminate) == [true, true])
        #expect(serverNames.routes.map(\.service) == [-1, -1])
        #expect(serverNames.routes.map { "\($0.host)" } == ["secure.example.com", "grafana.example.com"])
        #expect(serverNames.match(serverName: "secure.example.com") == .terminate)
        #expect(serverNames.match(serverName: "other.example.com") == .terminate)
        #expect(serverNames.defaultBackend.terminate)

        // Decrypted requests: by host (any port) and path; the rest get --default-return-code.
        let secure = try #require(snapshot.serviceIndex(named: "ns/secure:80"))
        let requests = snapshot.routeTables[tls.terminatedRoutes]
        #expect(requests.match(host: "secure.example.com", path: "/app/x") == .service(Int32(secure), stripPrefix: 0))
        #expect(requests.match(host: "grafana.example.com", path: "/app") == .service(Int32(secure), stripPrefix: 0))
        #expect(
            requests.match(host: "grafana.example.com:30443", path: "/app") == .service(Int32(secure), stripPrefix: 0))
        #expect(requests.match(host: "secure.example.com", path: "/other") == .noRoute)
        #expect(requests.match(host: "web.example.com") == .noRoute)
        #expect(requests.defaultBackend.status == 421)
        #expect(requests.defaultBackend.service == nil)

        // The same host over plain HTTP is not routed.
        let http = snapshot.routeTables[snapshot.listeners[0].routes]
        #expect(http.match(host: "secure.example.com", path: "/app", defaultPort: 80) == .noRoute)
        #expect(http.defaultBackend.status == 421)
    }

    @Test func withoutServicesTheTLSListenerStillAnswers() {
        let (snapshot, translation) = KubeTranslator(options: options).snapshot(KubeCache(), generation: 1)
        #expect(translation.plan.terminatedRoutes.isEmpty)
        #expect(snapshot.listeners.map(\.name) == ["http", "tls"])
        let tls = snapshot.listeners[1]
        #expect(snapshot.routeTables[tls.routes].match(serverName: "any.example.com") == .terminate)
        #expect(snapshot.routeTables[tls.terminatedRoutes].match(host: "any.example.com") == .noRoute)
    }

    @Test func withoutATLSListenerSslTermIsServedOverHTTPWithAWarning() {
        let translation = KubeTranslator(options: KubeTranslatorOptions()).translate(cluster)
        #expect(translation.plan.tls == nil)
        #expect(translation.plan.terminatedRoutes.isEmpty)
        #expect(
            translation.plan.routeLines == [
                "secure.example.com /app -> ns/secure:80", "grafana.example.com:30800 /app -> ns/secure:80",
                "web.example.com / -> ns/web:80",
            ])
        #expect(
            translation.warnings.map(\.description) == [
                "Service ns/secure: lb.sslTerm: there is no TLS listener (--tls-address); serving these hosts over http"
            ])
        let (snapshot, _) = KubeTranslator(options: KubeTranslatorOptions()).snapshot(cluster, generation: 1)
        #expect(snapshot.listeners.map(\.name) == ["http"])
        #expect(snapshot.tlsContexts.isEmpty)
    }

    @Test func aTLSAddressWithoutCertificatesIsNoListener() {
        let options = KubeTranslatorOptions(tlsAddress: addr("0.0.0.0:443"))
        let translation = KubeTranslator(options: options).translate(cluster)
        #expect(translation.plan.tls == nil)
        #expect(translation.plan.routes.count == 3)
        #expect(
            translation.warnings.map(\.description) == [
                "option --tls-address: 0.0.0.0:443 has no certificate; no TLS listener",
                "Service ns/secure: lb.sslTerm: there is no TLS listener (--tls-address); serving these hosts over http",
            ])
    }

    @Test func aNameTakenTwiceOnTheTLSListenerIsWarnedAbout() {
        let cluster = cache(
            services: [
                service(
                    "a", "one",
                    annotations: [KubeAnnotation.host: "x.example.com:30800", KubeAnnotation.sslTerm: "true"]
                ),
                service(
                    "b", "two", annotations: [KubeAnnotation.host: "x.example.com", KubeAnnotation.sslTerm: "true"]),
                // Another path of the same host is a route of its own.
                service(
                    "c", "three",
                    annotations: [
                        KubeAnnotation.host: "x.example.com", KubeAnnotation.sslTerm: "true",
                        KubeAnnotation.aclMatch: "/api",
                    ]),
                // Over HTTP the same name is free.
                service("d", "four", annotations: [KubeAnnotation.host: "x.example.com"]),
            ],
            slices: [])
        let translation = KubeTranslator(options: options).translate(cluster)
        #expect(
            translation.plan.terminatedRouteLines == [
                "x.example.com / -> a/one:80", "x.example.com /api -> c/three:80",
            ])
        #expect(translation.plan.routeLines == ["x.example.com / -> d/four:80"])
        #expect(
            translation.warnings.map(\.description) == [
                "Service b/two: host 'x.example.com' with path '/' is already routed to a/one:80 on the TLS listener; "
                    + "ignored"
            ])
        let (snapshot, _) = KubeTranslator(options: options).snapshot(cluster, generation: 1)
        let tls = snapshot.listeners[1]
        #expect(snapshot.routeTables[tls.routes].routes.count == 1)
        #expect(snapshot.routeTables[tls.terminatedRoutes].routes.count == 2)
    }

    @Test func wildcardHostsAreTerminatedAsWildcards() {
        let cluster = cache(
            services: [
                service(
                    "ns", "apps",
                    annotations: [KubeAnnotation.host: "*.apps.example.com", KubeAnnotation.sslTerm: "true"])
            ],
            slices: [])
        let (snapshot, translation) = KubeTranslator(options: options).snapshot(cluster, generation: 1)
        #expect(translation.plan.terminatedRouteLines == ["*.apps.example.com / -> ns/apps:80"])
        let tls = snapshot.listeners[1]
        #expect(snapshot.routeTables[tls.routes].match(serverName: "a.apps.example.com") == .terminate)
        #expect(
            snapshot.routeTables[tls.terminatedRoutes].match(host: "a.apps.example.com") == .service(0, stripPrefix: 0))
    }

    @Test func theContentHashCoversTheTLSPart() {
        let translator = KubeTranslator(options: options)
        let hash = translator.translate(cluster).contentHash
        #expect(translator.translate(cluster).contentHash == hash)
        #expect(
            translator.translate(cluster).plan.canonicalText.contains(
                """
                tls 0.0.0.0:443 certificates v1 default terminate 421
                terminate secure.example.com /app ns/secure:80
                terminate grafana.example.com /app ns/secure:80

                """))

        // sslTerm off: the same hosts move to the http listener.
        var changed = cluster
        var secure = changed.services.items[KubeObjectKey(namespace: "ns", name: "secure")]!
        secure.metadata.annotations?[KubeAnnotation.sslTerm] = "false"
        secure.metadata.resourceVersion = "2"
        _ = changed.apply(KubeWatchEvent<KubeService>.modified(secure))
        #expect(translator.translate(changed).contentHash != hash)
        #expect(translator.translate(changed).plan.terminatedRoutes.isEmpty)

        // No TLS listener at all: another plan again.
        #expect(KubeTranslator().translate(cluster).contentHash != hash)
    }

    @Test func newCertificatesMakeANewPlan() {
        let translator = KubeTranslator(options: options)
        let before = translator.translate(cluster)
        let replacement = fakeTLSContext("rotated")
        #expect(slot.replace(with: replacement) == 2)
        let after = translator.translate(cluster)
        #expect(after.plan.tls?.contextVersion == 2)
        #expect(after.contentHash != before.contentHash)
        #expect(after.plan != before.plan)
        let snapshot = after.plan.snapshot(generation: 3)
        #expect(snapshot.tlsContexts.first === replacement)
        // The handle is carried, not compared: plans of the same version are equal.
        #expect(translator.translate(cluster).plan == after.plan)
    }

    @Test func tcpServicesMayNotTakeTheTLSPort() {
        var options = self.options
        options.tcpServices = [KubeTCPService(namespace: "ns", name: "web", port: "80", listenPort: 443)]
        let translation = KubeTranslator(options: options).translate(cluster)
        #expect(translation.plan.tcpListeners.isEmpty)
        #expect(
            translation.warnings.map(\.description) == [
                "option --tcp-services: ns/web:80: port 443 is already in use; ignored"
            ])
    }

    @Test(.enabled(if: Fixtures.available, Fixtures.skipMessage))
    func fixturesWithATLSListener() throws {
        let translation = KubeTranslator(options: options).translate(try Fixtures.listedCache())
        #expect(translation.warnings.isEmpty)
        #expect(translation.plan.routeLines == ["grafana.example.com:30800 / -> monitoring/grafana:80"])
        #expect(translation.plan.terminatedRouteLines == ["secure.example.com / -> default/secure-app:8080"])
    }
}
