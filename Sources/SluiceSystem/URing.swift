import CShims
import Glibc

/// One io_uring instance with its ring of provided receive buffers, owned by one loop thread.
/// Preparing an operation only fills a submission entry; `submitAndWait` hands every
/// prepared entry to the kernel and collects completions in one system call.
///
/// The 64-bit user data is opaque here (the driver packs an operation kind, a generation and
/// a descriptor into it).
public struct URing: ~Copyable {
    private let ring: OpaquePointer
    private let completions: UnsafeMutablePointer<sluice_cqe>
    public let completionCapacity: Int
    public let bufferCount: Int
    public let bufferSize: Int
    /// How the kernel runs completion work: 2 single issuer with deferred task work (6.1+),
    /// 1 cooperative, 0 neither.
    public let setupMode: Int

    public static let bufferFlag = SLUICE_CQE_F_BUFFER
    public static let moreFlag = SLUICE_CQE_F_MORE
    public static let bufferShift = SLUICE_CQE_BUFFER_SHIFT
    public static let pollIn = SLUICE_POLLIN
    public static let pollOut = SLUICE_POLLOUT
    public static let pollReadHangup = SLUICE_POLLRDHUP

    /// A disabled ring; `start` enables it on the thread that will use it. Throws the errno
    /// and the step that failed.
    public init(entries: Int, buffers: Int, bufferSize: Int) throws(URingError) {
        var err: Int32 = 0
        var why: UnsafePointer<CChar>?
        var setup: Int32 = 0
        guard
            let ring = sluice_uring_create(UInt32(entries), UInt32(buffers), UInt32(bufferSize), &err, &why, &setup)
        else {
            throw URingError(errno: Errno(rawValue: -err), step: why.map { String(cString: $0) } ?? "setup")
        }
        self.ring = ring
        completionCapacity = entries * 2
        completions = .allocate(capacity: completionCapacity)
        bufferCount = buffers
        self.bufferSize = bufferSize
        setupMode = Int(setup)
    }

    deinit {
        sluice_uring_destroy(ring)
        completions.deallocate()
    }

    /// Whether this process may run the io_uring driver: nil, or why not.
    public static func probe() -> URingError? {
        var why: UnsafePointer<CChar>?
        var setup: Int32 = 0
        let r = sluice_uring_probe(&why, &setup)
        if r == 0 { return nil }
        return URingError(errno: Errno(rawValue: -r), step: why.map { String(cString: $0) } ?? "setup")
    }

    /// On the loop thread, before the first submission.
    public func start() throws(Errno) {
        let r = sluice_uring_start(ring)
        if r < 0 { throw Errno(rawValue: -r) }
    }

    // MARK: - Buffers

    @inline(__always)
    public func buffer(_ id: Int32) -> UnsafeMutableRawPointer { sluice_uring_buffer(ring, UInt32(id)) }

    /// Gives a provided buffer back to the kernel (published with the next submission).
    @inline(__always)
    public func recycle(_ id: Int32) { sluice_uring_recycle(ring, UInt32(id)) }

    // MARK: - Operations (false: no submission entry free, even after submitting)

    @inline(__always)
    public func receiveMultishot(_ fd: Int32, data: UInt64) -> Bool {
        sluice_uring_recv_multishot(ring, fd, data) == 0
    }

    public func acceptMultishot(_ fd: Int32, data: UInt64) -> Bool {
        sluice_uring_accept_multishot(ring, fd, data) == 0
    }

    /// MSG_NOSIGNAL | MSG_WAITALL: the completion reports the whole buffer sent, or an error.
    @inline(__always)
    public func send(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int32, data: UInt64) -> Bool {
        sluice_uring_send(ring, fd, buffer, UInt32(count), data) == 0
    }

    /// Writes `address` into `store` (128 bytes, valid until the next `submitAndWait`) and
    /// prepares the connect from there.
    public func connect(_ fd: Int32, to address: SystemAddress, store: UnsafeMutableRawPointer, data: UInt64) -> Bool {
        let length: socklen_t
        do {
            length = try address.withSockaddr { (sa, length) throws(Errno) in
                store.copyMemory(from: sa, byteCount: Int(length))
                return length
            }
        } catch {
            return false
        }
        // SAFETY: `store` now holds the sockaddr just copied (its header first).
        return sluice_uring_connect(ring, fd, store.assumingMemoryBound(to: sockaddr.self), length, data) == 0
    }

    @inline(__always)
    public func poll(_ fd: Int32, mask: UInt32, multishot: Bool, data: UInt64) -> Bool {
        sluice_uring_poll(ring, fd, mask, multishot ? 1 : 0, data) == 0
    }

    /// Closes `fd` in submission order, after the operations prepared before.
    @inline(__always)
    public func close(_ fd: Int32, data: UInt64) -> Bool {
        sluice_uring_close(ring, fd, data) == 0
    }

    @inline(__always)
    public func cancel(_ target: UInt64, data: UInt64) -> Bool {
        sluice_uring_cancel(ring, target, data) == 0
    }

    // MARK: - Completions

    /// Submits, waits up to `timeoutMillis` (-1 without bound, 0 not at all) and collects
    /// completions; their count. EINTR and a timeout are 0.
    @inline(__always)
    public func submitAndWait(timeoutMillis: Int32) -> Int {
        let n = sluice_uring_submit_wait(ring, timeoutMillis, completions, Int32(completionCapacity))
        if n >= 0 { return Int(n) }
        Syscall.bug("io_uring_enter", -n)
    }

    @inline(__always)
    public func completion(at index: Int) -> sluice_cqe { completions[index] }
}

public struct URingError: Error, CustomStringConvertible, Sendable {
    public var errno: Errno
    public var step: String
    public init(errno: Errno, step: String) {
        self.errno = errno
        self.step = step
    }
    public var description: String { "\(step): \(errno)" }
}

extension Socket {
    /// A non-blocking, close-on-exec TCP socket of `family`, not yet connected.
    public static func open(family: Int32) throws(Errno) -> Int32 {
        Int32(try Syscall.value("socket") { Int(sluice_socket(family)) })
    }

    /// SO_LINGER 0: the close that follows sends an RST.
    public static func lingerZero(_ fd: Int32) { _ = sluice_set_linger(fd, 1, 0) }

    /// The peer of a connected socket.
    public static func peer(_ fd: Int32) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return sluice_getpeername(fd, &storage, &length) == 0 ? storage : nil
    }
}

extension Errno {
    public static let canceled = Errno(rawValue: ECANCELED)
    public static let noBuffers = Errno(rawValue: ENOBUFS)
    public static let connectionAborted = Errno(rawValue: ECONNABORTED)
}

extension URing {
    /// `kernel.io_uring_disabled` (0 allowed, 1 only for a group, 2 nobody), nil where the
    /// kernel has no such setting.
    public static var disabledSetting: String? {
        CPUQuota.readText("/proc/sys/kernel/io_uring_disabled").map { $0.filter { !$0.isWhitespace } }
    }
}
