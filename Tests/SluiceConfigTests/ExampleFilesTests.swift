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

    @Test func tlsExampleUsesEveryTLSSetting() throws {
        let snapshot = try ConfigLoader.load(path: example("tls.yaml"), generation: 1).snapshot
        #expect(snapshot.listeners.map(\.protocol) == [.tls])
        #expect(snapshot.listeners[0].acceptProxy.map(\.description) == ["10.0.0.0/8", "::1/128"])
        #expect(snapshot.routeTables[0].routes.count == 2)
        #expect(snapshot.routeTables[0].defaultBackend.service == 2)
        #expect(snapshot.services.map(\.proxyProtocol) == [.v2, nil, nil])
        #expect(snapshot.timeouts.tlsHelloMillis == 5_000)
    }
}
