/// The textual forms of numbers, durations and sizes in a configuration file.
///
/// Pure functions over the scalar's text; range checks are the caller's, so that a value of
/// the right form but out of range gets a message about the range, not about the form.
enum ValueSyntax {
    /// Why a scalar's text was refused.
    enum Failure: Error, Equatable {
        /// Not of the expected form at all.
        case malformed
        /// The right form, but more than the type can hold.
        case tooLarge
    }

    /// A decimal integer with an optional leading `-`. No `+`, no separators, no base prefixes:
    /// `0x10` or `1_000` in a configuration file are more likely mistakes than intentions.
    static func integer(_ text: String) -> Result<Int, Failure> {
        var digits = Substring(text)
        let negative = digits.first == "-"
        if negative { digits = digits.dropFirst() }
        return decimal(digits).map { negative ? -$0 : $0 }
    }

    /// Milliseconds from `250ms`, `5s`, `2m`, `1h` or a bare integer of milliseconds.
    /// Units are lower case, as Go and HAProxy write them; `M` could be read as months.
    static func durationMillis(_ text: String) -> Result<Int64, Failure> {
        let units: [(suffix: String, millis: Int)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(text)
        var scale = 1
        // "ms" before "m" and "s": the first suffix that matches wins.
        for unit in units where text.hasSuffix(unit.suffix) {
            number = number.dropLast(unit.suffix.count)
            scale = unit.millis
            break
        }
        return scaled(number, by: scale).map(Int64.init)
    }

    /// Bytes from an integer, or an integer followed by `k`, `m` or `g` (any case, powers of 1024).
    static func sizeBytes(_ text: String) -> Result<Int, Failure> {
        var number = Substring(text)
        var scale = 1
        switch text.last {
        case "k", "K": scale = 1 << 10
        case "m", "M": scale = 1 << 20
        case "g", "G": scale = 1 << 30
        default: break
        }
        if scale != 1 { number = number.dropLast() }
        return scaled(number, by: scale)
    }

    /// True for `true`, false for `false` (any case); nil otherwise. `yes`/`on` are refused:
    /// YAML 1.2 dropped them, and `splice: no` reading as a string would surprise.
    static func bool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true": return true
        case "false": return false
        default: return nil
        }
    }

    /// A non-negative decimal number: digits with an optional fraction (`0`, `1`, `0.25`), or
    /// a fraction alone (`.5`). No sign, exponent, `nan` or `inf`, which `Double(_:)` takes.
    static func fraction(_ text: String) -> Double? {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
        let isDigit: (UInt8) -> Bool = { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard parts.allSatisfy({ $0.allSatisfy(isDigit) }), parts.contains(where: { !$0.isEmpty }) else { return nil }
        if parts.count == 2 && parts[1].isEmpty { return nil }
        return Double(text.hasPrefix(".") ? "0" + text : text)
    }

    private static func scaled(_ digits: Substring, by scale: Int) -> Result<Int, Failure> {
        decimal(digits).flatMap { value in
            let (product, overflow) = value.multipliedReportingOverflow(by: scale)
            return overflow ? .failure(.tooLarge) : .success(product)
        }
    }

    /// One or more ASCII digits as an `Int`.
    private static func decimal(_ digits: Substring) -> Result<Int, Failure> {
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .failure(.malformed)
        }
        guard let value = Int(digits) else { return .failure(.tooLarge) }
        return .success(value)
    }
}
