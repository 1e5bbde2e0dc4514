import SluiceRouting
import Yams

/// Walks a composed YAML tree, checking each node and collecting a diagnostic for every
/// problem instead of stopping at the first.
///
/// Readers return nil after reporting, so callers carry on with the next field; the result
/// is only used when `diagnostics` stays empty. One decoder per document; single-threaded.
struct ConfigDecoder {
    let file: String
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String) {
        self.file = file
    }

    /// The diagnostics by position (line, then column), keeping discovery order among equals.
    func sortedDiagnostics() -> [Diagnostic] {
        diagnostics.enumerated()
            .sorted {
                ($0.element.line, $0.element.column, $0.offset) < ($1.element.line, $1.element.column, $1.offset)
            }
            .map(\.element)
    }

    mutating func report(_ field: String, at mark: Mark?, _ reason: String) {
        diagnostics.append(
            Diagnostic(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, field: field, reason: reason)
        )
    }

    mutating func report(_ field: String, at node: Node, _ reason: String) {
        report(field, at: node.mark, reason)
    }
}

// MARK: - Structure

extension ConfigDecoder {
    /// The fields of one mapping, by name, with the mapping's position for "missing" reports.
    struct Fields {
        let path: String
        let mark: Mark?
        let values: [String: Node]

        subscript(name: String) -> Node? { values[name] }
    }

    /// The fields of `node`, which must be a mapping whose keys are all in `known`. Unknown
    /// keys are reported and skipped; nil (after a report) when `node` is not a mapping.
    mutating func fields(_ node: Node, path: String, known: [String]) -> Fields? {
        guard case .mapping(let mapping) = node else {
            report(path.isEmpty ? "document" : path, at: node, "expected a mapping, found \(Self.describe(node))")
            return nil
        }
        var values: [String: Node] = [:]
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                report(path.isEmpty ? "document" : path, at: key, "expected a field name, found \(Self.describe(key))")
                continue
            }
            guard known.contains(scalar.string) else {
                let expected = known.joined(separator: ", ")
                report(Self.join(path, scalar.string), at: key, "unknown field '\(scalar.string)' (known: \(expected))")
                continue
            }
            values[scalar.string] = value
        }
        return Fields(path: path, mark: mapping.mark, values: values)
    }

    /// The field `name` of `fields`, reporting it missing at the mapping's position.
    mutating func required(_ fields: Fields, _ name: String) -> Node? {
        if let node = fields[name] { return node }
        report(Self.join(fields.path, name), at: fields.mark, "required field is missing")
        return nil
    }

    /// The items of `node`, which must be a sequence.
    mutating func sequence(_ node: Node, path: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            report(path, at: node, "expected a sequence, found \(Self.describe(node))")
            return nil
        }
        return Array(sequence)
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// How a node reads in a message: "a mapping", "a sequence", "nothing", or the text quoted.
    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a sequence"
        case .alias: return "an alias"
        case .scalar(let scalar):
            return isNull(scalar) ? "nothing" : "'\(scalar.string)'"
        }
    }

    /// `key:` with no value, `~` and `null` (plain, not quoted) are YAML's null.
    static func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }
}

// MARK: - Scalars

extension ConfigDecoder {
    /// A non-null scalar's text. `hint` is appended when the node is a collection, where a
    /// likely cause is known (an unquoted `[::1]:80` reads as a YAML sequence).
    mutating func string(_ node: Node, path: String, hint: String = "") -> String? {
        guard case .scalar(let scalar) = node, !Self.isNull(scalar) else {
            let suffix: String
            if case .scalar = node { suffix = "" } else { suffix = hint }
            report(path, at: node, "expected a string, found \(Self.describe(node))\(suffix)")
            return nil
        }
        return scalar.string
    }

    /// A non-empty string.
    mutating func name(_ node: Node, path: String) -> String? {
        guard let text = string(node, path: path) else { return nil }
        guard !text.isEmpty else {
            report(path, at: node, "must not be empty")
            return nil
        }
        return text
    }

    /// A decimal integer within `range`.
    mutating func integer(_ node: Node, path: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = scalarText(node, path: path, expected: "an integer") else { return nil }
        switch ValueSyntax.integer(text) {
        case .failure(.malformed):
            report(path, at: node, "expected an integer, found '\(text)'")
        case .failure(.tooLarge):
            report(path, at: node, Self.rangeReason(range, unit: ""))
        case .success(let value):
            if range.contains(value) { return value }
            report(path, at: node, Self.rangeReason(range, unit: ""))
        }
        return nil
    }

    /// Milliseconds, from 1 ms to one year (a bound the timer arithmetic cannot overflow).
    mutating func durationMillis(_ node: Node, path: String) -> Int64? {
        let expected = "a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds"
        guard let text = scalarText(node, path: path, expected: expected) else { return nil }
        let maximum: Int64 = 8_760 * 3_600_000
        switch ValueSyntax.durationMillis(text) {
        case .failure(.malformed):
            report(path, at: node, "expected \(expected), found '\(text)'")
        case .failure(.tooLarge):
            report(path, at: node, "must be at most 8760h")
        case .success(let millis):
            if millis > maximum {
                report(path, at: node, "must be at most 8760h")
            } else if millis <= 0 {
                report(path, at: node, "must be greater than 0")
            } else {
                return millis
            }
        }
        return nil
    }

    /// `takeoverSocket`: a Unix socket path (at most 107 bytes).
    mutating func decodeTakeoverSocket(_ node: Node) -> String? {
        let path = "takeoverSocket"
        guard let text = scalarText(node, path: path, expected: "a Unix socket path such as /run/sluice/takeover.sock")
        else { return nil }
        guard !text.isEmpty, text.utf8.count <= 107, !text.utf8.contains(0) else {
            report(path, at: node, "must be a socket path of 1 to 107 bytes, found '\(text)'")
            return nil
        }
        return text
    }

    /// `timeouts.drainDelay`: 0 (no delay) up to 10 minutes.
    mutating func drainDelayMillis(_ node: Node) -> Int64? {
        let path = "timeouts.drainDelay"
        let expected = "a duration such as 0, 500ms, 5s or 1m"
        guard let text = scalarText(node, path: path, expected: expected) else { return nil }
        switch ValueSyntax.durationMillis(text) {
        case .success(let millis) where millis >= 0 && millis <= 600_000:
            return millis
        case .success, .failure(.tooLarge):
            report(path, at: node, "must be from 0 to 10m, found '\(text)'")
        case .failure(.malformed):
            report(path, at: node, "expected \(expected), found '\(text)'")
        }
        return nil
    }

    /// A size in bytes within `range`.
    mutating func sizeBytes(_ node: Node, path: String, in range: ClosedRange<Int>) -> Int? {
        let expected = "a size in bytes such as 65536, 64k or 1m"
        guard let text = scalarText(node, path: path, expected: expected) else { return nil }
        switch ValueSyntax.sizeBytes(text) {
        case .failure(.malformed):
            report(path, at: node, "expected \(expected), found '\(text)'")
        case .failure(.tooLarge):
            report(path, at: node, Self.rangeReason(range, unit: " bytes"))
        case .success(let bytes):
            if range.contains(bytes) { return bytes }
            report(path, at: node, Self.rangeReason(range, unit: " bytes"))
        }
        return nil
    }

    /// `true` or `false`.
    mutating func bool(_ node: Node, path: String) -> Bool? {
        guard let text = scalarText(node, path: path, expected: "true or false") else { return nil }
        guard let value = ValueSyntax.bool(text) else {
            report(path, at: node, "expected true or false, found '\(text)'")
            return nil
        }
        return value
    }

    /// A non-null scalar's text, or a report that `expected` was wanted.
    private mutating func scalarText(_ node: Node, path: String, expected: String) -> String? {
        guard case .scalar(let scalar) = node, !Self.isNull(scalar) else {
            report(path, at: node, "expected \(expected), found \(Self.describe(node))")
            return nil
        }
        return scalar.string
    }

    static func rangeReason(_ range: ClosedRange<Int>, unit: String) -> String {
        if range.upperBound == Int.max { return "must be at least \(range.lowerBound)\(unit)" }
        return "must be from \(range.lowerBound) to \(range.upperBound)\(unit)"
    }
}
