import Foundation
import Glibc
import SluiceKube
import SluiceRouting
import Testing

@testable import SluiceKubeClient

/// What the cache, the translator and the snapshot hold at 10,000 Services × 10 endpoints
/// (the objects `fake_kube.py` serves, decoded from list pages of 500): resident memory after
/// each stage, the heap trimmed. Prints `MEMPROBE` lines; runs only with `SLUICE_MEMPROBE` set.
@Suite struct KubeMemoryBreakdown {
    static func live() -> Int {
        typealias Trim = @convention(c) (Int) -> Int32
        if let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") {
            _ = unsafeBitCast(symbol, to: Trim.self)(0)
        }
        let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        return (Int(statm.split(separator: " ")[1]) ?? 0) * 4096
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["SLUICE_MEMPROBE"] != nil))
    func breakdown() throws {
        let services = 10_000
        let eps = 10
        func ip(_ i: Int, _ j: Int) -> String {
            let n = i * eps + j
            return "127.\(100 + n / 62500).\((n / 250) % 250).\(n % 250 + 1)"
        }
        var svcItems: [String] = []
        var sliceItems: [String] = []
        for i in 0..<services {
            let name = String(format: "svc-%04d", i)
            svcItems.append(
                #"{"metadata":{"name":"\#(name)","namespace":"bench","uid":"0f8e8c1e-1111-2222-3333-444455556666","resourceVersion":"\#(i)","labels":{"app":"\#(name)"},"annotations":{"serviceloadbalancer/lb.host":"\#(name).example.com"}},"spec":{"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":"http"}],"selector":{"app":"\#(name)"},"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"type":"ClusterIP","sessionAffinity":"None","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","internalTrafficPolicy":"Cluster"},"status":{"loadBalancer":{}}}"#
            )
            let endpoints = (0..<eps).map {
                #"{"addresses":["\#(ip(i, $0))"],"conditions":{"ready":true,"serving":true,"terminating":false}}"#
            }.joined(separator: ",")
            sliceItems.append(
                #"{"metadata":{"name":"\#(name)-abcde","generateName":"\#(name)-","namespace":"bench","uid":"0f8e8c1e-1111-2222-3333-444455556666","resourceVersion":"\#(i)","labels":{"kubernetes.io/service-name":"\#(name)","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},"addressType":"IPv4","endpoints":[\#(endpoints)],"ports":[{"name":"http","protocol":"TCP","port":8080}]}"#
            )
        }
        let start = Self.live()
        var cache = KubeCache()
        var parts: [String: Int] = [:]
        for page in stride(from: 0, to: services, by: 500) {
            let body = Data(
                (#"{"metadata":{"resourceVersion":"1"},"items":["#
                    + svcItems[page..<(page + 500)].joined(separator: ",")
                    + "]}").utf8)
            let list = try KubeList<KubeService>.decode(body)
            for item in list.items { _ = cache.apply(KubeWatchEvent<KubeService>.added(item)) }
        }
        let afterServices = Self.live()
        for page in stride(from: 0, to: services, by: 500) {
            let body = Data(
                (#"{"metadata":{"resourceVersion":"1"},"items":["#
                    + sliceItems[page..<(page + 500)].joined(separator: ",")
                    + "]}").utf8)
            let list = try KubeList<KubeEndpointSlice>.decode(body)
            for item in list.items { _ = cache.apply(KubeWatchEvent<KubeEndpointSlice>.added(item)) }
        }
        let afterSlices = Self.live()
        var incremental = KubeIncrementalTranslator(options: KubeTranslatorOptions())
        let (translation, movedFirst) = incremental.apply(.all(cache))
        let afterTranslate = Self.live()
        var builder = KubeSnapshotBuilder()
        var snapshot: RoutingSnapshot? = builder.build(translation.plan, change: movedFirst, generation: 2)
        let afterBuild = Self.live()
        parts["services (cache)"] = afterServices - start
        parts["slices (cache)"] = afterSlices - afterServices
        parts["translator + plan"] = afterTranslate - afterSlices
        parts["builder + snapshot"] = afterBuild - afterTranslate
        let n = services * eps
        for (k, v) in parts.sorted(by: { $0.key < $1.key }) { print("MEMPROBE \(k): \(v) B, \(v / n) B/endpoint") }
        print(
            "MEMPROBE strides: KubeService \(MemoryLayout<KubeService>.stride), KubeEndpointSlice \(MemoryLayout<KubeEndpointSlice>.stride), slice endpoint \(MemoryLayout<KubeEndpointSlice.Endpoint>.stride), PlannedService \(MemoryLayout<KubeRoutingPlan.PlannedService>.stride), Endpoint \(MemoryLayout<Endpoint>.stride), Service \(MemoryLayout<Service>.stride)"
        )
        print("MEMPROBE total \((afterBuild - start) / n) B/endpoint, snapshot endpoints \(snapshot!.endpoints.count)")
        snapshot = nil
        _ = (cache, incremental, builder, translation)
    }
}
