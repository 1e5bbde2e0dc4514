/// Why a TLS context could not be built: which certificate, which of its files, and the
/// reason in OpenSSL's or the operating system's words.
public struct TLSSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file of a `TLSCertificateFiles` the problem lies in.
    public enum Field: String, Sendable, Hashable {
        case cert
        case key
        /// A client context's trust bundle.
        case ca
    }

    /// Index into the certificates given to `TLSContextBuilder.build`; -1 when the problem is
    /// not with one certificate (OpenSSL could not make a context at all).
    public var index: Int
    public var field: Field
    public var reason: String

    public init(index: Int, field: Field, reason: String) {
        self.index = index
        self.field = field
        self.reason = reason
    }

    public var description: String { "certificates[\(index)].\(field.rawValue): \(reason)" }
}
