import SluiceConfig

/// The diagnostics `ConfigLoader.parse` reports for `yaml`, as printed; empty when it loads.
func diagnostics(_ yaml: String, file: String = "t.yaml") -> [String] {
    do {
        _ = try ConfigLoader.parse(yaml: yaml, file: file, generation: 1)
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

/// A configuration that loads; tests change one line of it at a time.
///
///     1 listeners:
///     2   - address: 127.0.0.1:8080
///     3     service: web
///     4 services:
///     5   - name: web
///     6     endpoints:
///     7       - 127.0.0.1:9001
let minimalConfig = """
    listeners:
      - address: 127.0.0.1:8080
        service: web
    services:
      - name: web
        endpoints:
          - 127.0.0.1:9001

    """

/// `minimalConfig` with `line` (1-based) replaced by `text`.
func minimal(replacing line: Int, with text: String) -> String {
    minimalConfig.replacingLine(line, with: text)
}

extension String {
    /// This text with `line` (1-based) replaced by `text`, which may hold several lines.
    func replacingLine(_ line: Int, with text: String) -> String {
        var lines = split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[line - 1] = text
        return lines.joined(separator: "\n")
    }
}

/// `minimalConfig` with `text` appended as its last lines.
func minimal(appending text: String) -> String {
    minimalConfig + text + "\n"
}
