import CShims
import Glibc
import Testing

@testable import SluiceSystem

/// Every wrapper reports failure as -errno: on descriptor -1 that is -EBADF.
@Suite struct ShimTests {
    @Test func everyWrapperReturnsMinusEBADFForBadDescriptor() {
        var value: Int32 = 0
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var byte: UInt8 = 0
        var counter: UInt64 = 0
        let results: [(String, Int)] = [
            ("epoll_ctl", Int(sluice_epoll_ctl(-1, SLUICE_EPOLL_CTL_ADD, 0, SLUICE_EPOLLIN, 0))),
            ("epoll_wait", Int(sluice_epoll_wait(-1, nil, 1, 0))),
            ("eventfd_write", Int(sluice_eventfd_write(-1, 1))),
            ("eventfd_read", Int(sluice_eventfd_read(-1, &counter))),
            ("listen", Int(sluice_listen(-1, 1))),
            ("accept4", Int(sluice_accept(-1, &storage, &length))),
            ("getsockname", Int(sluice_getsockname(-1, &storage, &length))),
            ("setsockopt", Int(sluice_setsockopt_int(-1, SLUICE_SOL_SOCKET, SLUICE_SO_REUSEPORT, 1))),
            ("getsockopt", Int(sluice_getsockopt_int(-1, SLUICE_SOL_SOCKET, SLUICE_SO_REUSEPORT, &value))),
            ("linger", Int(sluice_set_linger(-1, 1, 0))),
            ("SO_ERROR", Int(sluice_socket_error(-1))),
            ("shutdown", Int(sluice_shutdown(-1, SLUICE_SHUT_WR))),
            ("close", Int(sluice_close(-1))),
            ("read", sluice_read(-1, &byte, 1)),
            ("write", sluice_write(-1, &byte, 1)),
            ("send", sluice_send(-1, &byte, 1)),
            ("F_SETPIPE_SZ", Int(sluice_pipe_set_size(-1, 65536))),
            ("F_GETPIPE_SZ", Int(sluice_pipe_get_size(-1))),
            ("splice", sluice_splice(-1, -1, 1, 0)),
        ]
        for (name, result) in results {
            #expect(result == -Int(EBADF), "\(name) returned \(result)")
        }
        let address = SystemAddress(ip: .v4(0x7F00_0001), port: 1)
        let bound = try? address.withSockaddr { (sa, len) throws(Errno) in Int(sluice_bind(-1, sa, len)) }
        #expect(bound == -Int(EBADF))
        let connected = try? address.withSockaddr { (sa, len) throws(Errno) in Int(sluice_connect(-1, sa, len)) }
        #expect(connected == -Int(EBADF))
    }

    @Test func syscallPolicyRetriesEINTRAndReturnsEAGAINAsValue() throws {
        var calls = 0
        let result = try Syscall.run("test") {
            calls += 1
            return calls < 3 ? -Int(EINTR) : 7
        }
        #expect(result == .done(7))
        #expect(calls == 3)
        #expect(try Syscall.run("test") { -Int(EAGAIN) } == .wouldBlock)
    }

    @Test func syscallPolicyThrowsConnectionErrors() {
        for errno in [ECONNRESET, EPIPE, EINVAL, ECONNREFUSED] {
            #expect(throws: Errno(rawValue: errno)) { try Syscall.run("test") { -Int(errno) } }
        }
    }

    @Test func spliceOnSocketPairAndPipeMovesBytes() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        var pool = PipePool(pipeSize: 1 << 20, maxIdle: 2)
        let pipe = try pool.acquire()
        #expect(pool.grantedSize >= 65536)
        let message = Array("through the pipe".utf8)
        _ = message.withUnsafeBytes { write(fds[0], $0.baseAddress, $0.count) }
        // Nothing waits on the other end of the pipe yet: splice in, then out to the peer.
        #expect(try IO.splice(from: fds[1], to: pipe.writeFD, count: 1 << 16) == .done(message.count))
        #expect(try IO.splice(from: pipe.readFD, to: fds[1], count: message.count) == .done(message.count))
        var back = [UInt8](repeating: 0, count: 64)
        let n = back.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        #expect(Array(back[0..<n]) == message)
        // Empty socket: "would block", not an error.
        #expect(try IO.splice(from: fds[1], to: pipe.writeFD, count: 1 << 16) == .wouldBlock)
        pool.release(pipe, empty: true)
        #expect(pool.idleCountForTesting == 1)
        let again = try pool.acquire()
        #expect(again == pipe)
        pool.release(again, empty: false)  // bytes may remain: closed, not pooled
        #expect(pool.idleCountForTesting == 0)
    }

    @Test func spliceBetweenTwoPipesWithoutSocketIsRefusedAsInvalid() throws {
        // splice needs a pipe on at least one side; two regular files are EINVAL, which is
        // the signal the reactor uses to fall back to copying.
        let a = open("/dev/zero", O_RDONLY)
        let b = open("/dev/null", O_WRONLY)
        defer { close(a); close(b) }
        #expect(throws: Errno.invalid) { try IO.splice(from: a, to: b, count: 16) }
    }

    @Test func listenAcceptConnectOnLoopback() throws {
        let listener = try Socket.listen(on: SystemAddress(ip: .v4(0x7F00_0001), port: 0))
        defer { Syscall.close(listener) }
        let bound = try Socket.localAddress(listener)
        #expect(bound.port != 0)
        if case .done = try Socket.accept(listener) { Issue.record("accept on an empty queue must say would-block") }
        let (client, _) = try Socket.connect(to: bound)
        defer { Syscall.close(client) }
        var accepted: AcceptedSocket?
        for _ in 0..<1000 where accepted == nil {
            if case .done(let socket) = try Socket.accept(listener) { accepted = socket }
        }
        let peer = try #require(accepted)
        defer { Syscall.close(peer.fd) }
        #expect(peer.peerAddress?.ip == .v4(0x7F00_0001))
        #expect(Socket.pendingError(client) == nil)
    }

    @Test func refusedConnectIsReported() throws {
        // A port nobody listens on: bind one, read its number, close it.
        let probe = try Socket.listen(on: SystemAddress(ip: .v4(0x7F00_0001), port: 0))
        let port = try Socket.localAddress(probe).port
        Syscall.close(probe)
        do {
            let (fd, _) = try Socket.connect(to: SystemAddress(ip: .v4(0x7F00_0001), port: port))
            defer { Syscall.close(fd) }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 2000)
            #expect(Socket.pendingError(fd) == .connectionRefused)
        } catch {
            #expect(error == .connectionRefused)
        }
    }
}
