/// Bounds on what a head may hold. Values are read by the parsers and the head scanner only;
/// one value is usually shared by every connection of a listener.
public struct HTTPLimits: Sendable, Equatable {
    /// A head (request or status line, fields, final empty line) longer than this is refused
    /// with 431 (`HeadScanner` answers `.tooLarge`).
    public var maxHeadBytes: Int
    /// A request-target longer than this is refused with 414.
    public var maxTargetBytes: Int
    /// More fields than this (or than the caller's field array holds) is refused with 431.
    public var maxFields: Int

    /// Limits with the defaults of the configuration: 16 KiB heads, 8 KiB targets, 100 fields.
    public init(maxHeadBytes: Int = 16384, maxTargetBytes: Int = 8192, maxFields: Int = 100) {
        self.maxHeadBytes = maxHeadBytes
        self.maxTargetBytes = maxTargetBytes
        self.maxFields = maxFields
    }
}
