import Testing

@testable import SluiceConfig

@Suite struct HardeningConfigTests {
    @Test func requestBodyDeadlineAndMinimumRateAreRead() throws {
        let loaded = try ConfigLoader.parse(
            yaml: minimal(appending: "timeouts:\n  requestBody: 2s\nlimits:\n  requestBodyMinRate: 500"),
            file: "t.yaml",
            generation: 1)
        #expect(loaded.snapshot.timeouts.requestBodyMillis == 2_000)
        #expect(loaded.snapshot.limits.requestBodyMinRate == 500)
        let defaults = try ConfigLoader.parse(yaml: minimalConfig, file: "t.yaml", generation: 1)
        #expect(defaults.snapshot.timeouts.requestBodyMillis == 30_000)
        #expect(defaults.snapshot.limits.requestBodyMinRate == 1024)
    }

    @Test func aNegativeMinimumRateNamesTheField() {
        let found = diagnostics(minimal(appending: "limits:\n  requestBodyMinRate: -1"))
        #expect(found.count == 1)
        #expect(found.first?.contains("limits.requestBodyMinRate") == true)
    }

    @Test func cookieNamesAreBounded() {
        func config(_ name: String) -> String {
            minimal(replacing: 5, with: "  - name: web\n    algorithm: cookie\n    cookie: \(name)")
        }
        #expect(diagnostics(config(String(repeating: "c", count: 256))) == [])
        let found = diagnostics(config(String(repeating: "c", count: 257)))
        #expect(found.count == 1)
        #expect(found.first?.contains("services[0].cookie") == true)
        #expect(found.first?.contains("too long") == true)
    }
}
