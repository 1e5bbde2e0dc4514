import Yams

/// Converts the errors Yams throws into positioned diagnostics.
enum YAMLSyntax {
    /// The diagnostic for an error thrown by `Yams.compose`, at the position libyaml reports
    /// (1-based), with field `yaml`. Errors without a position get line and column 0.
    static func diagnostic(for error: any Error, yaml: String, file: String) -> Diagnostic {
        func make(_ mark: (line: Int, column: Int)?, _ reason: String) -> Diagnostic {
            Diagnostic(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, field: "yaml", reason: reason)
        }
        guard let error = error as? YamlError else { return make(nil, "\(error)") }
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return make((mark.line, mark.column), problem + contextSuffix(context))
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return make((context.mark.line, context.mark.column), "duplicate key \(keys) in a mapping")
        case .reader(let problem, let offset, _, _):
            return make(offset.flatMap { position(ofCharacter: $0, in: yaml) }, problem)
        default:
            return make(nil, "\(error)")
        }
    }

    /// libyaml's context names the construct being read when the problem was found, e.g.
    /// "while scanning a quoted scalar" at the opening quote.
    private static func contextSuffix(_ context: YamlError.Context?) -> String {
        guard let context else { return "" }
        return " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
    }

    /// The 1-based line and column of the character at `offset`.
    private static func position(ofCharacter offset: Int, in text: String) -> (line: Int, column: Int)? {
        var line = 1
        var column = 1
        var seen = 0
        for character in text {
            if seen == offset { break }
            seen += 1
            if character == "\n" || character == "\r\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        guard seen == offset else { return nil }
        return (line, column)
    }
}
