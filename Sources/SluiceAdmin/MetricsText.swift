/// Reads the samples of a Prometheus text exposition (what `/metrics` serves): for `sluice
/// top` and the tests. Comments and blank lines are skipped; a line that is not
/// `name{labels} value` or `name value` is skipped too. Not on any data path.
public enum MetricsText {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public static func parse(_ text: String) -> [Sample] {
        var samples: [Sample] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.first == "#" { continue }
            if let sample = parseLine(Array(line.utf8)) { samples.append(sample) }
        }
        return samples
    }

    static func parseLine(_ b: [UInt8]) -> Sample? {
        var i = 0
        while i < b.count && b[i] != UInt8(ascii: "{") && b[i] != UInt8(ascii: " ") { i += 1 }
        guard i > 0, i < b.count else { return nil }
        let name = String(decoding: b[0..<i], as: UTF8.self)
        var labels: [String: String] = [:]
        if b[i] == UInt8(ascii: "{") {
            i += 1
            while i < b.count && b[i] != UInt8(ascii: "}") {
                let keyStart = i
                while i < b.count && b[i] != UInt8(ascii: "=") { i += 1 }
                guard i + 1 < b.count, b[i + 1] == UInt8(ascii: "\"") else { return nil }
                let key = String(decoding: b[keyStart..<i], as: UTF8.self)
                i += 2
                var value: [UInt8] = []
                while i < b.count && b[i] != UInt8(ascii: "\"") {
                    if b[i] == UInt8(ascii: "\\") && i + 1 < b.count {
                        i += 1
                        value.append(b[i] == UInt8(ascii: "n") ? 0x0A : b[i])
                    } else {
                        value.append(b[i])
                    }
                    i += 1
                }
                guard i < b.count else { return nil }
                i += 1
                labels[key] = String(decoding: value, as: UTF8.self)
                if i < b.count && b[i] == UInt8(ascii: ",") { i += 1 }
            }
            guard i < b.count else { return nil }
            i += 1
        }
        while i < b.count && b[i] == UInt8(ascii: " ") { i += 1 }
        var end = i
        while end < b.count && b[end] != UInt8(ascii: " ") { end += 1 }
        let text = String(decoding: b[i..<end], as: UTF8.self)
        let value: Double
        switch text {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(text) else { return nil }
            value = parsed
        }
        return Sample(name: name, labels: labels, value: value)
    }
}
