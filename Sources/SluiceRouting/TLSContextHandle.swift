/// A server TLS context (an OpenSSL `SSL_CTX *`) owned by a routing snapshot.
///
/// SluiceRouting does not link OpenSSL: the context is built elsewhere (SluiceTLS) and handed
/// over with the function that frees it. The snapshot holds the handle for as long as any
/// loop may create sessions from it; sessions already made keep their own reference (OpenSSL
/// counts them), so dropping the handle on a reload does not cut open connections.
///
/// Immutable after construction; `pointer` is read by every loop (creating sessions from a
/// context is thread-safe in OpenSSL 3), which is why the class is `@unchecked Sendable`.
public final class TLSContextHandle: @unchecked Sendable {
    /// The `SSL_CTX *` to create sessions from (`SSL_new`).
    public let pointer: OpaquePointer
    /// What the context serves, for `sluice check` (e.g. the certificates' names).
    public let summary: String
    private let release: @Sendable (OpaquePointer) -> Void

    /// Takes ownership of `pointer`: `release` is called with it exactly once, when the
    /// handle is deinitialised.
    public init(pointer: OpaquePointer, summary: String, release: @escaping @Sendable (OpaquePointer) -> Void) {
        self.pointer = pointer
        self.summary = summary
        self.release = release
    }

    deinit {
        release(pointer)
    }
}
