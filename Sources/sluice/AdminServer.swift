import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceRouting

/// The admin listener (`--admin-address`): a small HTTP/1.1 server on a NIO event loop of
/// its own, off the data path.
///
/// - `GET /healthz`: 200 `ok` while `healthy()` (event loops and, in kube mode, the
///   watchers), else 503.
/// - `GET /readyz`: 200 `ok` once `ready()` (kube: the first full sync is in force; run: the
///   loops run), else 503.
/// - Anything else: 404 (405 for another method on those paths).
///
/// Probes are read on the NIO thread; they must be cheap and thread-safe.
final class AdminServer: Sendable {
    struct Probes: Sendable {
        var healthy: @Sendable () -> Bool
        var ready: @Sendable () -> Bool
    }

    private let channel: any Channel

    /// Binds `address` on `group`. Throws when the address cannot be bound.
    init(address: SluiceRouting.SocketAddress, group: any EventLoopGroup, probes: Probes) throws {
        let host: String
        switch address.ip {
        case .v4: host = "\(address)".split(separator: ":").dropLast().joined(separator: ":")
        case .v6:
            let text = "\(address)"
            host = String(text.dropFirst().prefix(while: { $0 != "]" }))
        }
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(probes: probes))
                }
            }
            .bind(host: host, port: Int(address.port)).wait()
    }

    /// Stops listening (open probe connections finish on their own).
    func close() {
        try? channel.close().wait()
    }

    /// The answer to one request: status and a short text body.
    static func answer(method: HTTPMethod, uri: String, probes: Probes) -> (HTTPResponseStatus, String) {
        let path =
            uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let probe: (@Sendable () -> Bool)?
        switch path {
        case "/healthz": probe = probes.healthy
        case "/readyz": probe = probes.ready
        default: probe = nil
        }
        guard let probe else { return (.notFound, "not found\n") }
        guard method == .GET || method == .HEAD else { return (.methodNotAllowed, "method not allowed\n") }
        return probe() ? (.ok, "ok\n") : (.serviceUnavailable, "not ready\n")
    }
}

/// One admin connection: answers each request when its end arrives.
private final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let probes: AdminServer.Probes
    private var head: HTTPRequestHead?

    init(probes: AdminServer.Probes) {
        self.probes = probes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break
        case .end:
            guard let request = head else { return }
            head = nil
            let (status, text) = AdminServer.answer(method: request.method, uri: request.uri, probes: probes)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Content-Length", value: String(text.utf8.count))
            headers.add(name: "Cache-Control", value: "no-store")
            let keepAlive = request.isKeepAlive
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                promise: nil)
            if request.method != .HEAD {
                var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
                buffer.writeString(text)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
