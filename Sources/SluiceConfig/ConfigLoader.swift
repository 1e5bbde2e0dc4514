import SluiceRouting
import Yams

/// Turns a configuration file (see `docs/CONTRACT.md`) into a `LoadedConfig`, or into every
/// problem the file has, each with its line, column and field.
///
/// Runs on the control thread at start-up and on SIGHUP; nothing here is on the data path.
public enum ConfigLoader {
    /// Reads and checks the file at `path`.
    ///
    /// Returns the configuration with its snapshot stamped `generation`. Throws a `ConfigError`
    /// holding one diagnostic (naming `path` and the OS reason) when the file cannot be read or
    /// is not UTF-8, and otherwise every diagnostic `parse` finds. Blocks on file I/O.
    public static func load(path: String, generation: UInt64) throws(ConfigError) -> LoadedConfig {
        let text: String
        switch ConfigFile.contents(atPath: path) {
        case .success(let contents):
            text = contents
        case .failure(let reason):
            let diagnostic = Diagnostic(file: path, line: 0, column: 0, field: "file", reason: reason.description)
            throw ConfigError(diagnostics: [diagnostic])
        }
        return try parse(yaml: text, file: path, generation: generation)
    }

    /// Checks `yaml` and builds its routing snapshot, stamped `generation`.
    ///
    /// `file` labels the diagnostics, and its directory is where relative certificate paths
    /// start. Throws a `ConfigError` with every problem found, sorted by position: a YAML
    /// syntax error ends the reading at once (one diagnostic), while problems in a well-formed
    /// document are all collected. No global state; the only I/O is reading the certificate
    /// and key files of terminating tls listeners (blocking).
    public static func parse(yaml: String, file: String, generation: UInt64) throws(ConfigError) -> LoadedConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError(diagnostics: [YAMLSyntax.diagnostic(for: error, yaml: yaml, file: file)])
        }
        var decoder = ConfigDecoder(file: file)
        let result = decoder.decode(root: root, generation: generation)
        guard let config = result, decoder.diagnostics.isEmpty else {
            throw ConfigError(diagnostics: decoder.sortedDiagnostics())
        }
        return config
    }
}
