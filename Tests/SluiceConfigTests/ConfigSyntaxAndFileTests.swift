import SluiceConfig
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// YAML that does not parse, and files that cannot be read: one diagnostic each.
@Suite struct ConfigSyntaxAndFileTests {
    @Test func syntaxErrorsCarryYamlsPosition() {
        #expect(
            diagnostics("workers: 2\nlisteners: [\n") == [
                "t.yaml:3:1: yaml: did not find expected node content (while parsing a flow node at line 3, column 1)"
            ]
        )
        #expect(
            diagnostics("workers: 2\ntimeouts: connect: 5s\n") == [
                "t.yaml:2:18: yaml: mapping values are not allowed in this context"
            ]
        )
        #expect(
            diagnostics("services:\n  - name: \"web\n") == [
                "t.yaml:3:1: yaml: found unexpected end of stream (while scanning a quoted scalar at line 2, column 11)"
            ]
        )
    }

    @Test func duplicateKeysAreSyntaxErrors() {
        #expect(
            diagnostics(minimal(appending: "workers: 1\nworkers: 2")) == [
                "t.yaml:8:1: yaml: duplicate key 'workers' in a mapping"
            ]
        )
    }

    @Test func anUnquotedIPv6EndpointIsCaught() {
        // `- [::1]:9002` is a flow sequence followed by garbage to a YAML parser.
        #expect(diagnostics(minimal(replacing: 7, with: "      - [::1]:9002")).count == 1)
    }

    @Test func loadReadsAFile() throws {
        let path = try temporaryFile(contents: minimalConfig)
        defer { unlink(path) }
        let config = try ConfigLoader.load(path: path, generation: 3)
        #expect(config.snapshot.generation == 3)
        #expect(config.snapshot.services.map(\.name) == ["web"])
    }

    @Test func loadLabelsDiagnosticsWithThePath() throws {
        let path = try temporaryFile(contents: "workers: 0\n" + minimalConfig)
        defer { unlink(path) }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(path: path, generation: 1) }
        do {
            _ = try ConfigLoader.load(path: path, generation: 1)
        } catch {
            #expect(error.description == "\(path):1:10: workers: must be from 1 to 256")
        }
    }

    @Test func missingFile() {
        #expect(
            loadErrors("/nonexistent/sluice.yaml") == [
                "/nonexistent/sluice.yaml:0:0: file: cannot open the file: No such file or directory"
            ]
        )
    }

    @Test func directoryInsteadOfFile() {
        #expect(loadErrors("/tmp") == ["/tmp:0:0: file: cannot read the file: Is a directory"])
    }

    @Test func endlessFile() {
        #expect(loadErrors("/dev/zero") == ["/dev/zero:0:0: file: the file is larger than 16 MiB"])
    }

    @Test func binaryFile() throws {
        let path = try temporaryFile(bytes: [0x77, 0x3A, 0x20, 0xFF, 0xFE, 0x0A])
        defer { unlink(path) }
        #expect(loadErrors(path) == ["\(path):0:0: file: the file is not valid UTF-8 text"])
    }

    private func loadErrors(_ path: String) -> [String] {
        do {
            _ = try ConfigLoader.load(path: path, generation: 1)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    private struct TemporaryFileFailed: Error {}

    private func temporaryFile(contents: String) throws -> String {
        try temporaryFile(bytes: Array(contents.utf8))
    }

    /// A new file under /tmp holding `bytes`; the caller unlinks it.
    private func temporaryFile(bytes: [UInt8]) throws -> String {
        var template = Array("/tmp/sluice-config-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw TemporaryFileFailed() }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw TemporaryFileFailed() }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
