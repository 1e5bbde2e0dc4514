import CShims

/// What a readiness event said about a socket, in the loops' vocabulary: whether a read is
/// worth making (`mayRead`), whether the peer will send nothing more after what is queued
/// (`hungUp`), whether a write may go (`mayWrite`). The syscall layer's bits stay in `Epoll`.
public struct Readiness: OptionSet, Sendable {
    public let rawValue: UInt32
    @inline(__always) public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = Readiness(rawValue: SLUICE_EPOLLIN)
    public static let writable = Readiness(rawValue: SLUICE_EPOLLOUT)
    /// The peer shut its write side (FIN).
    public static let readHangup = Readiness(rawValue: SLUICE_EPOLLRDHUP)
    /// Both directions are closed.
    public static let hangup = Readiness(rawValue: SLUICE_EPOLLHUP)
    public static let error = Readiness(rawValue: SLUICE_EPOLLERR)

    /// A read would return bytes, an end of stream or the error to collect.
    @inline(__always) public var mayRead: Bool { !isDisjoint(with: [.readable, .readHangup, .hangup, .error]) }
    /// The peer will send nothing after what is queued (or the socket is dead): the end of
    /// stream behind the data must still be read, whatever a short read says.
    @inline(__always) public var hungUp: Bool { !isDisjoint(with: [.readHangup, .hangup, .error]) }
    /// The peer closed its side (FIN or a full hangup), errors aside.
    @inline(__always) public var peerClosed: Bool { !isDisjoint(with: [.readHangup, .hangup]) }
    /// A write would take bytes or report the error.
    @inline(__always) public var mayWrite: Bool { !isDisjoint(with: [.writable, .hangup, .error]) }
    /// The connection is gone both ways (hangup or error).
    @inline(__always) public var closed: Bool { !isDisjoint(with: [.hangup, .error]) }
}

extension Epoll {
    /// The readiness of the event at `index`.
    @inline(__always)
    public func readiness(at index: Int) -> Readiness { Readiness(rawValue: mask(at: index)) }
}
