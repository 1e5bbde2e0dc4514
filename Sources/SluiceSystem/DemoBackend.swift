import CShims
import Glibc

/// A tiny blocking HTTP responder on a thread of its own, for `sluice demo`: every
/// connection gets one `200 OK` whose body names the backend, then a close. Not for the data
/// path: one thread, blocking calls, one connection at a time.
public final class DemoBackend: Sendable {
    public let name: String
    public let port: UInt16
    private let fd: Int32

    /// Listens on 127.0.0.1 on a port the kernel picks.
    public init(name: String) throws(Errno) {
        self.name = name
        fd = try Socket.listen(on: SystemAddress(ip: .v4(0x7F00_0001), port: 0), backlog: 128)
        port = try Socket.localAddress(fd).port
    }

    public func start() {
        _ = Threads.spawn { [self] in serve() }
    }

    private func serve() {
        let body = "hello from \(name)\n"
        let response = Array(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
                .utf8)
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var request = [UInt8](repeating: 0, count: 4096)
        while true {
            _ = poll(&pollfd, 1, -1)
            guard case .done(let accepted)? = try? Socket.accept(fd) else { continue }
            let client = accepted.fd
            // Blocking from here: wait for the request head, answer, close.
            _ = fcntl(client, F_SETFL, 0)
            var seen = 0
            while seen < request.count {
                let n = request.withUnsafeMutableBytes { read(client, $0.baseAddress! + seen, $0.count - seen) }
                if n <= 0 { break }
                seen += n
                if request[0..<seen].windows(ofCount: 4).contains(where: { $0.elementsEqual([13, 10, 13, 10]) }) {
                    break
                }
            }
            _ = response.withUnsafeBytes { sluice_send(client, $0.baseAddress, $0.count) }
            Syscall.close(client)
        }
    }

    /// A blocking HTTP GET to 127.0.0.1:`port` with `Host: host`; returns the response
    /// body, or nil.
    public static func get(port: UInt16, host: String = "demo") -> String? {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { return nil }
        defer { Glibc.close(s) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let address = SystemAddress(ip: .v4(0x7F00_0001), port: port)
        let connected = (try? address.withSockaddr { (sa, len) throws(Errno) in Glibc.connect(s, sa, len) }) ?? -1
        guard connected == 0 else { return nil }
        let request = Array("GET / HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { sluice_send(s, $0.baseAddress, $0.count) }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(s, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            reply += chunk[0..<n]
        }
        guard let head = reply.windows(ofCount: 4).first(where: { $0.elementsEqual([13, 10, 13, 10]) }) else {
            return nil
        }
        return String(decoding: reply[head.endIndex...], as: UTF8.self)
    }
}

extension Collection {
    fileprivate func windows(ofCount n: Int) -> [SubSequence] {
        guard count >= n else { return [] }
        var result: [SubSequence] = []
        var start = startIndex
        var end = index(start, offsetBy: n)
        while true {
            result.append(self[start..<end])
            if end == endIndex { break }
            formIndex(after: &start)
            formIndex(after: &end)
        }
        return result
    }
}
