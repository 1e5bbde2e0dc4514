import Glibc
import Logging
import SluiceSystem
import Synchronization

/// Binary upgrades without a refused connection (`sluice run --takeover PATH`), as HAProxy's
/// `-x` and Envoy's hot restart do: the serving process listens on a Unix socket at PATH; a
/// new process that passed its configuration check connects there and receives every loop's
/// listening sockets and the admin listener (SCM_RIGHTS), starts its loops on them, takes PATH
/// over, then tells the old process to drain. The sockets, with their accept queues, never
/// close: while both run both accept from them, and the old one stops when told.
///
/// | step | new process → old            | old process → new                                  |
/// | ---- | ---------------------------- | -------------------------------------------------- |
/// | 1    | `take`                       | `listeners N` + up to 64 sockets, repeated; `admin` + 1 socket; `end` |
/// | 2    | `ok` after each message      |                                                    |
/// | 3    | `serving` (its loops run)    | `draining`, then it drains as on SIGTERM without the delay |
///
/// A process that had a stop signal already answers `take` with `stopping` and passes nothing:
/// the new one binds the listeners itself.
///
/// A new process that fails before `serving` (a bad configuration, a listener it cannot bind)
/// just closes the connection: the old one logs it and keeps serving. The socket file is
/// mode 0600, and a peer that runs as neither this user nor root is refused.
enum TakeoverWire {
    static let take = "take"
    static let ok = "ok"
    static let serving = "serving"
    static let draining = "draining"
    static let end = "end"
    static let listeners = "listeners"
    static let admin = "admin"
    static let stopping = "stopping"
    static let timeoutMillis = 10_000

    static func send(_ fd: Int32, _ line: String, descriptors: [Int32] = []) throws(Errno) {
        try UnixSocket.send(fd, Array((line + "\n").utf8), descriptors: descriptors)
    }

    /// One message's first line (empty at the end of the stream) and its descriptors.
    static func receive(_ fd: Int32) throws(Errno) -> (line: String, descriptors: [Int32]) {
        let (bytes, descriptors) = try UnixSocket.receive(fd)
        let text = String(decoding: bytes, as: UTF8.self)
        return (String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? ""), descriptors)
    }
}

/// The serving process's side: one thread answering takeover requests at `path`.
final class TakeoverServer: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `listenFD`, `path` and the closures are constants; the
    // hand-over flag is an atomic.
    let path: String
    private let listenFD: Int32
    private let logger: Logger
    /// Calls its argument with the sockets to pass (listeners loop by loop, and the admin
    /// listener), kept valid while it runs; nil when the process is stopping already.
    private let withSockets: Lender
    private let handedOffTo = Atomic<Int32>(0)

    typealias Sockets = (listeners: [Int32], admin: Int32?)
    typealias Lender = @Sendable (_ body: (Sockets?) throws -> Void) throws -> Void

    init(path: String, logger: Logger, withSockets: @escaping Lender) throws(Errno) {
        self.path = path
        self.logger = logger
        self.withSockets = withSockets
        listenFD = try UnixSocket.listen(path: path)
    }

    /// The pid of the process that took over (and told this one to drain); nil before that.
    var successor: Int32? {
        let pid = handedOffTo.load(ordering: .acquiring)
        return pid > 0 ? pid : nil
    }

    func start() {
        _ = Threads.spawn { [self] in run() }
    }

    private func run() {
        while successor == nil {
            let connection: Int32
            do {
                connection = try UnixSocket.accept(listenFD)
            } catch {
                logger.error("takeover: accept on \(path): \(error); no more takeovers")
                return
            }
            let pid = UnixSocket.peerPID(connection) ?? 0
            do {
                try serve(connection, pid: pid)
            } catch {
                logger.warning("takeover by pid \(pid) abandoned (\(error)): still serving")
            }
            Syscall.close(connection)
        }
        Syscall.close(listenFD)
    }

    private struct Abandoned: Error, CustomStringConvertible {
        var description: String
    }

    private func serve(_ connection: Int32, pid: Int32) throws {
        guard UnixSocket.peerIsTrusted(connection) else {
            throw Abandoned(description: "it runs as another user")
        }
        try UnixSocket.setTimeouts(connection, millis: TakeoverWire.timeoutMillis)
        let request = try TakeoverWire.receive(connection)
        for fd in request.descriptors { Syscall.close(fd) }
        guard request.line == TakeoverWire.take else {
            throw Abandoned(description: "it sent '\(request.line)', not '\(TakeoverWire.take)'")
        }
        var passed = 0
        try withSockets { sockets in
            guard let sockets else {
                try TakeoverWire.send(connection, TakeoverWire.stopping)
                return
            }
            func acknowledged() throws(Errno) {
                let answer = try TakeoverWire.receive(connection)
                for fd in answer.descriptors { Syscall.close(fd) }
                if answer.line != TakeoverWire.ok { throw Errno(rawValue: EPROTO) }
            }
            var rest = sockets.listeners[...]
            while !rest.isEmpty {
                let batch = Array(rest.prefix(UnixSocket.maxDescriptors))
                rest = rest.dropFirst(batch.count)
                try TakeoverWire.send(connection, "\(TakeoverWire.listeners) \(batch.count)", descriptors: batch)
                try acknowledged()
            }
            if let admin = sockets.admin {
                try TakeoverWire.send(connection, TakeoverWire.admin, descriptors: [admin])
                try acknowledged()
            }
            try TakeoverWire.send(connection, TakeoverWire.end)
            passed = sockets.listeners.count
        }
        logger.notice("takeover: passed \(passed) listening sockets to pid \(pid); waiting for it to serve")
        // The new process starts its loops now: allow it more than the usual wait.
        try UnixSocket.setTimeouts(connection, millis: 60_000)
        let next = try TakeoverWire.receive(connection)
        for fd in next.descriptors { Syscall.close(fd) }
        guard next.line == TakeoverWire.serving else {
            throw Abandoned(description: next.line.isEmpty ? "it closed the connection" : "it sent '\(next.line)'")
        }
        try TakeoverWire.send(connection, TakeoverWire.draining)
        handedOffTo.store(pid > 0 ? pid : 1, ordering: .releasing)
        logger.notice("takeover: pid \(pid) serves; draining")
        // The control thread waits for signals: a SIGTERM to this process starts the drain.
        kill(getpid(), SIGTERM)
    }
}

/// The new process's side: the sockets taken from the process at `path`, held until
/// `serving` tells it to drain.
final class TakeoverClient {
    let path: String
    let oldPID: Int32
    private var connection: Int32
    /// Every loop's listening sockets, loop by loop (see `InheritedSockets`).
    let listeners: [Int32]
    /// The old admin listener; nil when it had none.
    var admin: Int32?

    /// Connects to the process serving at `path` and takes its sockets; nil when nothing
    /// serves there (no socket file, or no process on it): the listeners are bound instead.
    static func take(path: String, logger: Logger) throws -> TakeoverClient? {
        let connection: Int32
        switch Result(catching: { () throws(Errno) in try UnixSocket.connect(path: path) }) {
        case .success(let fd):
            connection = fd
        case .failure(let error):
            guard error.rawValue == ENOENT || error.rawValue == ECONNREFUSED else { throw error }
            logger.notice("takeover: nothing serves at \(path) (\(error)): binding the listeners")
            return nil
        }
        do {
            return try TakeoverClient(path: path, connection: connection)
        } catch let error as TakeoverError where error.stopping {
            Syscall.close(connection)
            logger.notice("\(error): binding the listeners")
            return nil
        } catch {
            Syscall.close(connection)
            throw error
        }
    }

    private init(path: String, connection: Int32) throws {
        self.path = path
        self.connection = connection
        oldPID = UnixSocket.peerPID(connection) ?? 0
        try UnixSocket.setTimeouts(connection, millis: TakeoverWire.timeoutMillis)
        try TakeoverWire.send(connection, TakeoverWire.take)
        var listeners: [Int32] = []
        var admin: Int32?
        func closeAll() {
            for fd in listeners { Syscall.close(fd) }
            if let admin { Syscall.close(admin) }
        }
        while true {
            let message: (line: String, descriptors: [Int32])
            do {
                message = try TakeoverWire.receive(connection)
            } catch {
                closeAll()
                throw error
            }
            let words = message.line.split(separator: " ")
            switch words.first.map(String.init) {
            case TakeoverWire.listeners?:
                listeners += message.descriptors
            case TakeoverWire.admin?:
                if let fd = message.descriptors.first { admin = fd }
                for fd in message.descriptors.dropFirst() { Syscall.close(fd) }
            case TakeoverWire.end?:
                for fd in message.descriptors { Syscall.close(fd) }
                self.listeners = listeners
                self.admin = admin
                return
            case TakeoverWire.stopping?:
                closeAll()
                throw TakeoverError(stopping: true, description: "takeover: the process at \(path) is stopping")
            default:
                for fd in message.descriptors { Syscall.close(fd) }
                closeAll()
                throw TakeoverError(
                    description: message.line.isEmpty
                        ? "takeover: the process at \(path) closed the connection"
                        : "takeover: the process at \(path) answered '\(message.line)'")
            }
            do {
                try TakeoverWire.send(connection, TakeoverWire.ok)
            } catch {
                closeAll()
                throw error
            }
        }
    }

    /// This process serves on the sockets: the old one drains. Throws when it did not confirm
    /// (it may have exited already; this process serves either way).
    func serving() throws {
        defer { abandon() }
        try TakeoverWire.send(connection, TakeoverWire.serving)
        let answer = try TakeoverWire.receive(connection)
        for fd in answer.descriptors { Syscall.close(fd) }
        guard answer.line == TakeoverWire.draining else {
            throw TakeoverError(description: "takeover: pid \(oldPID) answered '\(answer.line)' to serving")
        }
    }

    /// Closes the connection: before `serving`, the old process keeps serving.
    func abandon() {
        if connection >= 0 { Syscall.close(connection) }
        connection = -1
    }
}

struct TakeoverError: Error, CustomStringConvertible {
    /// The old process had a stop signal already: it passes nothing, this one binds.
    var stopping = false
    var description: String
}
