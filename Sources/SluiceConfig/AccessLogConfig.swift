/// The top-level `accessLog` section: where records go and how they read. Read at start
/// only; each listener's `accessLog`/`accessLogSample` (its `AccessLogPolicy`) is part of the
/// routing table and follows reloads.
public struct AccessLogConfig: Sendable, Hashable, CustomStringConvertible {
    public enum Destination: Sendable, Hashable, CustomStringConvertible {
        case standardOutput
        case standardError
        /// A path, relative ones resolved against the configuration file's directory.
        case file(String)

        public var description: String {
            switch self {
            case .standardOutput: "stdout"
            case .standardError: "stderr"
            case .file(let path): path
            }
        }
    }

    public enum Format: String, Sendable, Hashable, CaseIterable {
        case json, text
    }

    /// `path`: `stdout` (the default), `stderr`, or a file appended to.
    public var destination: Destination
    /// `format`: `json` (the default) or `text`.
    public var format: Format
    /// `buffer`: records each loop's ring holds (rounded up to a power of two).
    public var buffer: Int

    public static let defaultBuffer = 4096
    /// About 0.9 KiB a record: the default costs 3.6 MiB per loop, the maximum 56 MiB.
    public static let bufferRange = 16...65_536

    public init(destination: Destination = .standardOutput, format: Format = .json, buffer: Int = defaultBuffer) {
        self.destination = destination
        self.format = format
        self.buffer = buffer
    }

    /// `path=… format=… buffer=…`.
    public var description: String { "path=\(destination) format=\(format.rawValue) buffer=\(buffer)" }
}
