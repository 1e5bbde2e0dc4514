import CShims

/// An eventfd used as a wake-up: any thread may `signal`, the owner `drain`s it.
public struct EventFD: Sendable {
    public let fd: Int32

    public init() throws(Errno) {
        fd = Int32(try Syscall.value("eventfd") { Int(sluice_eventfd()) })
    }

    /// Wakes the owner. Thread-safe (one write(2)).
    public func signal() {
        _ = sluice_eventfd_write(fd, 1)
    }

    /// Resets the counter so that the next `signal` raises a new edge.
    public func drain() {
        var value: UInt64 = 0
        _ = sluice_eventfd_read(fd, &value)
    }

    public func close() { Syscall.close(fd) }
}
