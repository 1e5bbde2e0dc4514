import SluiceRouting
import SluiceTLS
import Yams

/// A service's `tls` section: how `protocol: h2` speaks TLS to the endpoints.
///
/// ```yaml
/// tls:
///   serverName: api.internal    # SNI, and the name the certificate must carry
///   ca: internal-ca.pem         # trust bundle (default: the system's trust store)
///   verify: true                # false: the certificate is not checked (test setups only)
///   certificate: {cert: client.pem, key: client.key}   # sent when an endpoint asks
/// ```
extension ConfigDecoder {
    /// The service's TLS to its endpoints, or nil after a report (or when `protocol` is not
    /// `h2`, which is reported when a `tls` section is given). `h2` without a section gets
    /// the defaults: the system's trust store, no SNI, the chain checked.
    mutating func upstreamTLS(_ entry: Fields, path: String, protocol proto: UpstreamProtocol?) -> UpstreamTLS? {
        let node = entry["tls"]
        guard proto == .h2 else {
            if let node {
                report(
                    "\(path).tls", at: node,
                    "TLS to the endpoints is spoken with 'protocol: h2' (this service's protocol is "
                        + "\(proto?.rawValue ?? UpstreamProtocol.http1.rawValue))")
            }
            return nil
        }
        let tlsPath = "\(path).tls"
        var serverName: String? = nil
        var ca: String? = nil
        var verify = true
        var certificate: TLSCertificateFiles? = nil
        var reportNode = entry["protocol"]
        if let node {
            reportNode = node
            guard
                let fields = fields(node, path: tlsPath, known: ["serverName", "ca", "verify", "certificate"])
            else { return nil }
            var valid = true
            if let nameNode = fields["serverName"] {
                serverName = self.serverName(nameNode, path: "\(tlsPath).serverName")
                if serverName == nil { valid = false }
            }
            if let verifyNode = fields["verify"] {
                guard let value = bool(verifyNode, path: "\(tlsPath).verify") else { return nil }
                verify = value
            }
            if let caNode = fields["ca"] {
                guard let file = name(caNode, path: "\(tlsPath).ca") else { return nil }
                if !verify {
                    report("\(tlsPath).ca", at: caNode, "a trust bundle is not used with 'verify: false'; remove one")
                    valid = false
                }
                ca = resolve(file)
            }
            if let certificateNode = fields["certificate"] {
                certificate = clientCertificate(certificateNode, path: "\(tlsPath).certificate")
                if certificate == nil { valid = false }
            }
            guard valid else { return nil }
        }
        let context: TLSContextHandle
        do {
            context = try TLSContextBuilder.buildClient(ca: ca, verify: verify, certificate: certificate)
        } catch {
            let field: String
            switch error.field {
            case .ca: field = ca == nil ? tlsPath : "\(tlsPath).ca"
            case .cert: field = "\(tlsPath).certificate.cert"
            case .key: field = "\(tlsPath).certificate.key"
            }
            if let reportNode { report(field, at: reportNode, error.reason) }
            return nil
        }
        return UpstreamTLS(
            serverName: serverName, ca: ca, verify: verify, clientCertificate: certificate?.cert,
            key: Self.upstreamTLSKey(serverName: serverName, ca: ca, verify: verify, certificate: certificate),
            context: context)
    }

    /// A host name (letters, digits, `-`, `.`; no wildcard) or an IP address.
    private mutating func serverName(_ node: Node, path: String) -> String? {
        guard let text = name(node, path: path) else { return nil }
        let literal = text.contains(":") ? "[\(text)]:1" : "\(text):1"
        if text.first?.isNumber == true || text.contains(":"), case .success = SocketAddress.parse(literal) {
            return text
        }
        let allowed = text.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D
                || $0 == 0x2E
        }
        guard allowed, text.utf8.count <= 253, !text.hasPrefix("."), !text.contains("..") else {
            report(path, at: node, "'\(text)' is not a host name or an IP address")
            return nil
        }
        return text.lowercased()
    }

    /// `{cert, key}`, paths resolved against the configuration file's directory.
    private mutating func clientCertificate(_ node: Node, path: String) -> TLSCertificateFiles? {
        guard let fields = fields(node, path: path, known: ["cert", "key"]) else { return nil }
        let cert = required(fields, "cert").flatMap { name($0, path: "\(path).cert") }
        let key = required(fields, "key").flatMap { name($0, path: "\(path).key") }
        guard let cert, let key else { return nil }
        return TLSCertificateFiles(cert: resolve(cert), key: resolve(key))
    }

    /// What makes two services' endpoint connections interchangeable: the settings and the
    /// bytes of the files they name (a renewed bundle or certificate opens new connections).
    static func upstreamTLSKey(serverName: String?, ca: String?, verify: Bool, certificate: TLSCertificateFiles?)
        -> UInt64
    {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func add(_ text: String?) {
            for byte in (text ?? "\u{1}").utf8 {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
            }
            hash = (hash ^ 0xff) &* 0x100_0000_01b3
        }
        func addFile(_ path: String?) {
            guard let path else { return add(nil) }
            add(path)
            if case .success(let text) = ConfigFile.contents(atPath: path) { add(text) }
        }
        add(serverName)
        add(verify ? "verify" : "none")
        addFile(ca)
        addFile(certificate?.cert)
        addFile(certificate?.key)
        return hash
    }
}
