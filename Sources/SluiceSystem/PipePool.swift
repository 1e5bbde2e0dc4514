import CShims

/// A pipe for splice: bytes go socket → `write` end … `read` end → socket.
public struct Pipe: Equatable, Sendable {
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
/// flight) is closed, not pooled, so no byte leaks into another connection.
public struct PipePool: ~Copyable {
    private var idle: UnsafeMutablePointer<Pipe>
    private var idleCount = 0
    public let maxIdle: Int
    /// The size asked for with F_SETPIPE_SZ.
    public let requestedSize: Int
    /// The size the kernel granted to the last pipe made (capped by /proc/sys/fs/pipe-max-size).
    public private(set) var grantedSize: Int
    public private(set) var created = 0
    public private(set) var inUse = 0

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

    /// A pipe, from the pool or new. Throws when the process is out of descriptors.
    @inline(__always)
    public mutating func acquire() throws(Errno) -> Pipe {
        inUse += 1
        if idleCount > 0 {
            idleCount -= 1
            return idle[idleCount]
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
        if requestedSize > 0 {
            let granted = sluice_pipe_set_size(fds.1, Int32(requestedSize))
            if granted > 0 { grantedSize = Int(granted) }
        }
        return Pipe(readFD: fds.0, writeFD: fds.1)
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
