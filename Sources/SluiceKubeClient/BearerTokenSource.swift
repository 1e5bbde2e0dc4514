import Foundation
import Synchronization

/// The bearer token for each request, from a `KubeClientConfig.Token`, following
/// `TokenRefreshPolicy` for a token file. Any thread.
public final class BearerTokenSource: Sendable {
    private struct State {
        var policy: TokenRefreshPolicy
        var token: String?
    }

    private let source: KubeClientConfig.Token
    private let read: @Sendable (String) -> String?
    private let state: Mutex<State>

    /// `read` returns a file's content, or nil when it cannot be read (injected by tests).
    public init(
        _ source: KubeClientConfig.Token, interval: Duration = .seconds(60),
        read: @escaping @Sendable (String) -> String? = BearerTokenSource.readFile
    ) {
        self.source = source
        self.read = read
        state = Mutex(State(policy: TokenRefreshPolicy(interval: interval)))
    }

    /// The token to send now (nil: send none). Reads the file when the policy says so; a
    /// failed read keeps the previous token.
    public func token(now: ContinuousClock.Instant = .now) -> String? {
        switch source {
        case .none: return nil
        case .literal(let token): return token
        case .file(let path):
            return state.withLock { state in
                if state.policy.needsRead(now: now) {
                    if let text = read(path) {
                        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
                        if !trimmed.isEmpty { state.token = trimmed }
                    }
                    state.policy.didRead(at: now)
                }
                return state.token
            }
        }
    }

    /// The server answered 401: the next `token` re-reads the file. Returns whether a retry
    /// can send anything new (only a token file can change).
    public func unauthorized() -> Bool {
        guard case .file = source else { return false }
        state.withLock { $0.policy.unauthorized() }
        return true
    }

    public static let readFile: @Sendable (String) -> String? = { path in
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }
}
