import CShims

/// A pipe for splice: bytes go socket → `write` end … `read` end → socket.
public struct Pipe: Equatable, Sendable, BitwiseCopyable {
    public var readFD: Int32
    public var writeFD: Int32
    public static let none = Pipe(readFD: -1, writeFD: -1)
    public var isNone: Bool { readFD < 0 }
}

/// Pipes for splice, pooled per loop and held by a connection only while bytes are in
/// flight. Owned by one loop thread; no locks.
///
/// Invariants: every pipe in `idle` is empty; `acquire` never returns a pipe that another
/// holder still has; a pipe that comes back non-empty (a connection aborted with bytes in
/// flight) is closed, not pooled, so no byte leaks into another connection; `grantedSize` is
/// never more than the capacity of the pipe `acquire` returned last (a flow sized larger
/// than its pipe would wait for room that never comes).
///
/// Sizes: F_SETPIPE_SZ can be refused (EPERM once the user's pipe budget,
/// /proc/sys/fs/pipe-user-pages-soft, is spent, as in a busy non-root pod; over that budget
/// the kernel even makes new pipes smaller than the default). A refused pipe keeps the size
/// it has, read back with F_GETPIPE_SZ, and is used at that size. While every pipe made has
/// the same size the pool knows it without a syscall; once sizes differ, a pipe taken from
/// the idle list has its size read back.
public struct PipePool: ~Copyable {
    private var idle: UnsafeMutablePointer<Pipe>
    private var idleCount = 0
    public let maxIdle: Int
    /// The size asked for with F_SETPIPE_SZ (0 or less: none asked, the kernel's default).
    public let requestedSize: Int
    /// The capacity of the pipe the last `acquire` returned: what F_SETPIPE_SZ granted (at
    /// most /proc/sys/fs/pipe-max-size) or, when it was refused, what F_GETPIPE_SZ reads
    /// back. Read it right after `acquire`, for that pipe.
    public private(set) var grantedSize: Int
    public private(set) var created = 0
    public private(set) var inUse = 0
    /// F_SETPIPE_SZ calls refused so far; the pipes concerned have a smaller size.
    public private(set) var setSizeFailures = 0
    /// Why the first F_SETPIPE_SZ was refused, and the size that pipe got instead.
    public private(set) var firstSetSizeFailure: (errno: Errno, size: Int)?
    private var warned = false
    /// The size of every pipe made so far: 0 before the first, -1 once two differ.
    private var uniformSize = 0

    public init(pipeSize: Int, maxIdle: Int) {
        self.maxIdle = max(maxIdle, 0)
        requestedSize = pipeSize
        grantedSize = 65536
        idle = .allocate(capacity: max(maxIdle, 1))
    }

    deinit {
        for index in 0..<idleCount {
            Syscall.close(idle[index].readFD)
            Syscall.close(idle[index].writeFD)
        }
        idle.deallocate()
    }

    /// A pipe, from the pool or new; `grantedSize` is then its capacity. Throws when the
    /// process is out of descriptors.
    @inline(__always)
    public mutating func acquire() throws(Errno) -> Pipe {
        inUse += 1
        if idleCount > 0 {
            idleCount -= 1
            let pipe = idle[idleCount]
            if uniformSize < 0 { grantedSize = Self.capacity(of: pipe.writeFD) }
            return pipe
        }
        var fds: (Int32, Int32) = (-1, -1)
        let result = withUnsafeMutablePointer(to: &fds) {
            $0.withMemoryRebound(to: Int32.self, capacity: 2) { sluice_pipe($0) }
        }
        if result < 0 {
            inUse -= 1
            throw Errno(rawValue: -result)
        }
        created += 1
        let size = sized(fds.1)
        grantedSize = size
        if uniformSize == 0 {
            uniformSize = size
        } else if uniformSize != size {
            uniformSize = -1
        }
        return Pipe(readFD: fds.0, writeFD: fds.1)
    }

    /// Asks for `requestedSize` on a new pipe; returns the capacity it has afterwards.
    private mutating func sized(_ writeFD: Int32) -> Int {
        guard requestedSize > 0 else { return Self.capacity(of: writeFD) }
        var granted = 0
        #if DEBUG
            granted = FaultInjection.pipeSetSizeErrno != 0 ? -Int(FaultInjection.pipeSetSizeErrno) : 0
        #endif
        if granted == 0 { granted = Int(sluice_pipe_set_size(writeFD, Int32(clamping: requestedSize))) }
        if granted > 0 { return granted }
        let size = Self.capacity(of: writeFD)
        setSizeFailures += 1
        if firstSetSizeFailure == nil { firstSetSizeFailure = (Errno(rawValue: Int32(-granted)), size) }
        return size
    }

    /// F_GETPIPE_SZ, or one page (the least any pipe holds) should it fail.
    private static func capacity(of fd: Int32) -> Int {
        let size = sluice_pipe_get_size(fd)
        return size > 0 ? Int(size) : 4096
    }

    /// Once, after the first refused F_SETPIPE_SZ: a line for the loop to log, e.g.
    /// `F_SETPIPE_SZ 1048576 refused (Operation not permitted): splicing through pipes of
    /// 65536 bytes (per-user pipe budget: /proc/sys/fs/pipe-user-pages-soft)`. Nil before a
    /// refusal and after the first call that returned the line.
    public mutating func takeSetSizeWarning() -> String? {
        guard !warned, let failure = firstSetSizeFailure else { return nil }
        warned = true
        return "F_SETPIPE_SZ \(requestedSize) refused (\(failure.errno)): splicing through pipes of "
            + "\(failure.size) bytes (per-user pipe budget: /proc/sys/fs/pipe-user-pages-soft)"
    }

    /// Gives a pipe back. `empty` is false when bytes may remain in it: it is closed then.
    @inline(__always)
    public mutating func release(_ pipe: Pipe, empty: Bool) {
        inUse -= 1
        if empty && idleCount < maxIdle {
            idle[idleCount] = pipe
            idleCount += 1
        } else {
            Syscall.close(pipe.readFD)
            Syscall.close(pipe.writeFD)
        }
    }

    public var idleCountForTesting: Int { idleCount }
}
