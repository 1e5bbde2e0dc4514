import Foundation

/// Where the API server is and how to prove who we are: what the in-cluster files or a
/// kubeconfig say, read once at start. Certificates and keys are PEM bytes; the bearer token
/// is either fixed or a file re-read by `BearerTokenSource`.
public struct KubeClientConfig: Sendable, Hashable {
    /// `scheme://host[:port][/prefix]`, without a trailing slash. `http` is accepted (for
    /// tests and local proxies); `https` always verifies the server against `certificateAuthorityPEM`
    /// (or the system roots when it is nil).
    public var server: String
    public var certificateAuthorityPEM: [UInt8]?
    public var token: Token
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?

    public enum Token: Sendable, Hashable {
        case none
        case literal(String)
        /// Re-read every minute and at once after a 401 (projected tokens expire).
        case file(String)
    }

    public init(
        server: String, certificateAuthorityPEM: [UInt8]? = nil, token: Token = .none,
        clientCertificatePEM: [UInt8]? = nil, clientKeyPEM: [UInt8]? = nil
    ) {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.token = token
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
    }

    public var isHTTPS: Bool { server.lowercased().hasPrefix("https://") }

    /// The default service-account directory a pod's token, CA and namespace are mounted in.
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The in-cluster configuration: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`
    /// (an IPv6 host bracketed), the CA from `<directory>/ca.crt` and the token file
    /// `<directory>/token`. Throws `KubeConfigError` when a variable is empty or the CA cannot
    /// be read; the token file is read later (and again), so it need not exist yet.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        directory: String = serviceAccountDirectory
    ) throws(KubeConfigError) -> KubeClientConfig {
        let host = environment["KUBERNETES_SERVICE_HOST"] ?? ""
        let port = environment["KUBERNETES_SERVICE_PORT"] ?? ""
        guard !host.isEmpty, !port.isEmpty else {
            throw .invalid(
                "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
                    + "(or pass --kubeconfig)")
        }
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let caPath = directory + "/ca.crt"
        let ca = try readFile(caPath, what: "the cluster CA")
        return KubeClientConfig(
            server: "https://\(bracketed):\(port)", certificateAuthorityPEM: ca, token: .file(directory + "/token"))
    }

    static func readFile(_ path: String, what: String) throws(KubeConfigError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalid("cannot read \(what) from \(path)")
        }
        return [UInt8](data)
    }
}

public enum KubeConfigError: Error, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let reason): return reason
        }
    }
}
