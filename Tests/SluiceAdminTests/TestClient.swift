import SluiceSystem

/// A blocking HTTP client over a real loopback socket, for the admin server tests: sends raw
/// bytes, reads whole responses (by Content-Length), tells when the server closed. Every wait
/// is bounded.
final class TestClient {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let fd: Int32
    private let epoll: Epoll
    private var buffer: [UInt8] = []
    private(set) var closed = false

    init(_ address: SystemAddress, timeoutMillis: Int32 = 5_000) throws {
        let (fd, connected) = try Socket.connect(to: address)
        self.fd = fd
        epoll = try Epoll(capacity: 4)
        try epoll.add(fd, events: Epoll.writable, data: 1)
        if !connected {
            guard epoll.wait(timeoutMillis: timeoutMillis) > 0 else { throw Failure(description: "connect timed out") }
            if let error = Socket.pendingError(fd) { throw error }
        }
        try epoll.modify(fd, events: Epoll.readable | Epoll.readHangup, data: 1)
    }

    deinit { Syscall.close(fd) }

    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let result = try bytes.withUnsafeBytes { (raw) throws(Errno) -> IOResult<Int> in
                try IO.write(fd, from: raw.baseAddress! + sent, count: raw.count - sent)
            }
            switch result {
            case .done(let n): sent += n
            case .wouldBlock: Threads.sleep(millis: 1)
            }
        }
    }

    /// Reads what arrives within `timeoutMillis`: false when nothing came (timeout), true
    /// when bytes came or the server closed (`closed`).
    @discardableResult
    func receive(timeoutMillis: Int32) -> Bool {
        guard !closed, epoll.wait(timeoutMillis: timeoutMillis) > 0 else { return closed }
        var chunk = [UInt8](repeating: 0, count: 65536)
        do {
            let result = try chunk.withUnsafeMutableBytes { (raw) throws(Errno) -> IOResult<Int> in
                try IO.read(fd, into: raw.baseAddress!, count: raw.count)
            }
            switch result {
            case .done(0): closed = true
            case .done(let n): buffer.append(contentsOf: chunk[0..<n])
            case .wouldBlock: break
            }
        } catch {
            closed = true
        }
        return true
    }

    /// The next whole response (`headOnly`: a HEAD's, with no body whatever its length).
    func response(headOnly: Bool = false, timeoutMillis: Int64 = 10_000) throws -> Response {
        let deadline = MonotonicClock.nowMillis() + timeoutMillis
        while true {
            if let response = try take(headOnly: headOnly) { return response }
            if closed { throw Failure(description: "closed before a whole response: \(bufferText)") }
            let left = deadline - MonotonicClock.nowMillis()
            if left <= 0 { throw Failure(description: "timed out waiting for a response: \(bufferText)") }
            receive(timeoutMillis: Int32(min(left, 1_000)))
        }
    }

    /// Waits until the server closes; true when it did within `timeoutMillis`.
    func waitClosed(timeoutMillis: Int64) -> Bool {
        let deadline = MonotonicClock.nowMillis() + timeoutMillis
        while !closed {
            let left = deadline - MonotonicClock.nowMillis()
            if left <= 0 { return false }
            receive(timeoutMillis: Int32(min(left, 1_000)))
        }
        return true
    }

    var bufferText: String { String(decoding: buffer, as: UTF8.self) }

    private func take(headOnly: Bool) throws -> Response? {
        let marker: [UInt8] = [13, 10, 13, 10]
        guard buffer.count >= 4,
            let end = (0...(buffer.count - 4)).first(where: { Array(buffer[$0..<($0 + 4)]) == marker })
        else { return nil }
        let head = String(decoding: buffer[0..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw Failure(description: "bad status line in \(head)")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: " ")
        }
        let length = headOnly ? 0 : Int(headers["content-length"] ?? "0") ?? 0
        let start = end + 4
        guard buffer.count >= start + length else { return nil }
        let body = Array(buffer[start..<(start + length)])
        buffer.removeFirst(start + length)
        return Response(status: status, headers: headers, body: body)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
