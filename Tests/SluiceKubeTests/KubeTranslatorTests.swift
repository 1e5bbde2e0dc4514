import SluiceKube
import SluiceRouting
import Testing

@Suite("Translation rules")
struct KubeTranslatorTests {
    let host = [KubeAnnotation.host: "web.example.com"]

    @Test func sameNamedServicesInTwoNamespacesStayApart() {
        let cluster = cache(
            services: [
                service("team-a", "web", annotations: [KubeAnnotation.host: "a.example.com"]),
                service("team-b", "web", annotations: [KubeAnnotation.host: "b.example.com"]),
            ],
            slices: [
                slice("team-a", "web-1", service: "web", endpoints: [endpoint("10.1.0.1")]),
                slice("team-b", "web-1", service: "web", endpoints: [endpoint("10.2.0.1")]),
            ])
        let plan = KubeTranslator().translate(cluster).plan
        #expect(plan.service("team-a/web:80")?.endpoints == [addr("10.1.0.1:8080")])
        #expect(plan.service("team-b/web:80")?.endpoints == [addr("10.2.0.1:8080")])
        #expect(plan.routeLines == ["a.example.com / -> team-a/web:80", "b.example.com / -> team-b/web:80"])
    }

    @Test func appProtocolH2cMakesTheServiceSpeakHTTP2() {
        func port(_ app: String?) -> [KubeService.Port] {
            [KubeService.Port(name: "http", port: 80, targetPort: .string("http"), appProtocol: app)]
        }
        let cluster = cache(
            services: [
                service(
                    "ns", "grpc", annotations: [KubeAnnotation.host: "g.example.com"], ports: port("kubernetes.io/h2c")),
                service("ns", "short", annotations: [KubeAnnotation.host: "s.example.com"], ports: port("grpc")),
                service("ns", "web", annotations: [KubeAnnotation.host: "w.example.com"], ports: port("http")),
            ],
            slices: [
                slice("ns", "grpc-1", service: "grpc", endpoints: [endpoint("10.0.0.1")]),
                slice("ns", "web-1", service: "web", endpoints: [endpoint("10.0.0.2")]),
            ])
        let plan = KubeTranslator().translate(cluster).plan
        #expect(plan.service("ns/grpc:80")?.upstreamProtocol == .h2c)
        #expect(plan.service("ns/short:80")?.upstreamProtocol == .h2c)
        #expect(plan.service("ns/web:80")?.upstreamProtocol == .http1)
        #expect(plan.canonicalText.contains("service ns/grpc:80 roundrobin sslTerm false protocol h2c"))
        var builder = KubeSnapshotBuilder()
        let snapshot = builder.build(plan, change: KubePlanChange(all: true), generation: 1)
        let byName = Dictionary(uniqueKeysWithValues: snapshot.services.map { ($0.name, $0.upstreamProtocol) })
        #expect(byName["ns/grpc:80"] == .h2c)
        #expect(byName["ns/web:80"] == .http1)
        #expect(!snapshot.listeners.contains { $0.http2 })
        var options = KubeTranslatorOptions()
        options.http2 = true
        var http2Builder = KubeSnapshotBuilder()
        let http2 = http2Builder.build(
            KubeTranslator(options: options).translate(cluster).plan, change: KubePlanChange(all: true), generation: 1)
        let httpListeners = http2.listeners.filter { $0.protocol == .http }
        #expect(!httpListeners.isEmpty && httpListeners.allSatisfy { $0.http2 })
    }

    @Test func slicesJoinOnlyInTheirOwnNamespace() {
        let cluster = cache(
            services: [service("a", "web", annotations: host)],
            slices: [slice("b", "web-1", service: "web", endpoints: [endpoint("10.2.0.1")])])
        #expect(KubeTranslator().translate(cluster).plan.service("a/web:80")?.endpoints == [])
    }

    @Test func namedPortsResolvePerSlice() {
        let cluster = cache(
            services: [service("ns", "web", annotations: host)],
            slices: [
                slice(
                    "ns", "web-1", service: "web", port: .init(name: "http", port: 8080),
                    endpoints: [endpoint("10.0.0.1")]),
                slice(
                    "ns", "web-2", service: "web", port: .init(name: "http", port: 9090),
                    endpoints: [endpoint("10.0.0.2")]),
                // Another port name, and another protocol: not this Service port.
                slice(
                    "ns", "web-3", service: "web", port: .init(name: "metrics", port: 9100),
                    endpoints: [endpoint("10.0.0.3")]),
                slice(
                    "ns", "web-4", service: "web", port: .init(name: "http", protocol: "UDP", port: 53),
                    endpoints: [endpoint("10.0.0.4")]),
            ])
        #expect(
            KubeTranslator().translate(cluster).plan.service("ns/web:80")?.endpoints == [
                addr("10.0.0.1:8080"), addr("10.0.0.2:9090"),
            ])
    }

    @Test func duplicatesAcrossSlicesCountOnceInStableOrder() {
        let cluster = cache(
            services: [service("ns", "web", annotations: host)],
            slices: [
                slice("ns", "web-2", service: "web", endpoints: [endpoint("10.0.0.9"), endpoint("10.0.0.1")]),
                slice("ns", "web-1", service: "web", endpoints: [endpoint("10.0.0.1"), endpoint("10.0.0.10")]),
                slice(
                    "ns", "web-6", service: "web", family: "IPv6",
                    endpoints: [endpoint("fd00::2"), endpoint("fd00::1")]),
                slice("ns", "web-f", service: "web", family: "FQDN", endpoints: [endpoint("web.example.com")]),
            ])
        #expect(
            KubeTranslator().translate(cluster).plan.service("ns/web:80")?.endpoints == [
                addr("10.0.0.1:8080"), addr("10.0.0.9:8080"), addr("10.0.0.10:8080"),
                addr("[fd00::1]:8080"), addr("[fd00::2]:8080"),
            ])
    }

    @Test func terminatingEndpointsOnlyWhenNoneIsReady() {
        let terminating = endpoint("10.0.0.2", ready: false, serving: true, terminating: true)
        let notServing = endpoint("10.0.0.3", ready: false, serving: false, terminating: true)
        let notReady = endpoint("10.0.0.4", ready: false, serving: false, terminating: false)
        var cluster = cache(
            services: [service("ns", "web", annotations: host)],
            slices: [slice("ns", "web-1", service: "web", endpoints: [terminating, notServing, notReady])])
        #expect(KubeTranslator().translate(cluster).plan.service("ns/web:80")?.endpoints == [addr("10.0.0.2:8080")])
        // One ready endpoint anywhere (here in another slice, with nil conditions) takes over.
        let ready = KubeEndpointSlice.Endpoint(addresses: ["10.0.0.1"])
        _ = cluster.apply(
            KubeWatchEvent<KubeEndpointSlice>.added(slice("ns", "web-2", service: "web", endpoints: [ready])))
        #expect(KubeTranslator().translate(cluster).plan.service("ns/web:80")?.endpoints == [addr("10.0.0.1:8080")])
    }

    @Test func placeholderSliceAndNoSlices() {
        var placeholder = slice("ns", "web-1", service: "web", port: nil, endpoints: [])
        placeholder.endpoints = nil
        let cluster = cache(services: [service("ns", "web", annotations: host)], slices: [placeholder])
        let translation = KubeTranslator().translate(cluster)
        #expect(translation.plan.service("ns/web:80")?.endpoints == [])
        #expect(translation.warnings.isEmpty)
    }

    @Test func algorithmsAndStickiness() {
        func algorithm(
            _ annotations: [String: String], affinity: String? = nil, default fallback: Algorithm = .roundrobin
        )
            -> (Algorithm?, Int?)
        {
            let cluster = cache(
                services: [service("ns", "web", annotations: host.merging(annotations) { $1 }, affinity: affinity)],
                slices: [])
            let options = KubeTranslatorOptions(balanceAlgorithm: fallback)
            let planned = KubeTranslator(options: options).translate(cluster).plan.service("ns/web:80")
            return (planned?.algorithm, planned?.clientIPTimeoutSeconds)
        }
        #expect(algorithm([:]) == (.roundrobin, nil))
        #expect(algorithm([:], default: .leastconn) == (.leastconn, nil))
        #expect(algorithm([KubeAnnotation.algorithm: "leastconn"]) == (.leastconn, nil))
        #expect(algorithm([KubeAnnotation.algorithm: "source"]) == (.source, nil))
        #expect(algorithm([KubeAnnotation.algorithm: "first"]) == (.leastconn, nil))
        #expect(algorithm([KubeAnnotation.algorithm: "roundrobin"], default: .source) == (.roundrobin, nil))
        // ClientIP affinity means source with the API's default timeout; "None" means nothing.
        #expect(algorithm([KubeAnnotation.algorithm: "leastconn"], affinity: "ClientIP") == (.source, 10800))
        #expect(algorithm([:], affinity: "None") == (.roundrobin, nil))
        #expect(algorithm([KubeAnnotation.cookieStickySession: "true"], affinity: "ClientIP") == (.cookie, nil))
        #expect(algorithm([KubeAnnotation.cookieStickySession: "false"]) == (.roundrobin, nil))
    }

    @Test func clientIPTimeoutIsRecorded() {
        var web = service("ns", "web", annotations: host, affinity: "ClientIP")
        web.spec?.sessionAffinityConfig = .init(clientIP: .init(timeoutSeconds: 600))
        let plan = KubeTranslator().translate(cache(services: [web], slices: [])).plan
        #expect(plan.service("ns/web:80")?.clientIPTimeoutSeconds == 600)
    }

    @Test func badAnnotationsWarnAndFallBack() {
        let annotations = [
            KubeAnnotation.host: "bad_host!, ok.example.com ,,ok.example.com",
            KubeAnnotation.algorithm: "fastest",
            KubeAnnotation.cookieStickySession: "yes",
            KubeAnnotation.sslTerm: "maybe",
            KubeAnnotation.aclMatch: "api",
        ]
        let translation = KubeTranslator().translate(
            cache(services: [service("ns", "web", annotations: annotations)], slices: []))
        #expect(translation.plan.routeLines == ["ok.example.com / -> ns/web:80"])
        #expect(translation.plan.service("ns/web:80")?.algorithm == .roundrobin)
        #expect(translation.plan.service("ns/web:80")?.sslTerm == false)
        let messages = translation.warnings.map(\.description)
        #expect(messages.count == 5)
        #expect(messages.allSatisfy { $0.hasPrefix("Service ns/web: ") })
        #expect(messages.contains { $0.contains("lb.algorithm 'fastest'") && $0.hasSuffix("using roundrobin") })
        #expect(messages.contains { $0.contains("lb.cookie-sticky-session 'yes'") && $0.hasSuffix("using false") })
        #expect(messages.contains { $0.contains("lb.sslTerm 'maybe'") && $0.hasSuffix("using false") })
        #expect(messages.contains { $0.contains("lb.aclMatch 'api'") && $0.hasSuffix("using /") })
        #expect(messages.contains { $0.contains("lb.host entry 'bad_host!'") && $0.hasSuffix("skipped") })
    }

    @Test func aHostAnnotationWithNoUsableHostExposesNothing() {
        let translation = KubeTranslator().translate(
            cache(services: [service("ns", "web", annotations: [KubeAnnotation.host: "*"])], slices: []))
        #expect(translation.plan.services.isEmpty)
        #expect(translation.plan.routes.isEmpty)
        #expect(translation.warnings.count == 2)
    }

    @Test func hostListsPathsAndPortSelection() {
        let ports = [
            KubeService.Port(name: "http", port: 80), KubeService.Port(name: "admin", port: 9000),
            KubeService.Port(name: "dns", protocol: "UDP", port: 53),
        ]
        let annotations = [
            KubeAnnotation.host:
                "Web.Example.com:30800, *.web.example.com, admin.example.com=admin, x.example.com=9000, "
                + "y.example.com=nope, dns.example.com=dns",
            KubeAnnotation.aclMatch: "/app",
        ]
        let translation = KubeTranslator().translate(
            cache(services: [service("ns", "web", annotations: annotations, ports: ports)], slices: []))
        #expect(
            translation.plan.routeLines == [
                "web.example.com:30800 /app -> ns/web:80",
                "*.web.example.com /app -> ns/web:80",
                "admin.example.com /app -> ns/web:9000",
                "x.example.com /app -> ns/web:9000",
                "y.example.com /app -> ns/web:80",
                "dns.example.com /app -> ns/web:80",
            ])
        #expect(translation.plan.services.map(\.key) == ["ns/web:80", "ns/web:9000"])
        #expect(translation.warnings.count == 2)
    }

    @Test func aRouteTakenByAnotherServiceIsReported() {
        let translation = KubeTranslator().translate(
            cache(
                services: [
                    service("a", "one", annotations: [KubeAnnotation.host: "same.example.com"]),
                    service("b", "two", annotations: [KubeAnnotation.host: "same.example.com"]),
                ], slices: []))
        #expect(translation.plan.routeLines == ["same.example.com / -> a/one:80"])
        #expect(
            translation.warnings.map(\.description) == [
                "Service b/two: host 'same.example.com' with path '/' is already routed to a/one:80; ignored"
            ])
    }

    @Test func tcpServicesResolution() {
        let db = service("data", "db", ports: [KubeService.Port(name: "pg", port: 5432)])
        let cluster = cache(
            services: [db],
            slices: [
                slice(
                    "data", "db-1", service: "db", port: .init(name: "pg", port: 5432),
                    endpoints: [endpoint("10.0.0.7")])
            ])
        let options = KubeTranslatorOptions(
            httpAddress: addr("127.0.0.1:8080"),
            tcpServices: [
                KubeTCPService(namespace: "data", name: "db", port: "pg", listenPort: 15432),
                KubeTCPService(namespace: "data", name: "db", port: "5432", listenPort: 15433),
                KubeTCPService(name: "missing", port: "1", listenPort: 15434),
                KubeTCPService(namespace: "data", name: "db", port: "5432", listenPort: 8080),
            ])
        let translation = KubeTranslator(options: options).translate(cluster)
        #expect(
            translation.plan.tcpListeners.map { "\($0.address) \($0.service)" } == [
                "127.0.0.1:15432 data/db:5432", "127.0.0.1:15433 data/db:5432", "127.0.0.1:15434 default/missing:1",
            ])
        #expect(translation.plan.service("data/db:5432")?.endpoints == [addr("10.0.0.7:5432")])
        #expect(translation.plan.service("default/missing:1")?.endpoints == [])
        #expect(translation.warnings.count == 2)
        let (snapshot, _) = KubeTranslator(options: options).snapshot(cluster, generation: 1)
        #expect(
            snapshot.listeners.map(\.name) == [
                "http", "tcp-127.0.0.1:15432", "tcp-127.0.0.1:15433", "tcp-127.0.0.1:15434",
            ])
    }

    @Test func oneServiceOnHTTPAndTCPSharesItsEntryAndWarnsOnce() {
        let annotations = [KubeAnnotation.host: "web.example.com", KubeAnnotation.sslTerm: "true"]
        let options = KubeTranslatorOptions(tcpServices: [
            KubeTCPService(namespace: "ns", name: "web", port: "80", listenPort: 8000)
        ])
        let translation = KubeTranslator(options: options).translate(
            cache(services: [service("ns", "web", annotations: annotations)], slices: []))
        #expect(translation.plan.services.map(\.key) == ["ns/web:80"])
        #expect(translation.plan.tcpListeners.map(\.service) == ["ns/web:80"])
        #expect(translation.plan.routes.map(\.service) == ["ns/web:80"])
        #expect(translation.warnings.count == 1)
    }

    @Test func tcpServicesFlag() throws {
        #expect(
            try KubeTCPService.parseList("mysql:3306, monitoring/grafana:80").get() == [
                KubeTCPService(name: "mysql", port: "3306", listenPort: 3306),
                KubeTCPService(namespace: "monitoring", name: "grafana", port: "80", listenPort: 80),
            ])
        #expect(throws: KubeTCPService.ParseError.missingPort("mysql")) { try KubeTCPService.parse("mysql").get() }
        #expect(throws: KubeTCPService.ParseError.badPort("mysql:http")) {
            try KubeTCPService.parse("mysql:http").get()
        }
        #expect(throws: KubeTCPService.ParseError.badName("a/b/c:1")) { try KubeTCPService.parse("a/b/c:1").get() }
    }

    @Test func defaultReturnCode() {
        let plan = KubeTranslator(options: KubeTranslatorOptions(defaultReturnCode: 503)).translate(KubeCache()).plan
        #expect(plan.defaultStatus == 503)
        let bad = KubeTranslator(options: KubeTranslatorOptions(defaultReturnCode: 200)).translate(KubeCache())
        #expect(bad.plan.defaultStatus == 404)
        #expect(bad.warnings.map(\.object) == ["--default-return-code"])
        // No Service at all: the HTTP listener is still there, answering with the default.
        let (snapshot, _) = KubeTranslator().snapshot(KubeCache(), generation: 1)
        #expect(snapshot.listeners.count == 1)
        #expect(snapshot.routeTables[0].routes.isEmpty)
    }

    @Test func unopenedServicesAreNotExposedEvenWithEndpoints() {
        let cluster = cache(
            services: [
                service("default", "kubernetes", ports: [.init(name: "https", port: 443, targetPort: .int(6443))])
            ],
            slices: [
                slice(
                    "default", "kubernetes", service: "kubernetes", port: .init(name: "https", port: 6443),
                    endpoints: [endpoint("192.168.1.10")])
            ])
        let plan = KubeTranslator().translate(cluster).plan
        #expect(plan.services.isEmpty)
        #expect(plan.routes.isEmpty)
    }

    @Test func badEndpointAddressesAreWarnedAbout() {
        let cluster = cache(
            services: [service("ns", "web", annotations: host)],
            slices: [slice("ns", "web-1", service: "web", endpoints: [endpoint("fd00::1"), endpoint("10.0.0.1")])])
        let translation = KubeTranslator().translate(cluster)
        #expect(translation.plan.service("ns/web:80")?.endpoints == [addr("10.0.0.1:8080")])
        #expect(
            translation.warnings.map(\.description) == [
                "EndpointSlice ns/web-1: 'fd00::1' is not an IPv4 address; skipped"
            ])
    }
}
