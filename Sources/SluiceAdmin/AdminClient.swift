import SluiceRouting
import SluiceSystem
import SluiceWire

/// A one-shot HTTP/1.1 GET for `sluice top`: connect, send, read to the end, parse. Blocks
/// the calling thread (never a loop's) for at most `timeoutMillis` in all.
public enum AdminClient {
    public struct Response: Sendable {
        public var status: UInt16
        public var body: [UInt8]
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public static func get(_ address: SluiceRouting.SocketAddress, path: String, timeoutMillis: Int64 = 5_000)
        throws(Failure) -> Response
    {
        let deadline = MonotonicClock.nowMillis() + timeoutMillis
        let system: SystemAddress
        switch address.ip {
        case .v4(let a): system = SystemAddress(ip: .v4(a), port: address.port)
        case .v6(let hi, let lo): system = SystemAddress(ip: .v6(hi, lo), port: address.port)
        }
        let epoll: Epoll
        do {
            epoll = try Epoll(capacity: 2)
        } catch {
            throw Failure(description: "epoll: \(error)")
        }
        let fd: Int32
        do {
            fd = try Socket.connect(to: system).fd
        } catch {
            throw Failure(description: "\(address): \(error)")
        }
        defer { Syscall.close(fd) }
        do {
            try epoll.add(fd, events: Epoll.writable, data: 1)
            try wait(epoll, until: deadline, what: "connect to \(address)")
            if let error = Socket.pendingError(fd) { throw Failure(description: "\(address): \(error)") }
            try epoll.modify(fd, events: Epoll.readable, data: 1)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(address): \(error)")
        }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let result: IOResult<Int>
            do {
                result = try request.withUnsafeBytes { (bytes) throws(Errno) -> IOResult<Int> in
                    try IO.write(fd, from: bytes.baseAddress! + sent, count: bytes.count - sent)
                }
            } catch {
                throw Failure(description: "\(address): \(error)")
            }
            switch result {
            case .done(let n): sent += n
            case .wouldBlock: Threads.sleep(millis: 1)
            }
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let result: IOResult<Int>
            do {
                result = try chunk.withUnsafeMutableBytes { (bytes) throws(Errno) -> IOResult<Int> in
                    try IO.read(fd, into: bytes.baseAddress!, count: bytes.count)
                }
            } catch {
                throw Failure(description: "\(address): \(error)")
            }
            switch result {
            case .done(0):
                return try parse(received, address: address)
            case .done(let n):
                received.append(contentsOf: chunk[0..<n])
            case .wouldBlock:
                try wait(epoll, until: deadline, what: "the answer of \(address)")
            }
        }
    }

    private static func wait(_ epoll: borrowing Epoll, until deadline: Int64, what: String) throws(Failure) {
        let left = deadline - MonotonicClock.nowMillis()
        guard left > 0, epoll.wait(timeoutMillis: Int32(min(left, 60_000))) > 0 else {
            throw Failure(description: "timed out waiting for \(what)")
        }
    }

    /// The status and body of a whole response read to its end.
    static func parse(_ bytes: [UInt8], address: SluiceRouting.SocketAddress) throws(Failure) -> Response {
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 64)
        defer { fields.deallocate() }
        var scanner = HeadScanner()
        let limits = HTTPLimits()
        let parsed: Result<Response, Failure> = bytes.withUnsafeBytes { raw in
            guard case .complete(let length) = scanner.scan(raw, limits: limits),
                case .success(let head) = HTTPResponseParser.parse(
                    UnsafeRawBufferPointer(rebasing: raw[0..<Int(length)]), fields: fields, limits: limits)
            else { return .failure(Failure(description: "\(address) did not answer with an HTTP response")) }
            var body = Array(raw[Int(length)...])
            if let n = head.contentLength {
                guard body.count >= Int(n) else {
                    return .failure(Failure(description: "\(address) closed after \(body.count) of \(n) body bytes"))
                }
                body = Array(body[0..<Int(n)])
            }
            return .success(Response(status: head.status, body: body))
        }
        return try parsed.get()
    }
}
