/// Durations on the command line: `250ms`, `2s`, `90s`, `5m`, `1h`, or a bare number of
/// seconds (as the original's flags took them).
public enum DurationSyntax {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Duration)] = [
            ("ms", .milliseconds(1)), ("s", .seconds(1)), ("m", .seconds(60)), ("h", .seconds(3600)),
        ]
        for (suffix, unit) in units where text.hasSuffix(suffix) {
            guard let value = Int(text.dropLast(suffix.count)), value >= 0 else { return nil }
            return unit * value
        }
        return Int(text).flatMap { $0 >= 0 ? .seconds($0) : nil }
    }
}
