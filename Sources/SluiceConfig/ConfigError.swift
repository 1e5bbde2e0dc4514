/// Every problem found in one configuration file. Never empty when thrown.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// In file order (by line, then column); problems without a position come first.
    public var diagnostics: [Diagnostic]

    public init(diagnostics: [Diagnostic]) {
        self.diagnostics = diagnostics
    }

    /// One diagnostic per line, without a trailing newline.
    public var description: String {
        diagnostics.map(\.description).joined(separator: "\n")
    }
}
