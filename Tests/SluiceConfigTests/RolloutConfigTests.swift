import Testing

@testable import SluiceConfig

@Suite struct RolloutConfigTests {
    @Test func drainDelayIsReadAndMayBeZero() throws {
        func delay(_ text: String) throws -> Int64? {
            try ConfigLoader.parse(
                yaml: minimal(appending: "timeouts:\n  drainDelay: \(text)"), file: "t.yaml", generation: 1
            )
            .snapshot.timeouts.drainDelayMillis
        }
        #expect(try delay("0") == 0)
        #expect(try delay("2s") == 2_000)
        #expect(try delay("750ms") == 750)
        #expect(try delay("10m") == 600_000)
        let defaults = try ConfigLoader.parse(yaml: minimalConfig, file: "t.yaml", generation: 1)
        #expect(defaults.snapshot.timeouts.drainDelayMillis == nil)
        #expect(defaults.takeoverSocket == nil)
    }

    @Test func aBadDrainDelayNamesTheField() {
        for text in ["11m", "-1s", "soon", "[1]"] {
            let found = diagnostics(minimal(appending: "timeouts:\n  drainDelay: \(text)"))
            #expect(found.count == 1, "\(text)")
            #expect(found.first?.contains("timeouts.drainDelay") == true, "\(text)")
        }
    }

    @Test func takeoverSocketIsReadAndBounded() throws {
        let loaded = try ConfigLoader.parse(
            yaml: minimal(appending: "takeoverSocket: /run/sluice/takeover.sock"), file: "t.yaml", generation: 1)
        #expect(loaded.takeoverSocket == "/run/sluice/takeover.sock")
        let long = "/" + String(repeating: "s", count: 120)
        let found = diagnostics(minimal(appending: "takeoverSocket: \(long)"))
        #expect(found.count == 1)
        #expect(found.first?.contains("takeoverSocket: must be a socket path of 1 to 107 bytes") == true)
    }
}
