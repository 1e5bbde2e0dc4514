/// When a bearer token file is read again: projected service-account tokens expire and the
/// kubelet rewrites the file well before, so (as client-go's cached file token source) the
/// file is re-read once `interval` has passed since the last read, and at once after the
/// server answered 401. A value driven with explicit instants.
///
/// | state                        | `needsRead(now:)` |
/// | ---------------------------- | ----------------- |
/// | never read                   | true              |
/// | read less than `interval` ago | false            |
/// | read `interval` ago or more  | true              |
/// | 401 since the last read      | true              |
public struct TokenRefreshPolicy: Sendable {
    public typealias Instant = ContinuousClock.Instant
    public let interval: Duration
    public private(set) var lastRead: Instant?
    public private(set) var rejected = false

    public init(interval: Duration = .seconds(60)) {
        self.interval = interval
    }

    public func needsRead(now: Instant) -> Bool {
        guard let lastRead, !rejected else { return true }
        return now - lastRead >= interval
    }

    /// The file was read (successfully or not: a failed read keeps the old token and waits
    /// the interval again, rather than hitting the disk on every request).
    public mutating func didRead(at now: Instant) {
        lastRead = now
        rejected = false
    }

    /// The server refused the token: read the file before the retry.
    public mutating func unauthorized() {
        rejected = true
    }
}
