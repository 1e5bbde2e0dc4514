/// How a service speaks TLS to its endpoints (`services[i].tls`, with `protocol: h2`): the
/// client context its connections are made from, and the settings it was built with.
///
/// Connections to endpoints outlive snapshots (they are filed by address), so a connection
/// is shared only between services whose settings are the same: `key` identifies them (the
/// settings and the trust bundle's bytes), and a reload that changes any of them opens new
/// connections while the old ones finish their streams.
///
/// Immutable; the context is read by every loop (`SSL_new` is thread-safe in OpenSSL 3).
public final class UpstreamTLS: Sendable, Hashable, CustomStringConvertible {
    /// SNI, and (with `verify`) the name the endpoint's certificate must carry. Nil: no SNI,
    /// and only the chain is checked.
    public let serverName: String?
    /// The trust bundle's path; nil: the system's trust store.
    public let ca: String?
    /// False: the endpoint's certificate is not checked at all.
    public let verify: Bool
    /// The client certificate's chain path, when one is sent.
    public let clientCertificate: String?
    /// Which connections may be shared (never 0: that is plain h2c).
    public let key: UInt64
    public let context: TLSContextHandle

    public init(
        serverName: String?, ca: String?, verify: Bool, clientCertificate: String?, key: UInt64,
        context: TLSContextHandle
    ) {
        self.serverName = serverName
        self.ca = ca
        self.verify = verify
        self.clientCertificate = clientCertificate
        self.key = key == 0 ? 1 : key
        self.context = context
    }

    public static func == (a: UpstreamTLS, b: UpstreamTLS) -> Bool { a.key == b.key }
    public func hash(into hasher: inout Hasher) { hasher.combine(key) }

    /// `tls server-name api.internal, verified against ca.pem`, for `sluice check`.
    public var description: String {
        let name = serverName.map { "server-name \($0), " } ?? ""
        return "tls \(name)\(context.summary)"
    }
}
