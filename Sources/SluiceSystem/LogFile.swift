import CShims
import Glibc

/// An append-only destination for log lines: standard output, standard error, or a file
/// opened with `O_APPEND | O_CREAT` (mode 0640, so a group such as `adm` may read it).
/// Writes block: only a thread of its own (the access-log writer) uses one, never a loop.
///
/// A value type over a descriptor: `close` once, from the thread that writes.
public struct LogFile: Sendable {
    public let fd: Int32
    /// Whether `close` closes `fd` (a file opened here, not a standard stream).
    public let owned: Bool

    public static let standardOutput = LogFile(fd: 1, owned: false)
    public static let standardError = LogFile(fd: 2, owned: false)

    private init(fd: Int32, owned: Bool) {
        self.fd = fd
        self.owned = owned
    }

    /// Opens `path` for appending, creating it (0640) when missing. Throws the open(2) errno
    /// (ENOENT for a missing directory, EACCES, EISDIR…). Retries EINTR.
    public static func open(path: String) throws(Errno) -> LogFile {
        var fd: Int32
        repeat {
            fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        return LogFile(fd: fd, owned: true)
    }

    /// Writes all of `bytes`, in as many write(2) calls as it takes. Blocks while the
    /// destination is full or slow (a pipe nobody reads, a stalled disk); when the descriptor
    /// is non-blocking (a standard stream inherited that way) it waits in poll(2) instead of
    /// spinning. Throws the errno that ended it (EPIPE, ENOSPC, EIO…); the bytes before it
    /// were written.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(Errno) {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = sluice_write(fd, p, left)
            if n >= 0 {
                p += n
                left -= n
                continue
            }
            let code = Int32(truncatingIfNeeded: -n)
            switch code {
            case EINTR:
                continue
            case EAGAIN:
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&entry, 1, 1_000)
            case EFAULT,
                EBADF where owned:
                // A standard stream may have been closed before start (EBADF is then news,
                // not a bug); a file opened here cannot be.
                Syscall.bug("write", code)
            default:
                throw Errno(rawValue: code)
            }
        }
    }

    /// Closes the file (a standard stream stays open).
    public func close() {
        if owned { Syscall.close(fd) }
    }
}

/// Wall-clock time (CLOCK_REALTIME): only for stamping log records, never for timeouts.
public enum WallClock {
    /// Microseconds since the Unix epoch.
    public static func nowMicros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000
    }
}
