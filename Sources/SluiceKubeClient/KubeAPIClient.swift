import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import SluiceKube

/// Requests to the API server over AsyncHTTPClient: the configured server and credentials,
/// `Accept: application/json`, a User-Agent, and a bearer token that is re-read and the
/// request retried once when the server answers 401. Any task; no state besides the token.
public final class KubeAPIClient: Sendable {
    public let config: KubeClientConfig
    private let http: HTTPClient
    private let tokens: BearerTokenSource
    public static let userAgent = "sluice/0.1 (service-loadbalancer)"

    /// Builds the HTTP client on `group`. Throws `KubeConfigError` for unusable certificates or
    /// keys. For `https`, the server is verified against the configured CA (the system roots
    /// when none is given); verification is never turned off.
    public init(config: KubeClientConfig, group: any EventLoopGroup) throws(KubeConfigError) {
        self.config = config
        tokens = BearerTokenSource(config.token)
        var configuration = HTTPClient.Configuration()
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(10))
        // A failed connect or handshake (an unreachable server, a CA that does not verify it)
        // fails the request at once: the watcher's own back-off with jitter retries it and
        // logs why, instead of the pool retrying silently until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .enabled(limit: .ratio(100))
        configuration.redirectConfiguration = .disallow
        if config.isHTTPS {
            configuration.tlsConfiguration = try Self.tls(config)
        }
        http = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
    }

    static func tls(_ config: KubeClientConfig) throws(KubeConfigError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        do {
            if let ca = config.certificateAuthorityPEM {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
            }
        } catch {
            throw .invalid("the cluster CA is not a PEM certificate bundle: \(error)")
        }
        if let certificate = config.clientCertificatePEM, let key = config.clientKeyPEM {
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
            } catch {
                throw .invalid("the client certificate or key is not usable PEM: \(error)")
            }
        }
        return tls
    }

    /// GETs `target` (path and query) and returns the whole body of a 2xx answer, at most
    /// `maxBytes` (after decompression). Throws `KubeAPIError` (`.status` for any other answer,
    /// `.tooLarge` for a longer body: refused by its Content-Length before any byte is read,
    /// or as soon as it outgrows the bound), or CancellationError.
    public func get(_ target: String, timeout: Duration, maxBytes: Int = 64 << 20) async throws -> Data {
        let response = try await send(target, timeout: timeout)
        do {
            let body = try await response.body.collect(upTo: maxBytes)
            return Data(body.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw KubeAPIError.tooLarge(limit: maxBytes)
        } catch {
            throw Self.mapped(error)
        }
    }

    /// GETs `target` and returns the 2xx response with its body still streaming (a watch).
    /// The caller reads `body` to its end or cancels its task. Throws like `get`.
    public func stream(_ target: String, timeout: Duration) async throws -> HTTPClientResponse {
        try await send(target, timeout: timeout)
    }

    private func send(_ target: String, timeout: Duration) async throws -> HTTPClientResponse {
        var response = try await execute(target, timeout: timeout)
        if response.status.code == 401, tokens.unauthorized() {
            _ = try? await response.body.collect(upTo: 1 << 20)
            response = try await execute(target, timeout: timeout)
        }
        guard (200..<300).contains(response.status.code) else {
            let code = Int(response.status.code)
            let retryAfter = RetryBackoff.retryAfter(header: response.headers.first(name: "Retry-After"))
            let body = (try? await response.body.collect(upTo: 1 << 20)).map { Array($0.readableBytesView) } ?? []
            let status = try? JSONDecoder().decode(KubeStatus.self, from: Data(body))
            let message = status?.message ?? String(decoding: body.prefix(200), as: UTF8.self)
            throw KubeAPIError.status(code: code, retryAfter: retryAfter, message: message)
        }
        return response
    }

    private func execute(_ target: String, timeout: Duration) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: config.server + target)
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        if let token = tokens.token() {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        do {
            return try await http.execute(request, timeout: .milliseconds(timeout.wholeMilliseconds))
        } catch {
            throw Self.mapped(error)
        }
    }

    /// Cancellation stays itself; a body the decompressor refused is `.malformed` (the server
    /// answered: not a reason to retry at the pace of an unreachable one); everything else
    /// becomes `.transport`.
    static func mapped(_ error: any Error) -> any Error {
        if error is CancellationError || error is KubeAPIError { return error }
        if let client = error as? HTTPClientError, client == .cancelled { return CancellationError() }
        if isDecompressionError(error) {
            return KubeAPIError.malformed(
                "the gzip response body was refused while inflating (\(error)): it grows past 100 times its "
                    + "compressed size, or is not valid gzip")
        }
        return KubeAPIError.transport(String(describing: error))
    }

    /// Whether `error` is NIO's `NIOHTTPDecompression.DecompressionError` (the limit set in
    /// `init`, or bad gzip). Recognised by its type's name: its module is AsyncHTTPClient's
    /// dependency, not this one's.
    static func isDecompressionError(_ error: any Error) -> Bool {
        String(reflecting: type(of: error)).hasSuffix("NIOHTTPDecompression.DecompressionError")
    }

    /// Closes the connections. Call once, after every request task has ended.
    public func shutdown() async {
        try? await http.shutdown()
    }
}
