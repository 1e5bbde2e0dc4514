import Foundation
import Yams

/// `--kubeconfig FILE`: the current context's cluster and user, as kubectl reads them.
///
/// Supported: `server`, `certificate-authority` / `certificate-authority-data`, `token`,
/// `tokenFile`, `client-certificate(-data)`, `client-key(-data)`. Relative file paths are
/// relative to the kubeconfig's directory. Refused rather than ignored: `insecure-skip-tls-verify`
/// (the server is always verified), `exec` and `auth-provider` plugins, and basic auth.
extension KubeClientConfig {
    public static func kubeconfig(path: String) throws(KubeConfigError) -> KubeClientConfig {
        let bytes = try readFile(path, what: "the kubeconfig")
        let directory = (path as NSString).deletingLastPathComponent
        return try kubeconfig(text: String(decoding: bytes, as: UTF8.self), directory: directory)
    }

    /// Parses kubeconfig `text`; files it names are read relative to `directory`.
    public static func kubeconfig(text: String, directory: String) throws(KubeConfigError) -> KubeClientConfig {
        let file: KubeconfigFile
        do {
            file = try YAMLDecoder().decode(KubeconfigFile.self, from: text)
        } catch {
            throw .invalid("kubeconfig: cannot parse: \(error)")
        }
        guard let contextName = file.currentContext, !contextName.isEmpty else {
            throw .invalid("kubeconfig: no current-context")
        }
        guard let context = file.contexts?.first(where: { $0.name == contextName })?.context else {
            throw .invalid("kubeconfig: current-context '\(contextName)' is not among the contexts")
        }
        guard let cluster = file.clusters?.first(where: { $0.name == context.cluster })?.cluster else {
            throw .invalid(
                "kubeconfig: context '\(contextName)' names cluster '\(context.cluster)', which is not defined")
        }
        guard var server = cluster.server, server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw .invalid("kubeconfig: cluster '\(context.cluster)' needs a server URL starting https:// or http://")
        }
        while server.hasSuffix("/") { server.removeLast() }
        if cluster.insecureSkipTLSVerify == true {
            throw .invalid("kubeconfig: insecure-skip-tls-verify is not supported; give the cluster's CA instead")
        }
        var config = KubeClientConfig(server: server)
        config.certificateAuthorityPEM = try material(
            data: cluster.certificateAuthorityData, file: cluster.certificateAuthority, directory: directory,
            what: "certificate-authority")
        guard let userName = context.user else { return config }
        guard let user = file.users?.first(where: { $0.name == userName })?.user else {
            throw .invalid("kubeconfig: context '\(contextName)' names user '\(userName)', which is not defined")
        }
        if user.exec != nil || user.authProvider != nil {
            throw .invalid("kubeconfig: user '\(userName)': exec and auth-provider plugins are not supported")
        }
        if user.username != nil || user.password != nil {
            throw .invalid("kubeconfig: user '\(userName)': basic authentication is not supported")
        }
        if let token = user.token, !token.isEmpty {
            config.token = .literal(token)
        } else if let tokenFile = user.tokenFile, !tokenFile.isEmpty {
            config.token = .file(resolve(tokenFile, in: directory))
        }
        config.clientCertificatePEM = try material(
            data: user.clientCertificateData, file: user.clientCertificate, directory: directory,
            what: "client-certificate")
        config.clientKeyPEM = try material(
            data: user.clientKeyData, file: user.clientKey, directory: directory, what: "client-key")
        if (config.clientCertificatePEM == nil) != (config.clientKeyPEM == nil) {
            throw .invalid(
                "kubeconfig: user '\(userName)': a client certificate needs its key, and the other way round")
        }
        return config
    }

    /// `*-data` (base64 PEM) wins over the file, as in kubectl.
    private static func material(
        data: String?, file: String?, directory: String, what: String
    ) throws(KubeConfigError) -> [UInt8]? {
        if let data, !data.isEmpty {
            let compact = data.filter { !$0.isWhitespace }
            guard let decoded = Data(base64Encoded: compact) else {
                throw .invalid("kubeconfig: \(what)-data is not base64")
            }
            return [UInt8](decoded)
        }
        if let file, !file.isEmpty {
            return try readFile(resolve(file, in: directory), what: "the kubeconfig's \(what)")
        }
        return nil
    }

    private static func resolve(_ path: String, in directory: String) -> String {
        if path.hasPrefix("/") || directory.isEmpty { return path }
        return directory + "/" + path
    }
}

/// The part of a kubeconfig that is read; everything else is ignored.
struct KubeconfigFile: Decodable {
    var currentContext: String?
    var clusters: [NamedCluster]?
    var contexts: [NamedContext]?
    var users: [NamedUser]?

    enum CodingKeys: String, CodingKey {
        case currentContext = "current-context"
        case clusters, contexts, users
    }

    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster
    }

    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }

    struct NamedContext: Decodable {
        var name: String
        var context: Context
    }

    struct Context: Decodable {
        var cluster: String
        var user: String?
        var namespace: String?
    }

    struct NamedUser: Decodable {
        var name: String
        var user: User
    }

    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var username: String?
        var password: String?
        var exec: Ignored?
        var authProvider: Ignored?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, username, password, exec
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }

    /// Present or not; its content does not matter.
    struct Ignored: Decodable {
        init(from decoder: any Decoder) throws {}
    }
}
