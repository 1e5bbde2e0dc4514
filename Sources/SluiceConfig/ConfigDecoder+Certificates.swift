import SluiceRouting
import SluiceTLS
import Yams

/// The `certificates` of a terminating tls listener, and the TLS context built from them.
extension ConfigDecoder {
    /// The certificate files of `node` (a sequence of `cert`/`key` mappings), relative paths
    /// resolved against the configuration file's directory, with the nodes that name each file
    /// for reports. nil after a report.
    mutating func certificateFiles(_ node: Node, path: String) -> [(files: TLSCertificateFiles, nodes: [Node])]? {
        guard let items = sequence(node, path: path) else { return nil }
        guard !items.isEmpty else {
            report(path, at: node, "at least one certificate is required")
            return nil
        }
        var result: [(files: TLSCertificateFiles, nodes: [Node])] = []
        var valid = true
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let entry = fields(item, path: itemPath, known: ["cert", "key"]) else {
                valid = false
                continue
            }
            let certNode = required(entry, "cert")
            let keyNode = required(entry, "key")
            let cert = certNode.flatMap { name($0, path: "\(itemPath).cert") }
            let key = keyNode.flatMap { name($0, path: "\(itemPath).key") }
            guard let cert, let key, let certNode, let keyNode else {
                valid = false
                continue
            }
            result.append((TLSCertificateFiles(cert: resolve(cert), key: resolve(key)), [certNode, keyNode]))
        }
        return valid ? result : nil
    }

    /// The listener's TLS context, or nil after reporting on the file that failed.
    /// Reads the certificate and key files (blocking).
    mutating func tlsContext(
        _ certificates: [(files: TLSCertificateFiles, nodes: [Node])], node: Node, path: String
    ) -> TLSContextHandle? {
        do {
            return try TLSContextBuilder.build(certificates: certificates.map(\.files))
        } catch {
            guard certificates.indices.contains(error.index) else {
                report(path, at: node, error.reason)
                return nil
            }
            let field = error.field == .cert ? 0 : 1
            report(
                "\(path)[\(error.index)].\(error.field.rawValue)", at: certificates[error.index].nodes[field],
                error.reason)
            return nil
        }
    }

    /// `path` as written when absolute; otherwise relative to the directory of the
    /// configuration file (as `file` names it), so a file may name its certificates next to
    /// it wherever sluice is started.
    func resolve(_ path: String) -> String {
        guard !path.hasPrefix("/"), let slash = file.lastIndex(of: "/") else { return path }
        return String(file[...slash]) + path
    }
}
