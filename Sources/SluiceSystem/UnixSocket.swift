import CShims
import Glibc

/// Blocking Unix-domain stream sockets for handing listening sockets from one process to
/// another (SCM_RIGHTS). Control-plane threads only, never a loop.
public enum UnixSocket {
    /// The most descriptors one `send` carries.
    public static let maxDescriptors = Int(SLUICE_MAX_PASSED_FDS)

    /// Replaces whatever is at `path` with a listening socket only this user may reach (0600).
    public static func listen(path: String) throws(Errno) -> Int32 {
        try check(Int(sluice_unix_listen(path)))
    }

    /// Connects to the listening socket at `path`: ENOENT when nothing is there,
    /// ECONNREFUSED when no process listens on it any more.
    public static func connect(path: String) throws(Errno) -> Int32 {
        try check(Int(sluice_unix_connect(path)))
    }

    /// Waits for the next connection.
    public static func accept(_ listener: Int32) throws(Errno) -> Int32 {
        try check(Int(sluice_unix_accept(listener)))
    }

    /// The process at the other end.
    public static func peerPID(_ fd: Int32) -> Int32? {
        let pid = sluice_unix_peer_pid(fd)
        return pid > 0 ? pid : nil
    }

    /// Whether the process at the other end runs as this process's user, or as root.
    public static func peerIsTrusted(_ fd: Int32) -> Bool {
        var uid: UInt32 = 0
        guard sluice_unix_peer_uid(fd, &uid) == 0 else { return false }
        return uid == 0 || uid == getuid()
    }

    /// Every later send and receive on `fd` fails with ETIMEDOUT after `millis`.
    public static func setTimeouts(_ fd: Int32, millis: Int) throws(Errno) {
        _ = try check(Int(sluice_set_timeouts(fd, Int32(millis))))
    }

    /// Sends `bytes` (not empty) with `descriptors` attached in one message; the receiver gets
    /// its own copies, the caller keeps these.
    public static func send(_ fd: Int32, _ bytes: [UInt8], descriptors: [Int32] = []) throws(Errno) {
        precondition(!bytes.isEmpty && descriptors.count <= maxDescriptors)
        let sent = bytes.withUnsafeBytes { raw in
            descriptors.withUnsafeBufferPointer { fds in
                sluice_send_fds(fd, raw.baseAddress, raw.count, fds.baseAddress, Int32(fds.count))
            }
        }
        let count = try check(sent)
        if count != bytes.count { throw Errno(rawValue: EMSGSIZE) }
    }

    /// One message: its bytes (empty at the end of the stream) and the descriptors it carried,
    /// now owned by the caller.
    public static func receive(_ fd: Int32, capacity: Int = 512) throws(Errno) -> (
        bytes: [UInt8], descriptors: [Int32]
    ) {
        var bytes = [UInt8](repeating: 0, count: capacity)
        var fds = [Int32](repeating: -1, count: maxDescriptors)
        var count: Int32 = 0
        let received = bytes.withUnsafeMutableBytes { raw in
            fds.withUnsafeMutableBufferPointer { out in
                sluice_recv_fds(fd, raw.baseAddress, raw.count, out.baseAddress, Int32(out.count), &count)
            }
        }
        let length = try check(received)
        return (Array(bytes[0..<Int(length)]), Array(fds[0..<Int(count)]))
    }

    private static func check(_ result: Int) throws(Errno) -> Int32 {
        if result >= 0 { return Int32(truncatingIfNeeded: result) }
        let errno = Int32(truncatingIfNeeded: -result)
        // A receive or send timeout (SO_RCVTIMEO) reports EAGAIN on a blocking socket.
        throw Errno(rawValue: errno == EAGAIN ? ETIMEDOUT : errno)
    }
}

/// systemd's readiness protocol (sd_notify): with `Type=notify`, `READY=1` says the service
/// serves, and `MAINPID=` names the process systemd should watch (after a takeover, the new one).
public enum SystemdNotify {
    /// Sends `state` to `$NOTIFY_SOCKET`; false when the variable is unset or the send failed.
    @discardableResult
    public static func send(_ state: String) -> Bool { sluice_sd_notify(state) == 1 }

    /// Whether the process was started with `$NOTIFY_SOCKET`.
    public static var expected: Bool { Environment.value("NOTIFY_SOCKET") != nil }
}
