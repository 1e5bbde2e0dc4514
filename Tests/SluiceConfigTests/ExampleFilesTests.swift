import Foundation
import SluiceConfig
import SluiceRouting
import Testing

/// The files under `examples/` load as the README says they do.
@Suite struct ExampleFilesTests {
    /// `examples/NAME` in this checkout, found from this file's path.
    private func example(_ name: String) -> String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/SluiceConfigTests/ExampleFilesTests.swift
        return (parts + ["examples", Substring(name)]).joined(separator: "/")
    }

    @Test(arguments: ["tcp.yaml", "http.yaml", "tls.yaml"])
    func exampleLoads(name: String) throws {
        let config = try ConfigLoader.load(path: example(name), generation: 1)
        #expect(!config.snapshot.listeners.isEmpty)
    }

    @Test func httpExampleLogsOneRequestInTen() throws {
        let config = try ConfigLoader.load(path: example("http.yaml"), generation: 1)
        #expect(config.accessLog == AccessLogSettings(destination: .standardOutput, format: .json, ringCapacity: 4096))
        #expect(config.snapshot.listeners[0].accessLog == AccessLogPolicy(mode: .on, samplePerMillion: 100_000))
    }

    @Test func tlsExampleUsesEveryTLSSetting() throws {
        let snapshot = try ConfigLoader.load(path: example("tls.yaml"), generation: 1).snapshot
        #expect(snapshot.listeners.map(\.protocol) == [.tls])
        #expect(snapshot.listeners[0].acceptProxy.map(\.description) == ["10.0.0.0/8", "::1/128"])
        #expect(snapshot.routeTables[0].routes.count == 2)
        #expect(snapshot.routeTables[0].defaultBackend.service == 2)
        #expect(snapshot.services.map(\.proxyProtocol) == [.v2, nil, nil])
        #expect(snapshot.timeouts.tlsHelloMillis == 5_000)
    }

    /// The termination example, with certificates made by the commands its comment gives
    /// (run in a scratch directory that stands for the repository root).
    @Test func tlsTerminateExampleLoadsWithTheCertificatesItsCommentMakes() throws {
        let root = TestCertificates.scratchDirectory("example")
        let text = try String(contentsOfFile: example("tls-terminate.yaml"), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = lines.firstIndex { $0.hasSuffix("from the repository root:") }!
        let end = lines.firstIndex { $0.hasPrefix("# then validate") }!
        let commands = lines[(start + 1)..<end].map { $0.dropFirst(4) }.joined(separator: "\n")
        TestCertificates.run("set -e\n" + commands, in: root)
        try FileManager.default.createDirectory(atPath: root + "/examples", withIntermediateDirectories: true)
        try text.write(toFile: root + "/examples/tls-terminate.yaml", atomically: true, encoding: .utf8)

        let snapshot = try ConfigLoader.load(path: root + "/examples/tls-terminate.yaml", generation: 1).snapshot
        #expect(snapshot.listeners.map(\.protocol) == [.tls, .http])
        #expect(snapshot.listeners[0].tlsContext == 0)
        #expect(
            snapshot.tlsContexts.map(\.summary) == [
                "grafana.example.com, www.example.com (default); *.apps.example.com"
            ])
        let terminated = snapshot.routeTables[snapshot.listeners[0].terminatedRoutes]
        #expect(terminated.routes.count == 3)
        #expect(terminated.routes[0].hstsMaxAge == 31_536_000)
        #expect(terminated.defaultBackend == DefaultBackend(status: 404, body: Array("no such site\n".utf8)))
        let plain = snapshot.routeTables[snapshot.listeners[1].routes]
        #expect(plain.routes[0].redirectHTTPS && plain.routes[0].httpsPort == 8443)
    }
}
