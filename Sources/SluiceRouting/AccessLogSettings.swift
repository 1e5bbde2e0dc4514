/// How access-log records are written out: one line each.
public enum AccessLogFormat: String, Sendable, Hashable, CaseIterable {
    /// One JSON object a line, the same fields in the same order on every line.
    case json
    /// The same fields in the same order, space-separated: strings quoted, `-` for absent.
    case text
}

/// Where the access log goes and how it reads: the configuration file's top-level
/// `accessLog` section, or `sluice kube`'s flags. Read once at start: a reload that changes it
/// is logged and ignored until the next start (the listeners' `AccessLogPolicy` does change on
/// reload).
public struct AccessLogSettings: Sendable, Hashable, CustomStringConvertible {
    public enum Destination: Sendable, Hashable, CustomStringConvertible {
        case standardOutput
        case standardError
        /// Appended to, created 0640 when missing, reopened on SIGUSR2 (relative paths in a
        /// configuration file are resolved against its directory).
        case file(String)

        public var description: String {
            switch self {
            case .standardOutput: "stdout"
            case .standardError: "stderr"
            case .file(let path): path
            }
        }
    }

    public var destination: Destination
    public var format: AccessLogFormat
    /// Records each loop's ring holds (rounded up to a power of two). A loop that finds its
    /// ring full drops the record and counts it.
    public var ringCapacity: Int
    /// How often the writer drains the rings.
    public var intervalMillis: Int

    public static let defaultRingCapacity = 4096
    /// `accessLog.buffer`'s range. About 0.9 KiB a record: the default costs 3.6 MiB per loop,
    /// the maximum 56 MiB.
    public static let bufferRange = 16...65_536

    public init(
        destination: Destination = .standardOutput, format: AccessLogFormat = .json,
        ringCapacity: Int = AccessLogSettings.defaultRingCapacity, intervalMillis: Int = 50
    ) {
        self.destination = destination
        self.format = format
        self.ringCapacity = ringCapacity
        self.intervalMillis = intervalMillis
    }

    /// "path=… format=… buffer=…", for log lines.
    public var summary: String { "path=\(destination) format=\(format.rawValue) buffer=\(ringCapacity)" }
    public var description: String { summary }
}
