import CShims

/// Byte moves on raw descriptors: read, write, splice. Each applies `Syscall`'s policy:
/// `.wouldBlock` for EAGAIN, a thrown `Errno` for a connection error (reset, broken pipe),
/// a trap for EBADF/EFAULT. A read of `.done(0)` is end of stream.
public enum IO {
    @inline(__always)
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) throws(Errno) -> IOResult<
        Int
    > {
        try Syscall.run("read") { sluice_read(fd, buffer, count) }
    }

    /// send(2) with MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE.
    @inline(__always)
    public static func write(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) throws(Errno) -> IOResult<Int> {
        try Syscall.run("send") { sluice_send(fd, buffer, count) }
    }

    /// write(2) to a pipe (send(2) refuses non-sockets): bytes written, or -1.
    @inline(__always)
    public static func writePipe(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> Int {
        let result = sluice_write(fd, buffer, count)
        return result < 0 ? -1 : result
    }

    /// splice(2) between a socket and a pipe, non-blocking. EINVAL and ENOSYS mean "this pair
    /// cannot splice": callers fall back to copying for that connection.
    @inline(__always)
    public static func splice(from source: Int32, to destination: Int32, count: Int, more: Bool = false) throws(Errno)
        -> IOResult<Int>
    {
        #if DEBUG
            if FaultInjection.spliceErrno != 0 { throw Errno(rawValue: FaultInjection.spliceErrno) }
        #endif
        return try Syscall.run("splice") { sluice_splice(source, destination, count, more ? 1 : 0) }
    }
}
