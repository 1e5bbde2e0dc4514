import Glibc
import Logging
import SluiceReactor
import SluiceRouting
import SluiceSystem
import Synchronization

// Real sockets on loopback for the reactor tests: blocking clients with receive timeouts,
// backends on their own threads, and a reactor started on hand-built snapshots. Every wait
// is bounded (10 s) and ends on an event, never on a sleep alone.

enum Net {
    static let loopback: UInt32 = 0x7F00_0001

    static func address(_ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr = in_addr(s_addr: loopback.bigEndian)
        return a
    }

    /// A listening socket on 127.0.0.1 with a port the kernel chose.
    static func listen() -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var a = address(0)
        let bound = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(bound == 0 && Glibc.listen(fd, 128) == 0)
        return (fd, localPort(fd))
    }

    /// A port free at this moment (the reactor binds it itself; callers retry on a clash).
    static func freePort() -> UInt16 {
        let (fd, port) = listen()
        Glibc.close(fd)
        return port
    }

    /// A port for a listener the reactor binds: each call in this process gets another one,
    /// below the kernel's ephemeral range (where `listen()` and clients' source ports come
    /// from). The reactor binds with SO_REUSEPORT, so two proxies of tests running at once
    /// could otherwise both bind a port the kernel handed out twice and split its clients.
    static func listenerPort() -> UInt16 {
        let next = listenerPorts.add(1, ordering: .relaxed).oldValue
        return UInt16(listenerPortBase + next % listenerPortSpan)
    }

    private static let listenerPortBase = 20_000
    private static let listenerPortSpan = 12_000
    private static let listenerPorts = Atomic<Int>(Int(getpid()) % 12_000)

    static func localPort(_ fd: Int32) -> UInt16 {
        var a = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: a.sin_port)
    }

    /// A blocking client connected to 127.0.0.1:`port`, reads bounded by 10 s.
    static func connect(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        setTimeout(fd, seconds: 10)
        var a = address(port)
        let result = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(result == 0, "connect to \(port): errno \(errno)")
        return fd
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var t = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    static func send(_ fd: Int32, _ text: String) { send(fd, Array(text.utf8)) }

    /// What one read returns; nil at the end of the stream, on an error or a timeout.
    static func receive(_ fd: Int32, max: Int = 65536) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
        return n > 0 ? Array(buffer[0..<n]) : nil
    }

    /// Bytes until the peer closes (or the timeout).
    static func receiveAll(_ fd: Int32) -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = receive(fd) { all += chunk }
        return all
    }

    /// Closes with a reset (SO_LINGER 0).
    static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(fd)
    }
}

/// One HTTP response as read by the client.
struct Response {
    var status: Int
    var head: String
    var body: [UInt8]
    /// Bytes of head and body as received.
    var size: Int

    func field(_ name: String) -> String? {
        for line in head.split(separator: "\r\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() {
                return parts[1].trimmingPrefix(" ").description
            }
        }
        return nil
    }
}

/// Reads one response (Content-Length bodies, or until close); `pending` keeps bytes read
/// past it. Nil when the connection ended before a whole head.
func readResponse(_ fd: Int32, pending: inout [UInt8]) -> Response? {
    var bytes = pending
    pending = []
    func headEnd() -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
    var end = headEnd()
    while end == nil {
        guard let chunk = Net.receive(fd) else { return nil }
        bytes += chunk
        end = headEnd()
    }
    let head = String(decoding: bytes[0..<end!], as: UTF8.self)
    let statusText = head.split(separator: " ").dropFirst().first ?? ""
    var response = Response(status: Int(statusText) ?? 0, head: head, body: [], size: 0)
    if let length = response.field("Content-Length").flatMap({ Int($0) }) {
        while bytes.count < end! + length {
            guard let chunk = Net.receive(fd) else { break }
            bytes += chunk
        }
        let bodyEnd = min(bytes.count, end! + length)
        response.body = Array(bytes[end!..<bodyEnd])
        pending = Array(bytes[bodyEnd...])
        response.size = bodyEnd
    } else {
        while let chunk = Net.receive(fd) { bytes += chunk }
        response.body = Array(bytes[end!...])
        response.size = bytes.count
    }
    return response
}

func readResponse(_ fd: Int32) -> Response? {
    var pending: [UInt8] = []
    return readResponse(fd, pending: &pending)
}

/// A backend on 127.0.0.1: one thread accepting, one per connection. `reply` decides what
/// each request (its head, as text) gets; tcp backends echo.
final class TestBackend: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `heads` and `held` are behind their mutexes; the rest
    // is set in `init`.
    enum Reply: Sendable {
        /// These bytes, then keep the connection for the next request.
        case respond([UInt8])
        /// Read the request, then close with a reset.
        case reset
        /// Never answer; wait until the peer closes or `release()`, then answer with these.
        case hold([UInt8])
        /// Nothing (echo backends).
        case echo
    }

    let port: UInt16
    private let fd: Int32
    private let reply: @Sendable (String) -> Reply
    private let heads = Mutex<[String]>([])
    private let released = Mutex(false)
    private let held = CountdownLatch(count: 1)
    private var acceptor: ThreadHandle?

    /// Echoes every byte (a tcp backend) instead of answering requests.
    private let echo: Bool

    init(echo: Bool = false, _ reply: @escaping @Sendable (String) -> Reply = { _ in .echo }) {
        (fd, port) = Net.listen()
        self.reply = reply
        self.echo = echo
        acceptor = Threads.spawn { [self] in acceptLoop() }
    }

    static func ok(_ body: String = "hello", status: Int = 200, close: Bool = false) -> [UInt8] {
        let reason = status == 200 ? "OK" : "Status"
        let connection = close ? "Connection: close\r\n" : ""
        return Array(
            "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(body.utf8.count)\r\n\(connection)\r\n\(body)".utf8)
    }

    /// The request heads received so far, in order.
    var requests: [String] { heads.withLock { $0 } }

    /// Lets every held request be answered.
    func release() {
        released.withLock { $0 = true }
        held.countDown()
    }

    /// Waits until `count` request heads arrived.
    func waitForRequests(_ count: Int) -> Bool {
        for _ in 0..<1000 {
            if heads.withLock({ $0.count }) >= count { return true }
            Threads.sleep(millis: 10)
        }
        return false
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        acceptor?.join()
        Glibc.close(fd)
    }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            Net.setTimeout(client, seconds: 10)
            _ = Threads.spawn { [self] in serve(client) }
        }
    }

    private func serve(_ client: Int32) {
        var bytes: [UInt8] = []
        while true {
            // One request head at a time.
            var end: Int? = nil
            while end == nil {
                if bytes.count >= 4 {
                    for i in 0...(bytes.count - 4)
                    where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
                        end = i + 4
                        break
                    }
                }
                if end != nil { break }
                guard let chunk = Net.receive(client) else {
                    Glibc.close(client)
                    return
                }
                if echo {
                    Net.send(client, chunk)
                    continue
                }
                bytes += chunk
            }
            let head = String(decoding: bytes[0..<end!], as: UTF8.self)
            bytes.removeFirst(end!)
            heads.withLock { $0.append(head) }
            switch reply(head) {
            case .respond(let answer):
                Net.send(client, answer)
            case .reset:
                Net.reset(client)
                return
            case .hold(let answer):
                // Answer once released; a peer that leaves first ends the wait.
                var pollfd = Glibc.pollfd(fd: client, events: Int16(POLLIN), revents: 0)
                while !released.withLock({ $0 }) {
                    if poll(&pollfd, 1, 10) > 0 {
                        Glibc.close(client)
                        return
                    }
                }
                Net.send(client, answer)
            case .echo:
                break
            }
        }
    }
}

/// A reactor of one loop on `snapshot`, started; listener ports come from `make(port)` and
/// are tried again when one was taken meanwhile.
final class TestProxy {
    let reactor: Reactor
    let port: UInt16
    private(set) var snapshot: RoutingSnapshot

    init(accessLog: Int = 256, _ make: (UInt16) -> RoutingSnapshot) throws {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        var attempt = 0
        while true {
            let port = Net.listenerPort()
            let snapshot = make(port)
            do {
                reactor = try Reactor(workers: 1, snapshot: snapshot, logger: logger, accessLogCapacity: accessLog)
                self.port = port
                self.snapshot = snapshot
                break
            } catch {
                attempt += 1
                if attempt > 5 { throw error }
            }
        }
        reactor.start()
    }

    func apply(_ next: RoutingSnapshot) throws {
        try reactor.apply(next)
        snapshot = next
    }

    func stop() {
        reactor.drain(graceMillis: 0)
        reactor.join()
    }

    /// The loop's metrics now.
    func sample() -> LoopMetricsSample {
        guard let samples = reactor.collect(timeoutMillis: 10_000), let first = samples.first else {
            preconditionFailure("the loop did not answer a collect")
        }
        return first
    }

    /// The first sample for which `condition` holds, within 10 s (the last one otherwise).
    func sample(until condition: (LoopMetricsSample) -> Bool) -> LoopMetricsSample {
        var last = sample()
        for _ in 0..<1000 {
            if condition(last) { return last }
            Threads.sleep(millis: 10)
            last = sample()
        }
        return last
    }

    private var taken: [AccessRecord] = []

    /// Every record published so far, after waiting (10 s at most) until there are `count`.
    func records(atLeast count: Int) -> [AccessRecord] {
        for _ in 0..<1000 {
            for ring in reactor.accessLogRings { ring.drain { taken.append(copy $0) } }
            if taken.count >= count { break }
            Threads.sleep(millis: 10)
        }
        return taken
    }
}

/// Snapshot building.
enum Build {
    static func address(_ port: UInt16) -> SocketAddress { SocketAddress(ip: .v4(Net.loopback), port: port) }

    /// Services by name, each with its backends' ports.
    static func services(_ list: [(String, [UInt16])]) -> ([Service], [Endpoint]) {
        var services: [Service] = []
        var endpoints: [Endpoint] = []
        for (index, (name, ports)) in list.enumerated() {
            let start = endpoints.count
            for port in ports { endpoints.append(Endpoint(address: address(port), service: index)) }
            services.append(Service(name: name, algorithm: .roundrobin, endpoints: start..<endpoints.count))
        }
        return (services, endpoints)
    }

    /// One http listener `web` on `port`, routing `hosts` (host → service index).
    static func http(
        generation: UInt64 = 1, port: UInt16, services list: [(String, [UInt16])], hosts: [(String, Int)],
        log: AccessLogPolicy = AccessLogPolicy(), timeouts: Timeouts = Timeouts(), name: String = "web"
    ) -> RoutingSnapshot {
        let (services, endpoints) = services(list)
        let routes = hosts.map { try! HTTPRoute(host: $0.0, service: $0.1) }
        let listener = Listener(
            name: name, address: address(port), protocol: .http, service: -1, routes: 0, accessLog: log)
        return RoutingSnapshot(
            generation: generation, listeners: [listener], services: services, endpoints: endpoints,
            routeTables: [HTTPRouteTable(routes: routes)], timeouts: timeouts)
    }
}

extension AccessRecord {
    func text(_ field: Field) -> String { String(decoding: bytes(field), as: UTF8.self) }
    var reason: CloseReason { CloseReason(rawValue: closeReason) ?? .none }
}

func request(_ host: String, _ path: String = "/", method: String = "GET", extra: String = "") -> String {
    "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n\(extra)\r\n"
}
