import SluiceRouting
import Yams

/// PROXY protocol settings: `acceptProxy` on listeners, `proxyProtocol` on services, and the
/// rule that HTTP listeners do not send the header.
extension ConfigDecoder {
    /// A listener's `acceptProxy`: a sequence of address blocks (`10.0.0.0/8`, `::1/128`, or a
    /// bare address). Duplicates (after host bits are cleared) are reported against the first.
    /// nil when anything was reported.
    mutating func acceptProxy(_ node: Node, path: String) -> [CIDR]? {
        guard let items = sequence(node, path: path) else { return nil }
        var blocks: [CIDR] = []
        var firstIndexByBlock: [CIDR: Int] = [:]
        var valid = true
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard let text = name(item, path: itemPath) else {
                valid = false
                continue
            }
            switch CIDR.parse(text) {
            case .success(let block):
                if let first = firstIndexByBlock[block] {
                    report(itemPath, at: item, "\(block) is already listed at \(path)[\(first)]")
                    valid = false
                } else {
                    firstIndexByBlock[block] = index
                    blocks.append(block)
                }
            case .failure(let error):
                report(itemPath, at: item, "'\(text)' is not a valid address block: \(error)")
                valid = false
            }
        }
        return valid ? blocks : nil
    }

    /// A service's `proxyProtocol`: `v1` or `v2`.
    mutating func proxyVersion(_ node: Node, path: String) -> ProxyVersion? {
        guard let text = string(node, path: path) else { return nil }
        if let version = ProxyVersion(rawValue: text) { return version }
        let allowed = ProxyVersion.allCases.map(\.rawValue).joined(separator: ", ")
        report(path, at: node, "unknown PROXY protocol version '\(text)' (expected one of: \(allowed))")
        return nil
    }

    /// `serviceReference` for a route or default of an HTTP listener, which refuses services
    /// that expect a PROXY header: the HTTP proxy speaks HTTP to its endpoints and passes the
    /// client's address in X-Forwarded-For instead.
    mutating func httpServiceReference(_ node: Node, path: String, in services: ServiceTable?) -> Int? {
        guard let index = serviceReference(node, path: path, in: services), let services else { return nil }
        let entry = services.entries[index]
        if let version = entry.proxyProtocol {
            report(
                path, at: node,
                "service '\(entry.name)' has proxyProtocol \(version.rawValue), but an http listener sends no "
                    + "PROXY header (it passes the client's address in X-Forwarded-For); use it from a tcp or tls "
                    + "listener")
            return nil
        }
        return index
    }
}
