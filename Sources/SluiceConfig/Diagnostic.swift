/// One problem found in a configuration file, positioned so an editor can jump to it.
public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
    /// The file as the caller named it.
    public var file: String
    /// 1-based; 0 when the position is unknown (for example, the file could not be read).
    public var line: Int
    /// 1-based, counted in Unicode scalars as libyaml counts them; 0 when unknown.
    public var column: Int
    /// Where in the document: `services[0].endpoints[1]`, `timeouts.connect`, `listeners[2].service`.
    public var field: String
    /// What is wrong, and where it helps, what would be accepted.
    public var reason: String

    public init(file: String, line: Int, column: Int, field: String, reason: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.reason = reason
    }

    /// `FILE:LINE:COLUMN: FIELD: REASON`, the form compilers use, so terminals and editors link it.
    public var description: String {
        "\(file):\(line):\(column): \(field): \(reason)"
    }
}
