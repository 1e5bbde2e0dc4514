import CShims

/// One epoll instance and its preallocated event array, owned by one loop thread.
///
/// Sockets are registered once, edge-triggered, for IN|OUT|RDHUP, and never modified: the
/// connection state machine tracks readiness itself. The 64-bit user data is opaque here
/// (the reactor packs kind, slot and generation into it).
public struct Epoll: ~Copyable {
    public let fd: Int32
    private let events: UnsafeMutableRawPointer
    public let capacity: Int

    public static let edgeTriggeredAll: UInt32 = SLUICE_EPOLLIN | SLUICE_EPOLLOUT | SLUICE_EPOLLRDHUP | SLUICE_EPOLLET
    public static let edgeTrigger: UInt32 = SLUICE_EPOLLET
    public static let readable: UInt32 = SLUICE_EPOLLIN
    public static let writable: UInt32 = SLUICE_EPOLLOUT
    public static let readHangup: UInt32 = SLUICE_EPOLLRDHUP
    public static let hangup: UInt32 = SLUICE_EPOLLHUP
    public static let error: UInt32 = SLUICE_EPOLLERR

    public init(capacity: Int = 512) throws(Errno) {
        fd = Int32(try Syscall.value("epoll_create1") { Int(sluice_epoll_create()) })
        self.capacity = capacity
        events = UnsafeMutableRawPointer.allocate(
            byteCount: capacity * sluice_epoll_event_size(), alignment: 16)
    }

    deinit {
        events.deallocate()
        Syscall.close(fd)
    }

    @inline(__always)
    public func add(_ target: Int32, events mask: UInt32, data: UInt64) throws(Errno) {
        _ = try Syscall.value("epoll_ctl") { Int(sluice_epoll_ctl(fd, SLUICE_EPOLL_CTL_ADD, target, mask, data)) }
    }

    public func modify(_ target: Int32, events mask: UInt32, data: UInt64) throws(Errno) {
        _ = try Syscall.value("epoll_ctl") { Int(sluice_epoll_ctl(fd, SLUICE_EPOLL_CTL_MOD, target, mask, data)) }
    }

    public func remove(_ target: Int32) {
        _ = sluice_epoll_ctl(fd, SLUICE_EPOLL_CTL_DEL, target, 0, 0)
    }

    /// Waits for events; returns how many are ready (0 on timeout). `timeoutMillis` -1 waits
    /// without bound.
    @inline(__always)
    public func wait(timeoutMillis: Int32) -> Int {
        let n = sluice_epoll_wait(fd, events.assumingMemoryBound(to: epoll_event.self), Int32(capacity), timeoutMillis)
        if n >= 0 { return Int(n) }
        if n == -4 { return 0 }  // EINTR: a signal arrived; the caller loops anyway.
        Syscall.bug("epoll_wait", -n)
    }

    @inline(__always)
    public func data(at index: Int) -> UInt64 {
        sluice_epoll_event_data(events.assumingMemoryBound(to: epoll_event.self), Int32(index))
    }

    @inline(__always)
    public func mask(at index: Int) -> UInt32 {
        sluice_epoll_event_mask(events.assumingMemoryBound(to: epoll_event.self), Int32(index))
    }
}
