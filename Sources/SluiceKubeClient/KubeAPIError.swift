/// Why a request to the API server did not give what was asked.
public enum KubeAPIError: Error, CustomStringConvertible {
    /// A non-2xx answer. `retryAfter` from a `Retry-After` header; `message` from the Status body.
    case status(code: Int, retryAfter: Duration?, message: String)
    /// Connecting, TLS or reading failed.
    case transport(String)
    /// No byte (not even a bookmark) for longer than the idle limit: the connection is taken
    /// for dead.
    case idle(Duration)
    /// A body that is not what the API promises.
    case malformed(String)
    /// A response body longer than the `limit` bytes the caller accepts: refused unread (by
    /// its Content-Length) or once that many bytes had come.
    case tooLarge(limit: Int)

    public var description: String {
        switch self {
        case .status(let code, _, let message): return "HTTP \(code)\(message.isEmpty ? "" : ": \(message)")"
        case .transport(let reason): return reason
        case .idle(let limit): return "no data for \(limit.wholeSeconds) s: connection taken for dead"
        case .malformed(let reason): return reason
        case .tooLarge(let limit): return "the response body is larger than \(Self.size(limit)); refused"
        }
    }

    /// `64 MiB` for whole mebibytes, `1000 bytes` otherwise (log lines).
    static func size(_ bytes: Int) -> String {
        bytes >= 1 << 20 && bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
    }

    /// 410 Gone: the resourceVersion (or continue token) is too old; list again.
    public var isGone: Bool {
        if case .status(410, _, _) = self { return true }
        return false
    }

    /// How the back-off treats it: only a transport failure means no server answered.
    public var failure: RetryBackoff.Failure {
        if case .transport = self { return .unreachable }
        return .answered
    }

    public var retryAfter: Duration? {
        if case .status(_, let retryAfter, _) = self { return retryAfter }
        return nil
    }
}

extension Duration {
    /// Whole seconds, for log lines and query parameters.
    public var wholeSeconds: Int64 { components.seconds }

    /// Whole milliseconds.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
