import CShims
import SluiceRouting

/// Builds the server TLS context of a terminating listener from its certificate files.
///
/// Runs on the control thread (start-up and reload); blocks on file I/O. The context's
/// settings (versions, ciphers, ALPN, session resumption, selection by SNI) are fixed in
/// `CShims/tls_context.c`.
public enum TLSContextBuilder {
    /// A context serving `certificates`, the first being the default for clients that send no
    /// server name or one no certificate covers. Each certificate is chosen by its SAN DNS
    /// names (its subject CN when it has none): an exact name first, then `*.domain`.
    ///
    /// Throws for the first certificate whose file cannot be read, holds no PEM certificate or
    /// key, or whose key does not match. The handle owns the context; sessions created from it
    /// keep it alive after the handle is gone.
    public static func build(certificates: [TLSCertificateFiles]) throws(TLSSetupError) -> TLSContextHandle {
        precondition(!certificates.isEmpty, "a TLS context needs at least one certificate")
        var reason = [CChar](repeating: 0, count: 512)
        guard let context = sluice_tls_ctx_new(&reason, reason.count) else {
            throw TLSSetupError(index: -1, field: .cert, reason: text(reason))
        }
        for (index, files) in certificates.enumerated() {
            let status = sluice_tls_ctx_add_certificate(context, files.cert, files.key, &reason, reason.count)
            guard status == 0 else {
                sluice_tls_ctx_free(context)
                // -2: the key file; -3: the key does not match (reported on the key); else the certificate.
                throw TLSSetupError(
                    index: index, field: status == -2 || status == -3 ? .key : .cert, reason: text(reason))
            }
        }
        return TLSContextHandle(
            pointer: OpaquePointer(context), summary: summary(context),
            release: { sluice_tls_ctx_free(UnsafeMutableRawPointer($0)) })
    }

    /// A client context for TLS to a service's endpoints, offering ALPN `h2`: the chain is
    /// checked against `ca` (a PEM bundle; nil: the system's trust store) when `verify`, and
    /// `certificate` is sent when an endpoint asks for one.
    ///
    /// Throws with the reason, naming the file, when a file cannot be read or holds no PEM
    /// certificate or key, or the key does not match. Blocks on file I/O (control thread).
    public static func buildClient(ca: String?, verify: Bool, certificate: TLSCertificateFiles?) throws(TLSSetupError)
        -> TLSContextHandle
    {
        var reason = [CChar](repeating: 0, count: 512)
        guard
            let context = sluice_tls_client_ctx_new(
                ca, verify ? 1 : 0, certificate?.cert, certificate?.key, &reason, reason.count)
        else {
            let text = text(reason)
            let field: TLSSetupError.Field =
                certificate.map { files in
                    if text.contains("'\(files.key)'") { return .key }
                    return text.contains("'\(files.cert)'") ? .cert : .ca
                } ?? .ca
            throw TLSSetupError(index: -1, field: field, reason: text)
        }
        let checked = verify ? "verified against \(ca ?? "the system's trust store")" : "not verified"
        return TLSContextHandle(
            pointer: OpaquePointer(context),
            summary: certificate.map { "\(checked), client certificate \($0.cert)" } ?? checked,
            release: { sluice_tls_ctx_free(UnsafeMutableRawPointer($0)) })
    }

    /// The names each certificate of `context` answers to, in the order they were given.
    public static func certificateNames(_ context: OpaquePointer) -> [[String]] {
        let raw = UnsafeMutableRawPointer(context)
        return (0..<sluice_tls_ctx_certificate_count(raw)).map { certificate in
            (0..<sluice_tls_ctx_certificate_name_count(raw, certificate)).compactMap { name in
                sluice_tls_ctx_certificate_name(raw, certificate, name).map { String(cString: $0) }
            }
        }
    }

    /// `a.example.com, www.example.com (default); *.apps.example.com`, for `sluice check`.
    private static func summary(_ context: UnsafeMutableRawPointer) -> String {
        let names = certificateNames(OpaquePointer(context))
        return names.enumerated().map { index, names in
            let text = names.isEmpty ? "(no names)" : names.joined(separator: ", ")
            return index == 0 ? "\(text) (default)" : text
        }.joined(separator: "; ")
    }

    private static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
