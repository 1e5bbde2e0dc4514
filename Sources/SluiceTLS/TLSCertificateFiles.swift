/// One certificate of a terminating listener, as PEM files.
public struct TLSCertificateFiles: Sendable, Hashable {
    /// The chain: the leaf certificate first, then its intermediates.
    public var cert: String
    /// The leaf's private key, unencrypted.
    public var key: String

    public init(cert: String, key: String) {
        self.cert = cert
        self.key = key
    }
}
