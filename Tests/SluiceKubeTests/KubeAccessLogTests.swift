import SluiceKube
import SluiceRouting
import Testing

/// `--access-log-mode`/`--access-log-sample` reach every listener of the tables built from
/// the cluster, by both ways a table is made (the first one and the applier's).
@Suite struct KubeAccessLogTests {
    @Test func everyListenerGetsThePolicy() {
        let db = service("data", "db", ports: [KubeService.Port(name: "pg", port: 5432)])
        let cluster = cache(services: [db], slices: [])
        let policy = AccessLogPolicy(mode: .errors)
        let options = KubeTranslatorOptions(
            httpAddress: addr("127.0.0.1:8080"),
            tcpServices: [KubeTCPService(namespace: "data", name: "db", port: "pg", listenPort: 15432)],
            accessLog: policy)
        let translator = KubeTranslator(options: options)
        let (snapshot, translation) = translator.snapshot(cluster, generation: 1)
        #expect(snapshot.listeners.map(\.name) == ["http", "tcp-127.0.0.1:15432"])
        #expect(snapshot.listeners.map(\.accessLog) == [policy, policy])
        let applied = translation.plan.snapshot(generation: 2)
        #expect(applied.listeners.map(\.accessLog) == [policy, policy])
        // Not part of what the plan's hash digests: the flag does not change between tables.
        let plain = KubeTranslator(options: KubeTranslatorOptions(httpAddress: addr("127.0.0.1:8080")))
        #expect(plain.translate(cluster).plan.accessLog == AccessLogPolicy())
    }
}
