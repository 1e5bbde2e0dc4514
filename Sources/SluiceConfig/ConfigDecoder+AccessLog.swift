import SluiceRouting
import Yams

/// The top-level `accessLog` section and each listener's `accessLog` and `accessLogSample`.
extension ConfigDecoder {
    /// `accessLog: {path, format, buffer}`; fields left out keep the defaults of
    /// `AccessLogSettings()`. nil after a report.
    mutating func decodeAccessLog(_ node: Node) -> AccessLogSettings? {
        guard let section = fields(node, path: "accessLog", known: ["path", "format", "buffer"]) else { return nil }
        var config = AccessLogSettings()
        var valid = true
        if let node = section["path"] {
            if let path = name(node, path: "accessLog.path") {
                switch path {
                case "stdout": config.destination = .standardOutput
                case "stderr": config.destination = .standardError
                default:
                    if path.hasSuffix("/") {
                        report(
                            "accessLog.path", at: node,
                            "'\(path)' names a directory; expected a file such as \(path)access.log")
                        valid = false
                    } else {
                        config.destination = .file(resolve(path))
                    }
                }
            } else {
                valid = false
            }
        }
        if let node = section["format"] {
            if let text = string(node, path: "accessLog.format") {
                if let format = AccessLogFormat(rawValue: text) {
                    config.format = format
                } else {
                    let allowed = AccessLogFormat.allCases.map(\.rawValue).joined(separator: ", ")
                    report("accessLog.format", at: node, "unknown format '\(text)' (expected one of: \(allowed))")
                    valid = false
                }
            } else {
                valid = false
            }
        }
        if let node = section["buffer"] {
            if let buffer = integer(node, path: "accessLog.buffer", in: AccessLogSettings.bufferRange) {
                config.ringCapacity = buffer
            } else {
                valid = false
            }
        }
        return valid ? config : nil
    }

    /// A listener's `accessLog` (`on`, `off` or `errors`) and `accessLogSample` (0 to 1, for
    /// `on`). Left out: `on`, every record. `configured`: whether the file has a top-level
    /// `accessLog` section; without one the loops get no rings and record nothing whatever the
    /// policy says, so a listener that asks for records is told. nil after a report.
    mutating func accessLogPolicy(_ entry: Fields, path: String, configured: Bool) -> AccessLogPolicy? {
        let modeNode = entry["accessLog"]
        let sampleNode = entry["accessLogSample"]
        var mode = AccessLogPolicy.Mode.on
        if let modeNode {
            let allowed = AccessLogPolicy.Mode.allCases.map(\.rawValue).joined(separator: ", ")
            guard case .scalar(let scalar) = modeNode, !Self.isNull(scalar) else {
                report(
                    "\(path).accessLog", at: modeNode, "expected one of \(allowed), found \(Self.describe(modeNode))")
                return nil
            }
            guard let given = AccessLogPolicy.Mode(rawValue: scalar.string) else {
                report(
                    "\(path).accessLog", at: modeNode, "unknown mode '\(scalar.string)' (expected one of: \(allowed))")
                return nil
            }
            mode = given
            if mode != .off && !configured {
                report(
                    "\(path).accessLog", at: modeNode,
                    "there is no top-level 'accessLog' section, so nothing would be logged; add one (for example 'accessLog: {path: stdout}')"
                )
                return nil
            }
        }
        var perMillion: UInt32 = 1_000_000
        if let sampleNode {
            guard let share = fraction(sampleNode, path: "\(path).accessLogSample") else { return nil }
            guard mode == .on && configured else {
                let why =
                    switch mode {
                    case _ where !configured: "there is no top-level 'accessLog' section"
                    case .errors:
                        "'accessLog: errors' keeps every failure and nothing else, so there is nothing to sample"
                    default: "this listener's access log is off"
                    }
                report("\(path).accessLogSample", at: sampleNode, "only applies with 'accessLog: on'; \(why)")
                return nil
            }
            perMillion = UInt32((share * 1_000_000).rounded())
        }
        return AccessLogPolicy(mode: mode, samplePerMillion: perMillion)
    }

    /// A number from 0 to 1 (`0`, `1`, `0.25`, `.5`).
    mutating func fraction(_ node: Node, path: String) -> Double? {
        let expected = "a number from 0 to 1 such as 0.1"
        guard case .scalar(let scalar) = node, !Self.isNull(scalar) else {
            report(path, at: node, "expected \(expected), found \(Self.describe(node))")
            return nil
        }
        guard let value = ValueSyntax.fraction(scalar.string) else {
            report(path, at: node, "expected \(expected), found '\(scalar.string)'")
            return nil
        }
        guard value <= 1 else {
            report(path, at: node, "must be from 0 to 1 (a share of the records: 0.1 keeps one in ten)")
            return nil
        }
        return value
    }
}
