import SluiceKube
import SluiceRouting
import Testing

@testable import SluiceKubeClient

/// Random sequences of watch events and lists, fed through `KubeDiscoveryState` (which tracks
/// what changed) into `KubeIncrementalTranslator` and `KubeSnapshotBuilder`, compared after
/// every translation with `KubeTranslator.translate` and `KubeRoutingPlan.snapshot` of the
/// same cluster state made from scratch.
@Suite("Incremental translation equals a full one")
struct KubeIncrementalTests {
    /// SplitMix64: the same sequence for a seed.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    }

    static let namespaces = ["default", "b"]
    static let names = (0..<8).map { "s\($0)" }
    /// More Services than hosts, so that most come and go between others.
    static let manyNames = (0..<40).map { "s\($0)" }
    static let hosts = ["a.example.com", "b.example.com", "*.example.com", "c.example.com:8080", "d.example.com"]

    /// A random Service: hosts from a small pool (so routes collide), some settings, now and
    /// then a bad value.
    static func randomService(_ r: inout Random, namespace: String, name: String, version: Int) -> KubeService {
        var annotations: [String: String] = [:]
        if !r.chance(15) {
            var entries: [String] = []
            for _ in 0..<(1 + r.below(3)) {
                var entry = r.pick(hosts)
                if r.chance(20) { entry += r.pick(["=admin", "=81", "=nope"]) }
                entries.append(entry)
            }
            if r.chance(5) { entries.append("bad host!") }
            annotations[KubeAnnotation.host] = entries.joined(separator: ",")
        }
        if r.chance(30) { annotations[KubeAnnotation.algorithm] = r.pick(["leastconn", "source", "first", "bogus"]) }
        if r.chance(20) { annotations[KubeAnnotation.aclMatch] = r.pick(["/api", "/", "nope"]) }
        if r.chance(10) { annotations[KubeAnnotation.cookieStickySession] = r.pick(["true", "false", "maybe"]) }
        if r.chance(10) { annotations[KubeAnnotation.sslTerm] = "true" }
        var ports = [KubeService.Port(name: "http", port: 80)]
        if r.chance(30) { ports.append(KubeService.Port(name: "admin", port: 81)) }
        if r.chance(5) { ports = [] }
        return KubeService(
            metadata: KubeObjectMeta(
                name: name, namespace: namespace, resourceVersion: "\(version)", annotations: annotations),
            spec: KubeService.Spec(
                ports: ports, sessionAffinity: r.chance(10) ? "ClientIP" : nil))
    }

    /// A random slice of a random Service: addresses from a small pool (duplicates across
    /// slices), random conditions, the http or admin port.
    static func randomSlice(_ r: inout Random, namespace: String, service: String, name: String, version: Int)
        -> KubeEndpointSlice
    {
        var endpoints: [KubeEndpointSlice.Endpoint] = []
        for _ in 0..<r.below(5) {
            let ready: Bool? = r.chance(20) ? nil : r.chance(75)
            endpoints.append(
                KubeEndpointSlice.Endpoint(
                    addresses: [r.chance(3) ? "not-an-ip" : "10.0.\(r.below(2)).\(1 + r.below(6))"],
                    conditions: KubeEndpointSlice.Conditions(
                        ready: ready, serving: r.chance(50), terminating: r.chance(50))))
        }
        let port = r.chance(80) ? "http" : "admin"
        return KubeEndpointSlice(
            metadata: KubeObjectMeta(
                name: name, namespace: namespace, resourceVersion: "\(version)",
                labels: [KubeEndpointSlice.serviceNameLabel: service]),
            addressType: r.chance(95) ? "IPv4" : "FQDN",
            endpoints: endpoints, ports: [KubeEndpointSlice.Port(name: port, port: r.chance(97) ? 8080 : 0)])
    }

    /// The same answers from both tables for every host and path their routes name (and a
    /// few more), on the plain and the TLS port.
    static func expectSameLookups(_ built: HTTPRouteTable, _ fresh: HTTPRouteTable, _ context: String) {
        var probes: [(String, String)] = [("nothing.example.net", "/"), ("x.example.com", "/api/x")]
        for route in fresh.routes + built.routes {
            let name = String(decoding: route.host.name, as: UTF8.self)
            let host = (route.host.wildcard ? "w." : "") + name + (route.host.port.map { ":\($0)" } ?? "")
            let path = String(decoding: route.pathPrefix, as: UTF8.self)
            probes.append((host, path))
            probes.append((host, path + "/x"))
        }
        for (host, path) in probes {
            for port: UInt16 in [80, 443] {
                let (a, b) = Array(host.utf8).withUnsafeBytes { h in
                    Array(path.utf8).withUnsafeBytes { p in
                        (
                            built.lookup(host: h, path: p, defaultPort: port),
                            fresh.lookup(host: h, path: p, defaultPort: port)
                        )
                    }
                }
                #expect(a == b, "\(context): \(host)\(path) on \(port)")
            }
        }
    }

    func run(seed: UInt64, steps: Int, options: KubeTranslatorOptions, names: [String] = Self.names) {
        var r = Random(state: seed)
        let full = KubeTranslator(options: options)
        let state = KubeDiscoveryState(servingHash: full.translate(KubeCache()).contentHash)
        var mirror = KubeCache()
        var incremental = KubeIncrementalTranslator(options: options)
        var builder = KubeSnapshotBuilder()
        var unbuilt = KubePlanChange()
        var version = 100
        // Apart from the events: which translations are not built (their changes joined to
        // the next's), and which snapshots stay held (so the builder's spare arrays are
        // sometimes shared when it edits them).
        var side = Random(state: seed ^ 0x5EED)
        var held: [RoutingSnapshot] = []
        var services: [KubeService] = []
        var slices: [KubeEndpointSlice] = []
        for _ in 0..<6 {
            version += 1
            services.append(
                Self.randomService(
                    &r, namespace: r.pick(Self.namespaces), name: r.pick(names), version: version))
        }
        for index in 0..<8 {
            version += 1
            slices.append(
                Self.randomSlice(
                    &r, namespace: r.pick(Self.namespaces), service: r.pick(names), name: "e\(index)",
                    version: version))
        }
        state.storeList(services, resourceVersion: "1", at: .now)
        state.storeList(slices, resourceVersion: "2", at: .now)
        mirror.services.replace(with: services, resourceVersion: "1")
        mirror.endpointSlices.replace(with: slices, resourceVersion: "2")
        var pending = true
        for step in 0..<steps {
            // One to three changes between translations.
            for _ in 0..<(1 + r.below(3)) {
                version += 1
                let namespace = r.pick(Self.namespaces)
                switch r.below(10) {
                case 0, 1, 2:
                    let object = Self.randomService(
                        &r, namespace: namespace, name: r.pick(names), version: version)
                    let event: KubeWatchEvent<KubeService> =
                        mirror.services.items[object.key] == nil ? .added(object) : .modified(object)
                    _ = mirror.apply(event)
                    if state.apply(event, at: .now) == .changed { pending = true }
                case 3:
                    guard let victim = mirror.services.items.values.sorted(by: { $0.key < $1.key }).first else {
                        continue
                    }
                    _ = mirror.apply(KubeWatchEvent<KubeService>.deleted(victim))
                    if state.apply(KubeWatchEvent<KubeService>.deleted(victim), at: .now) == .changed {
                        pending = true
                    }
                case 4, 5, 6, 7:
                    let object = Self.randomSlice(
                        &r, namespace: namespace, service: r.pick(names), name: "e\(r.below(12))",
                        version: version)
                    let event: KubeWatchEvent<KubeEndpointSlice> =
                        mirror.endpointSlices.items[object.key] == nil ? .added(object) : .modified(object)
                    _ = mirror.apply(event)
                    if state.apply(event, at: .now) == .changed { pending = true }
                case 8:
                    let all = mirror.endpointSlices.items.values.sorted { $0.key < $1.key }
                    guard !all.isEmpty else { continue }
                    let victim = all[r.below(all.count)]
                    _ = mirror.apply(KubeWatchEvent<KubeEndpointSlice>.deleted(victim))
                    if state.apply(KubeWatchEvent<KubeEndpointSlice>.deleted(victim), at: .now) == .changed {
                        pending = true
                    }
                default:
                    // A re-list: the same objects, one of them changed.
                    var items = Array(mirror.endpointSlices.items.values)
                    if !items.isEmpty {
                        let index = r.below(items.count)
                        items[index] = Self.randomSlice(
                            &r, namespace: items[index].metadata.namespace ?? "",
                            service: r.pick(names), name: items[index].metadata.name ?? "", version: version)
                    }
                    mirror.endpointSlices.replace(with: items, resourceVersion: "\(version)")
                    state.storeList(items, resourceVersion: "\(version)", at: .now)
                    pending = true
                }
            }
            guard pending, let job = state.waitForWork() else { continue }
            pending = false
            let (translation, moved) = incremental.apply(job.change)
            unbuilt.formUnion(moved)
            let expected = full.translate(mirror)
            #expect(translation.plan == expected.plan, "seed \(seed) step \(step): plans differ")
            #expect(incremental.contentHash == expected.plan.contentHash, "seed \(seed) step \(step): hashes differ")
            #expect(Set(translation.warnings) == Set(expected.warnings), "seed \(seed) step \(step): warnings differ")
            if side.chance(15) {
                switch state.decide(hash: incremental.contentHash) {
                case .unchanged: state.finish(.unchanged)
                case .apply: state.finish(.applied(hash: incremental.contentHash))
                }
                continue
            }
            let generation = UInt64(step + 2)
            let built = builder.build(translation.plan, change: unbuilt, generation: generation)
            unbuilt = KubePlanChange()
            if side.chance(30) { held.append(built) }
            if held.count > 2 { held.removeFirst() }
            let fresh = expected.plan.snapshot(generation: generation)
            #expect(built.services == fresh.services, "seed \(seed) step \(step): snapshot services differ")
            #expect(built.endpoints == fresh.endpoints, "seed \(seed) step \(step): snapshot endpoints differ")
            #expect(built.listeners == fresh.listeners, "seed \(seed) step \(step): listeners differ")
            #expect(
                built.routeTables.map(\.routes) == fresh.routeTables.map(\.routes),
                "seed \(seed) step \(step): route tables differ")
            if built.routeTables.count == fresh.routeTables.count {
                for (a, b) in zip(built.routeTables, fresh.routeTables) {
                    Self.expectSameLookups(a, b, "seed \(seed) step \(step)")
                }
            }
            switch state.decide(hash: incremental.contentHash) {
            case .unchanged: state.finish(.unchanged)
            case .apply: state.finish(.applied(hash: incremental.contentHash))
            }
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func httpOnly(seed: UInt64) {
        run(seed: seed, steps: 150, options: KubeTranslatorOptions())
    }

    @Test(arguments: [11, 12, 13, 14] as [UInt64])
    func withTCPServicesAndANamespace(seed: UInt64) {
        // s3's listener takes the HTTP listener's port: a warning, and no listener.
        let tcp = [
            KubeTCPService(name: "s1", port: "http", listenPort: 9001),
            KubeTCPService(namespace: "b", name: "s2", port: "81", listenPort: 9002),
            KubeTCPService(name: "s3", port: "80", listenPort: 80),
            KubeTCPService(name: "s4", port: "admin", listenPort: 9004),
        ]
        var options = KubeTranslatorOptions(tcpServices: tcp)
        run(seed: seed, steps: 150, options: options)
        options.namespace = "b"
        run(seed: seed &+ 100, steps: 100, options: options)
    }

    /// Many Services for few hosts: Services come and go between others (indices move, route
    /// tables are edited), and routes pass from a Service that went to one that stayed.
    @Test(arguments: [21, 22, 23, 24] as [UInt64])
    func servicesComingAndGoingAmongMany(seed: UInt64) {
        run(seed: seed, steps: 200, options: KubeTranslatorOptions(), names: Self.manyNames)
    }

    /// The same with a terminating TLS listener (`lb.sslTerm` Services) and TCP listeners.
    @Test(arguments: [31, 32] as [UInt64])
    func withATLSListener(seed: UInt64) {
        let context = TLSContextHandle(pointer: OpaquePointer(bitPattern: 1)!, summary: "test", release: { _ in })
        let options = KubeTranslatorOptions(
            tcpServices: [KubeTCPService(name: "s1", port: "http", listenPort: 9001)],
            tlsAddress: SocketAddress(ip: .v4(0), port: 443), tlsContext: KubeTLSContextSlot(context))
        run(seed: seed, steps: 200, options: options, names: Self.manyNames)
    }

    /// A whole translation of a cluster large enough to be split between threads equals the
    /// full one.
    @Test func aLargeWholeTranslationEqualsTheFullOne() {
        var r = Random(state: 99)
        var services: [KubeService] = []
        var slices: [KubeEndpointSlice] = []
        for index in 0..<3000 {
            let name = "svc-\(index)"
            services.append(Self.randomService(&r, namespace: "ns", name: name, version: index))
            slices.append(Self.randomSlice(&r, namespace: "ns", service: name, name: "\(name)-1", version: index))
        }
        var cache = KubeCache()
        cache.services.replace(with: services, resourceVersion: "1")
        cache.endpointSlices.replace(with: slices, resourceVersion: "2")
        var incremental = KubeIncrementalTranslator(options: KubeTranslatorOptions())
        let (translation, _) = incremental.apply(.all(cache))
        let expected = KubeTranslator().translate(cache)
        #expect(translation.plan == expected.plan)
        #expect(incremental.contentHash == expected.plan.contentHash)
        #expect(Set(translation.warnings) == Set(expected.warnings))
    }

    /// After a slice change of one Service, every other endpoint keeps its index and the map
    /// from the old snapshot carries down-marks and cursors of those that stayed.
    @Test func endpointsThatStayKeepTheirStateAcrossAChange() {
        var incremental = KubeIncrementalTranslator(options: KubeTranslatorOptions())
        var builder = KubeSnapshotBuilder()
        let services = (0..<3).map { index in
            KubeService(
                metadata: KubeObjectMeta(
                    name: "s\(index)", namespace: "ns", annotations: [KubeAnnotation.host: "s\(index).example.com"]),
                spec: KubeService.Spec(ports: [KubeService.Port(name: "http", port: 80)]))
        }
        func slices(_ count: Int, of index: Int) -> KubeEndpointSlice {
            KubeEndpointSlice(
                metadata: KubeObjectMeta(
                    name: "s\(index)-1", namespace: "ns", labels: [KubeEndpointSlice.serviceNameLabel: "s\(index)"]),
                addressType: "IPv4",
                endpoints: (1...count).map { KubeEndpointSlice.Endpoint(addresses: ["10.0.\(index).\($0)"]) },
                ports: [KubeEndpointSlice.Port(name: "http", port: 8080)])
        }
        var cache = KubeCache()
        cache.services.replace(with: services, resourceVersion: "1")
        cache.endpointSlices.replace(with: (0..<3).map { slices(3, of: $0) }, resourceVersion: "2")
        let (first, allMoved) = incremental.apply(.all(cache))
        let old = builder.build(first.plan, change: allMoved, generation: 2)
        var picker = EndpointPicker(snapshot: old, seed: 1)
        picker.markDown(7, until: .max)  // s2's 10.0.2.2
        // s1 grows to five endpoints.
        let (second, moved) = incremental.apply(
            .services([
                KubeObjectKey(namespace: "ns", name: "s1"): KubeServiceInputs(
                    service: services[1], slices: [slices(5, of: 1)])
            ]))
        #expect(moved == KubePlanChange(services: ["ns/s1:80"]))
        let new = builder.build(second.plan, change: moved, generation: 3)
        let remap = SnapshotRemap(from: old, to: new)
        #expect(remap.services == [0, 1, 2])
        #expect(Array(remap.endpoints) == [0, 1, 2, 3, 4, 5, 8, 9, 10])
        let carried = EndpointPicker(snapshot: new, seed: 1, carrying: picker, remap: remap)
        #expect(carried.isDown(9, now: 0))
        #expect(new.endpoints[9].address == old.endpoints[7].address)
        #expect(second.plan == KubeTranslator().translate(cacheAfter(cache, slices(5, of: 1))).plan)
    }

    func cacheAfter(_ cache: KubeCache, _ slice: KubeEndpointSlice) -> KubeCache {
        var next = cache
        _ = next.apply(KubeWatchEvent<KubeEndpointSlice>.modified(slice))
        return next
    }
}
