import SluiceSystem

/// The one part of a loop that issues I/O: readiness or completions (epoll, or io_uring
/// through `URingDriver`) and the socket, pipe and splice calls, each turned into an outcome with its errno kept. Protocol
/// code (HTTP, TLS, tunnels) asks the driver and never names a syscall or epoll; the driver
/// knows nothing of HTTP.
///
/// Registration: a connection's sockets are watched once, edge-triggered, for every event
/// (`watch`); an idle pooled upstream only for input and hang-up (`watchIdle`), since OUT
/// would fire at once; a descriptor moving between tokens is re-watched (`rewatch`).
///
/// Debug builds can hand every call to a `ScriptedKernel` instead of the system, so tests
/// play the kernel and assert the exact script of calls a request makes.
struct Driver: ~Copyable {
    let poller: Epoll
    /// The io_uring driver, when the loop runs on it (`IOBackend.ioUring`); nil on epoll.
    let uring: URingDriver?
    #if DEBUG
        /// Tests: answers every call instead of the system.
        var kernel: (any ScriptedKernel)?
    #endif

    init(capacity: Int, backend: IOBackend = .epoll) throws(Errno) {
        let ring = try Self.makeURing(backend)
        poller = try Epoll(capacity: capacity)
        uring = ring
    }

    private static func makeURing(_ backend: IOBackend) throws(Errno) -> URingDriver? {
        guard backend == .ioUring else { return nil }
        do { return try URingDriver() } catch { throw error.errno }
    }

    /// On the loop thread, as it exits: what was prepared (closes) goes to the kernel.
    func finish() { _ = uring?.wait(timeoutMillis: 0) }

    /// On the loop thread, before the first wait (io_uring binds the ring to its thread).
    func start() throws(Errno) { try uring?.start() }

    // MARK: - Poller

    /// Watches a connection's socket for every event, edge-triggered. False when refused.
    @inline(__always)
    func watch(_ fd: Int32, _ token: EventToken) -> Bool {
        #if DEBUG
            if let kernel { return kernel.watch(fd, token, idle: false, moving: false) }
        #endif
        if let uring { return uring.watch(fd, token) }
        do {
            try poller.add(fd, events: Epoll.edgeTriggeredAll, data: token.raw)
            return true
        } catch {
            return false
        }
    }

    /// Moves a watched socket to another token, for every event. False when refused.
    @inline(__always)
    func rewatch(_ fd: Int32, _ token: EventToken) -> Bool {
        #if DEBUG
            if let kernel { return kernel.watch(fd, token, idle: false, moving: true) }
        #endif
        if let uring { return uring.rewatch(fd, token, idle: false) }
        do {
            try poller.modify(fd, events: Epoll.edgeTriggeredAll, data: token.raw)
            return true
        } catch {
            return false
        }
    }

    /// Moves a watched socket to `token` for input and hang-up only (an idle pooled upstream:
    /// anything it says means it is closing). False when refused.
    func watchIdle(_ fd: Int32, _ token: EventToken) -> Bool {
        #if DEBUG
            if let kernel { return kernel.watch(fd, token, idle: true, moving: true) }
        #endif
        if let uring { return uring.rewatch(fd, token, idle: true) }
        do {
            try poller.modify(fd, events: Epoll.readable | Epoll.readHangup | Epoll.edgeTrigger, data: token.raw)
            return true
        } catch {
            return false
        }
    }

    /// Watches a listening or wake-up descriptor (level-triggered input; `edge` for an
    /// eventfd, which the loop drains itself).
    func watchInput(_ fd: Int32, _ token: EventToken, edge: Bool) throws(Errno) {
        #if DEBUG
            if let kernel {
                _ = kernel.watch(fd, token, idle: true, moving: false)
                return
            }
        #endif
        if let uring {
            uring.watchInput(fd, token, wake: edge)
            return
        }
        try poller.add(fd, events: edge ? Epoll.readable | Epoll.edgeTriggeredAll : Epoll.readable, data: token.raw)
    }

    func unwatch(_ fd: Int32) {
        #if DEBUG
            if let kernel {
                kernel.unwatch(fd)
                return
            }
        #endif
        if let uring {
            uring.unwatch(fd)
            return
        }
        poller.remove(fd)
    }

    /// A listener stops accepting for good (a drain): unwatched, and on io_uring its accept
    /// ended, so that what the kernel accepted for it is in `takeQueued`.
    func stopAccepting(_ fd: Int32) {
        if let uring {
            uring.stopAccepting(fd)
            return
        }
        unwatch(fd)
    }

    /// A connection accepted for a listener that stopped accepting (io_uring's queue); epoll
    /// holds none (they wait in the kernel's backlog).
    func takeQueued(_ listener: Int32) -> AcceptResult {
        if let uring { return uring.takeQueued(listener) }
        return .empty
    }

    /// Waits for events until `timeoutMillis` (-1: no bound); how many are ready.
    @inline(__always)
    func wait(timeoutMillis: Int32) -> Int {
        if let uring { return uring.wait(timeoutMillis: timeoutMillis) }
        return poller.wait(timeoutMillis: timeoutMillis)
    }

    @inline(__always)
    func token(at index: Int) -> EventToken {
        if let uring { return uring.token(at: index) }
        return EventToken(raw: poller.data(at: index))
    }

    @inline(__always)
    func readiness(at index: Int) -> Readiness {
        if let uring { return uring.readiness(at: index) }
        return poller.readiness(at: index)
    }

    // MARK: - Sockets

    /// One connection off a listener's queue.
    @inline(__always)
    func accept(_ listener: Int32) -> AcceptResult {
        #if DEBUG
            if let kernel { return kernel.accept(listener) }
        #endif
        if let uring { return uring.accept(listener) }
        do {
            guard case .done(let socket) = try Socket.accept(listener) else { return .empty }
            return .accepted(socket)
        } catch {
            return .failed(error)
        }
    }

    /// Starts a non-blocking connect to `address`.
    @inline(__always)
    func connect(to address: SystemAddress) -> ConnectResult {
        #if DEBUG
            if let kernel { return kernel.connect(to: address) }
        #endif
        if let uring { return uring.connect(to: address) }
        do {
            let (fd, connected) = try Socket.connect(to: address)
            return connected ? .connected(fd) : .inProgress(fd)
        } catch {
            return .failed(error)
        }
    }

    /// How a connect in progress ended, once its socket reported writable: nil when connected.
    @inline(__always)
    func connectError(_ fd: Int32) -> Errno? {
        #if DEBUG
            if let kernel { return kernel.connectError(fd) }
        #endif
        if let uring { return uring.connectError(fd) }
        return Socket.pendingError(fd)
    }

    /// TCP_NODELAY: a proxy forwards what it has at once.
    @inline(__always)
    func setNoDelay(_ fd: Int32) {
        #if DEBUG
            if let kernel {
                kernel.setNoDelay(fd)
                return
            }
        #endif
        Socket.setNoDelay(fd)
    }

    /// Sends FIN while the other direction keeps flowing. A peer already gone is reported by
    /// the next read or write, so the outcome is not needed here.
    @inline(__always)
    func shutdownWrite(_ fd: Int32) {
        #if DEBUG
            if let kernel {
                kernel.shutdownWrite(fd)
                return
            }
        #endif
        if let uring {
            uring.shutdownWrite(fd)
            return
        }
        do { try Socket.shutdownWrite(fd) } catch {}
    }

    /// Closes a descriptor (a FIN for a socket with nothing unread).
    @inline(__always)
    func close(_ fd: Int32) {
        #if DEBUG
            if let kernel {
                kernel.close(fd, abort: false)
                return
            }
        #endif
        if let uring {
            uring.close(fd, abort: false)
            return
        }
        Syscall.close(fd)
    }

    /// Closes a socket with an RST (SO_LINGER 0): the peer learns at once that it failed.
    func abort(_ fd: Int32) {
        #if DEBUG
            if let kernel {
                kernel.close(fd, abort: true)
                return
            }
        #endif
        if let uring {
            uring.close(fd, abort: true)
            return
        }
        Socket.abort(fd)
    }

    /// The address a socket is bound to (the destination a client reached).
    func localAddress(_ fd: Int32) -> SystemAddress? {
        #if DEBUG
            if let kernel { return kernel.localAddress(fd) }
        #endif
        return try? Socket.localAddress(fd)
    }

    // MARK: - Bytes

    /// Reads once into `buffer`.
    @inline(__always)
    func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int32) -> ReadResult {
        #if DEBUG
            if let kernel { return kernel.read(fd, into: buffer, count: count) }
        #endif
        if let uring { return uring.read(fd, into: buffer, count: count) }
        return PlainIO.read(fd, into: buffer, count: count)
    }

    /// Sends once from `buffer` (MSG_NOSIGNAL: a closed peer is EPIPE).
    @inline(__always)
    func send(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int32) -> WriteResult {
        #if DEBUG
            if let kernel { return kernel.send(fd, from: buffer, count: count) }
        #endif
        if let uring { return uring.send(fd, from: buffer, count: count) }
        return PlainIO.send(fd, from: buffer, count: count)
    }

    /// Moves up to `count` bytes between a socket and a pipe, in the kernel. EINVAL and
    /// ENOSYS mean this pair cannot splice: the caller copies instead.
    @inline(__always)
    func splice(from source: Int32, to destination: Int32, count: Int32) -> ReadResult {
        #if DEBUG
            if let kernel { return kernel.splice(from: source, to: destination, count: count) }
        #endif
        if let uring { return uring.splice(from: source, to: destination, count: count) }
        return PlainIO.splice(from: source, to: destination, count: count)
    }

    /// Writes bytes into an empty pipe (a replayed peek); whether all of them went.
    func fillPipe(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> Bool {
        #if DEBUG
            if let kernel { return kernel.fillPipe(fd, from: buffer, count: count) }
        #endif
        return IO.writePipe(fd, from: buffer, count: count) == count
    }
}

/// A read's outcome (`read`, `splice` into or out of a pipe).
enum ReadResult: Equatable {
    case bytes(Int32)
    /// End of stream.
    case eof
    case wouldBlock
    /// The errno tells a reset from other failures (`Loop.failure`).
    case failed(Errno)
}

enum WriteResult: Equatable {
    case bytes(Int32)
    case wouldBlock
    case failed(Errno)
}

enum AcceptResult {
    case accepted(AcceptedSocket)
    /// The queue is empty.
    case empty
    /// ECONNABORTED, EMFILE, ENFILE and the like: counted by the caller.
    case failed(Errno)
}

enum ConnectResult: Equatable {
    case connected(Int32)
    /// Wait for writability, then `connectError`.
    case inProgress(Int32)
    /// Refused at once, or no descriptor (EMFILE/ENFILE) for the socket.
    case failed(Errno)
}

#if DEBUG
    /// A kernel played by a test: answers the driver's calls and records them.
    protocol ScriptedKernel: AnyObject {
        func watch(_ fd: Int32, _ token: EventToken, idle: Bool, moving: Bool) -> Bool
        func unwatch(_ fd: Int32)
        func accept(_ listener: Int32) -> AcceptResult
        func connect(to address: SystemAddress) -> ConnectResult
        func connectError(_ fd: Int32) -> Errno?
        func setNoDelay(_ fd: Int32)
        func shutdownWrite(_ fd: Int32)
        func close(_ fd: Int32, abort: Bool)
        func localAddress(_ fd: Int32) -> SystemAddress?
        func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int32) -> ReadResult
        func send(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int32) -> WriteResult
        func splice(from source: Int32, to destination: Int32, count: Int32) -> ReadResult
        func fillPipe(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> Bool
    }
#endif

/// Which kernel interface a loop's driver uses.
public enum IOBackend: String, Sendable {
    case epoll
    case ioUring = "io_uring"
}
