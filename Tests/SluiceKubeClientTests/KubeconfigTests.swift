import Foundation
import SluiceKubeClient
import Testing

@Suite("kubeconfig and in-cluster configuration")
struct KubeconfigTests {
    static let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    static var pemBase64: String { Data(pem.utf8).base64EncodedString() }

    static func document(cluster: String, user: String, current: String = "prod") -> String {
        """
        apiVersion: v1
        kind: Config
        current-context: \(current)
        contexts:
        - name: dev
          context: {cluster: other, user: nobody}
        - name: prod
          context:
            cluster: main
            user: admin
            namespace: web
        clusters:
        - name: other
          cluster: {server: "https://other.example:6443"}
        - name: main
          cluster:
        \(cluster)
        users:
        - name: nobody
          user: {token: wrong}
        - name: admin
          user:
        \(user)
        """
    }

    @Test func literalTokenAndInlineCAFromTheCurrentContext() throws {
        let text = Self.document(
            cluster: "    server: https://10.0.0.1:6443/\n    certificate-authority-data: \(Self.pemBase64)",
            user: "    token: abc.def")
        let config = try KubeClientConfig.kubeconfig(text: text, directory: "/nowhere")
        #expect(config.server == "https://10.0.0.1:6443")
        #expect(config.isHTTPS)
        #expect(config.certificateAuthorityPEM == Array(Self.pem.utf8))
        #expect(config.token == .literal("abc.def"))
        #expect(config.clientCertificatePEM == nil)
    }

    @Test func theCurrentContextNotTheFirstIsRead() throws {
        let text = Self.document(cluster: "    server: https://x:1", user: "    token: t", current: "dev")
        let config = try KubeClientConfig.kubeconfig(text: text, directory: "/")
        #expect(config.server == "https://other.example:6443")
        #expect(config.token == .literal("wrong"))
    }

    @Test func tokenFileAndFilesAreRelativeToTheKubeconfig() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ca.pem", Self.pem)
        try directory.write("client.crt", "CERT")
        try directory.write("client.key", "KEY")
        let text = Self.document(
            cluster: "    server: http://127.0.0.1:8080\n    certificate-authority: ca.pem",
            user:
                "    tokenFile: sa/token\n    client-certificate: client.crt\n    client-key: \(directory.path)/client.key"
        )
        try directory.write("config", text)
        let config = try KubeClientConfig.kubeconfig(path: directory.path + "/config")
        #expect(!config.isHTTPS)
        #expect(config.token == .file(directory.path + "/sa/token"))
        #expect(config.certificateAuthorityPEM == Array(Self.pem.utf8))
        #expect(config.clientCertificatePEM == Array("CERT".utf8))
        #expect(config.clientKeyPEM == Array("KEY".utf8))
    }

    @Test func clientCertificateDataWinsOverFiles() throws {
        let cert = Data("CERT".utf8).base64EncodedString()
        let key = Data("KEY".utf8).base64EncodedString()
        let text = Self.document(
            cluster: "    server: https://api:443",
            user: "    client-certificate-data: \(cert)\n    client-certificate: /missing\n    client-key-data: \(key)")
        let config = try KubeClientConfig.kubeconfig(text: text, directory: "/")
        #expect(config.clientCertificatePEM == Array("CERT".utf8))
        #expect(config.clientKeyPEM == Array("KEY".utf8))
        #expect(config.token == .none)
    }

    @Test(arguments: [
        ("    server: https://a:1\n    insecure-skip-tls-verify: true", "    token: t"),
        ("    server: ftp://a:1", "    token: t"),
        ("    server: https://a:1", "    exec: {command: aws}"),
        ("    server: https://a:1", "    username: u\n    password: p"),
        ("    server: https://a:1", "    client-certificate-data: \(Data("C".utf8).base64EncodedString())"),
        ("    server: https://a:1\n    certificate-authority-data: '***'", "    token: t"),
        ("    server: https://a:1\n    certificate-authority: /does/not/exist", "    token: t"),
    ])
    func refused(cluster: String, user: String) {
        #expect(throws: KubeConfigError.self) {
            try KubeClientConfig.kubeconfig(text: Self.document(cluster: cluster, user: user), directory: "/")
        }
    }

    @Test func missingCurrentContextIsRefused() {
        let text = Self.document(cluster: "    server: https://a:1", user: "    token: t", current: "gone")
        #expect(throws: KubeConfigError.self) { try KubeClientConfig.kubeconfig(text: text, directory: "/") }
    }

    @Test func inClusterBracketsIPv6AndReadsTheCA() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ca.crt", Self.pem)
        let v4 = try KubeClientConfig.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
            directory: directory.path)
        #expect(v4.server == "https://10.96.0.1:443")
        #expect(v4.token == .file(directory.path + "/token"))
        #expect(v4.certificateAuthorityPEM == Array(Self.pem.utf8))
        let v6 = try KubeClientConfig.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
            directory: directory.path)
        #expect(v6.server == "https://[fd00::1]:6443")
    }

    @Test func inClusterNeedsBothVariablesAndTheCA() throws {
        let directory = try TemporaryDirectory()
        #expect(throws: KubeConfigError.self) {
            try KubeClientConfig.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1"], directory: directory.path)
        }
        #expect(throws: KubeConfigError.self) {
            try KubeClientConfig.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                directory: directory.path)
        }
    }
}

/// A directory under the system temporary directory, removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "sluice-kube-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path + "/" + name))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
