import SluiceConfig
import SluiceRouting
import Testing

/// The top-level `accessLog` section and the listeners' `accessLog`/`accessLogSample`.
@Suite struct AccessLogConfigTests {
    private func load(_ yaml: String, file: String = "/etc/sluice/sluice.yaml") throws -> LoadedConfig {
        try ConfigLoader.parse(yaml: yaml, file: file, generation: 1)
    }

    /// `minimalConfig` with `lines` added to its listener (after `service: web`).
    private func listener(_ lines: String, accessLog: String? = "accessLog: {}") -> String {
        let yaml = minimal(replacing: 3, with: "    service: web\n" + lines)
        return accessLog.map { yaml + $0 + "\n" } ?? yaml
    }

    @Test func withoutASectionNothingIsLogged() throws {
        let config = try load(minimalConfig)
        #expect(config.accessLog == nil)
        // The listeners keep the default policy; the loops get no rings, so nothing is recorded.
        #expect(config.snapshot.listeners[0].accessLog == AccessLogPolicy())
        // A listener may say off all the same.
        let off = try load(listener("    accessLog: off", accessLog: nil))
        #expect(off.snapshot.listeners[0].accessLog.mode == .off)
    }

    @Test func anEmptySectionLogsEverythingAsJSONToStandardOutput() throws {
        let config = try load(minimal(appending: "accessLog: {}"))
        #expect(config.accessLog == AccessLogSettings(destination: .standardOutput, format: .json, ringCapacity: 4096))
        #expect(config.snapshot.listeners[0].accessLog == AccessLogPolicy(mode: .on, samplePerMillion: 1_000_000))
    }

    @Test func everyField() throws {
        let relative = try load(
            minimal(appending: "accessLog:\n  path: logs/access.log\n  format: text\n  buffer: 1024"))
        #expect(
            relative.accessLog
                == AccessLogSettings(
                    destination: .file("/etc/sluice/logs/access.log"), format: .text, ringCapacity: 1024))
        let absolute = try load(minimal(appending: "accessLog: {path: /var/log/sluice/access.log, format: json}"))
        #expect(absolute.accessLog?.destination == .file("/var/log/sluice/access.log"))
        #expect(try load(minimal(appending: "accessLog: {path: stdout}")).accessLog?.destination == .standardOutput)
        #expect(try load(minimal(appending: "accessLog: {path: stderr}")).accessLog?.destination == .standardError)
        #expect(try load(minimal(appending: "accessLog: {buffer: 16}")).accessLog?.ringCapacity == 16)
        #expect(try load(minimal(appending: "accessLog: {buffer: 65536}")).accessLog?.ringCapacity == 65_536)
    }

    @Test func listenerModesAndSampling() throws {
        let cases: [(String, AccessLogPolicy)] = [
            ("    accessLog: on", AccessLogPolicy(mode: .on, samplePerMillion: 1_000_000)),
            ("    accessLog: off", AccessLogPolicy(mode: .off, samplePerMillion: 1_000_000)),
            ("    accessLog: errors", AccessLogPolicy(mode: .errors, samplePerMillion: 1_000_000)),
            ("    accessLogSample: 0.25", AccessLogPolicy(mode: .on, samplePerMillion: 250_000)),
            ("    accessLog: on\n    accessLogSample: 0", AccessLogPolicy(mode: .on, samplePerMillion: 0)),
            ("    accessLogSample: 1", AccessLogPolicy(mode: .on, samplePerMillion: 1_000_000)),
            ("    accessLogSample: .5", AccessLogPolicy(mode: .on, samplePerMillion: 500_000)),
            ("    accessLogSample: 0.0000004", AccessLogPolicy(mode: .on, samplePerMillion: 0)),
            ("    accessLogSample: 0.1234567", AccessLogPolicy(mode: .on, samplePerMillion: 123_457)),
        ]
        for (lines, policy) in cases {
            let config = try load(listener(lines))
            #expect(config.snapshot.listeners[0].accessLog == policy, "\(lines)")
        }
    }

    @Test func eachListenerHasItsOwnPolicy() throws {
        let yaml = """
            accessLog: {path: /tmp/a.log}
            listeners:
              - name: web
                address: 127.0.0.1:8080
                protocol: http
                accessLog: errors
                default: {status: 404}
              - name: db
                address: 127.0.0.1:8081
                service: db
                accessLogSample: 0.5
              - name: quiet
                address: 127.0.0.1:8082
                service: db
                accessLog: off
            services:
              - name: db
                endpoints: [127.0.0.1:9001]

            """
        let policies = try load(yaml).snapshot.listeners.map(\.accessLog)
        #expect(
            policies == [
                AccessLogPolicy(mode: .errors), AccessLogPolicy(mode: .on, samplePerMillion: 500_000),
                AccessLogPolicy(mode: .off),
            ])
    }

    @Test func sectionDiagnostics() {
        #expect(
            diagnostics(minimal(appending: "accessLog: stdout")) == [
                "t.yaml:8:12: accessLog: expected a mapping, found 'stdout'"
            ])
        #expect(
            diagnostics(minimal(appending: "accessLog: {file: /tmp/a.log}")) == [
                "t.yaml:8:13: accessLog.file: unknown field 'file' (known: path, format, buffer)"
            ])
        #expect(
            diagnostics(minimal(appending: "accessLog: {path: ''}")) == [
                "t.yaml:8:19: accessLog.path: must not be empty"
            ])
        #expect(
            diagnostics(minimal(appending: "accessLog: {path: /var/log/}")) == [
                "t.yaml:8:19: accessLog.path: '/var/log/' names a directory; expected a file such as /var/log/access.log"
            ])
        #expect(
            diagnostics(minimal(appending: "accessLog: {format: yaml}")) == [
                "t.yaml:8:21: accessLog.format: unknown format 'yaml' (expected one of: json, text)"
            ])
        #expect(
            diagnostics(minimal(appending: "accessLog: {buffer: 8}")) == [
                "t.yaml:8:21: accessLog.buffer: must be from 16 to 65536"
            ])
        #expect(
            diagnostics(minimal(appending: "accessLog: {buffer: lots}")) == [
                "t.yaml:8:21: accessLog.buffer: expected an integer, found 'lots'"
            ])
    }

    @Test func listenerDiagnostics() {
        #expect(
            diagnostics(listener("    accessLog: true")) == [
                "t.yaml:4:16: listeners[0].accessLog: unknown mode 'true' (expected one of: off, on, errors)"
            ])
        #expect(
            diagnostics(listener("    accessLog: {path: stdout}")) == [
                "t.yaml:4:16: listeners[0].accessLog: expected one of off, on, errors, found a mapping"
            ])
        #expect(
            diagnostics(listener("    accessLog: on", accessLog: nil)) == [
                "t.yaml:4:16: listeners[0].accessLog: there is no top-level 'accessLog' section, so nothing would be "
                    + "logged; add one (for example 'accessLog: {path: stdout}')"
            ])
        #expect(
            diagnostics(listener("    accessLogSample: 0.5", accessLog: nil)) == [
                "t.yaml:4:22: listeners[0].accessLogSample: only applies with 'accessLog: on'; there is no top-level "
                    + "'accessLog' section"
            ])
        #expect(
            diagnostics(listener("    accessLog: errors\n    accessLogSample: 0.5")) == [
                "t.yaml:5:22: listeners[0].accessLogSample: only applies with 'accessLog: on'; 'accessLog: errors' "
                    + "keeps every failure and nothing else, so there is nothing to sample"
            ])
        #expect(
            diagnostics(listener("    accessLog: off\n    accessLogSample: 0.5")) == [
                "t.yaml:5:22: listeners[0].accessLogSample: only applies with 'accessLog: on'; this listener's access "
                    + "log is off"
            ])
        for bad in ["-0.1", "10%", "1e-3", "nan", "0.", "half", "."] {
            #expect(
                diagnostics(listener("    accessLogSample: \(bad)")) == [
                    "t.yaml:4:22: listeners[0].accessLogSample: expected a number from 0 to 1 such as 0.1, found '\(bad)'"
                ])
        }
        #expect(
            diagnostics(listener("    accessLogSample: 1.5")) == [
                "t.yaml:4:22: listeners[0].accessLogSample: must be from 0 to 1 (a share of the records: 0.1 keeps one "
                    + "in ten)"
            ])
        #expect(
            diagnostics(listener("    accessLogSample: [0.5]")) == [
                "t.yaml:4:22: listeners[0].accessLogSample: expected a number from 0 to 1 such as 0.1, found a sequence"
            ])
    }

    /// A section with a mistake still counts as present: its listeners are not told there is none.
    @Test func aBadSectionIsReportedOnce() {
        #expect(
            diagnostics(listener("    accessLog: on", accessLog: "accessLog: {format: xml}")) == [
                "t.yaml:9:21: accessLog.format: unknown format 'xml' (expected one of: json, text)"
            ])
    }
}
