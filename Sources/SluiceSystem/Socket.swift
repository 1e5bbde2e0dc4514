import CShims
import Glibc

/// TCP socket operations on raw descriptors. The reactor keeps descriptors in its slot
/// table as plain `Int32`s and closes them itself; these functions only apply the syscall
/// policy of `Syscall`.
public enum Socket {
    /// A listening socket with SO_REUSEADDR and SO_REUSEPORT, so that every loop can own one
    /// on the same address and the kernel spreads connections across them. IPv6 sockets are
    /// v6-only: `[::]:80` and `0.0.0.0:80` are two listeners. `reusePort` false leaves
    /// SO_REUSEPORT off, for a socket of which there is one per process (the admin
    /// listener): a second process binding the same address then fails instead of sharing it.
    public static func listen(on address: SystemAddress, backlog: Int32 = 4096, reusePort: Bool = true) throws(Errno)
        -> Int32
    {
        let fd = Int32(try Syscall.value("socket") { Int(sluice_socket(address.family)) })
        do {
            try setOption(fd, SLUICE_SOL_SOCKET, SLUICE_SO_REUSEADDR, 1)
            if reusePort { try setOption(fd, SLUICE_SOL_SOCKET, SLUICE_SO_REUSEPORT, 1) }
            if address.family == SLUICE_AF_INET6 {
                try setOption(fd, SLUICE_IPPROTO_IPV6, SLUICE_IPV6_V6ONLY, 1)
            }
            _ = try address.withSockaddr { (sa, len) throws(Errno) in
                try Syscall.value("bind") { Int(sluice_bind(fd, sa, len)) }
            }
            _ = try Syscall.value("listen") { Int(sluice_listen(fd, backlog)) }
        } catch {
            Syscall.close(fd)
            throw error
        }
        return fd
    }

    /// Accepts one connection: `.done((fd, peer))`, or `.wouldBlock` when the queue is empty.
    /// Errors such as ECONNABORTED, EMFILE and ENFILE are thrown for the caller to count.
    @inline(__always)
    public static func accept(_ listener: Int32) throws(Errno) -> IOResult<AcceptedSocket> {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        switch try Syscall.run("accept4", { Int(sluice_accept(listener, &storage, &length)) }) {
        case .wouldBlock: return .wouldBlock
        case .done(let fd): return .done(AcceptedSocket(fd: Int32(fd), peer: storage))
        }
    }

    /// Starts a non-blocking connect. Returns the socket and whether it is already
    /// connected (`true`) or in progress (`false`, wait for writability then `pendingError`).
    public static func connect(to address: SystemAddress) throws(Errno) -> (fd: Int32, connected: Bool) {
        let fd = Int32(try Syscall.value("socket") { Int(sluice_socket(address.family)) })
        let result = try address.withSockaddr { (sa, len) throws(Errno) in Int(sluice_connect(fd, sa, len)) }
        if result == 0 { return (fd, true) }
        if result == -Int(EINPROGRESS) { return (fd, false) }
        Syscall.close(fd)
        if result == -Int(EBADF) || result == -Int(EFAULT) { Syscall.bug("connect", Int32(-result)) }
        throw Errno(rawValue: Int32(-result))
    }

    /// The outcome of a non-blocking connect once the socket is writable: nil when connected.
    @inline(__always)
    public static func pendingError(_ fd: Int32) -> Errno? {
        let value = sluice_socket_error(fd)
        if value == 0 { return nil }
        return Errno(rawValue: value < 0 ? -value : value)
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(Errno) {
        _ = try Syscall.value("setsockopt") { Int(sluice_setsockopt_int(fd, level, name, value)) }
    }

    /// TCP_NODELAY: a proxy forwards what it has at once; Nagle would add a round trip.
    @inline(__always)
    public static func setNoDelay(_ fd: Int32) {
        _ = sluice_setsockopt_int(fd, SLUICE_IPPROTO_TCP, SLUICE_TCP_NODELAY, 1)
    }

    /// Closes with an RST instead of a FIN (SO_LINGER 0): for aborted connections, so the
    /// peer learns at once that the exchange failed.
    public static func abort(_ fd: Int32) {
        _ = sluice_set_linger(fd, 1, 0)
        Syscall.close(fd)
    }

    /// shutdown(SHUT_WR): sends FIN while the other direction keeps flowing.
    @inline(__always)
    public static func shutdownWrite(_ fd: Int32) throws(Errno) {
        _ = try Syscall.value("shutdown") { Int(sluice_shutdown(fd, SLUICE_SHUT_WR)) }
    }

    /// The address a socket is bound to (for listeners on port 0).
    public static func localAddress(_ fd: Int32) throws(Errno) -> SystemAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try Syscall.value("getsockname") { Int(sluice_getsockname(fd, &storage, &length)) }
        guard let address = SystemAddress(storage: storage) else { throw Errno.invalid }
        return address
    }
}

public struct AcceptedSocket {
    public var fd: Int32
    public var peer: sockaddr_storage

    public init(fd: Int32, peer: sockaddr_storage) {
        self.fd = fd
        self.peer = peer
    }

    /// The peer's address, nil for a family other than IPv4/IPv6.
    public var peerAddress: SystemAddress? { SystemAddress(storage: peer) }
}
