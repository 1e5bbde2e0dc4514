import Glibc
import Logging
import SluiceRouting
import SluiceSystem

/// The set of event loops, driven by the control plane (the `sluice` executable's main
/// thread). Not thread-safe itself: call it from one control thread.
///
/// Listening sockets are made here, one per loop per listener (SO_REUSEPORT), before a
/// snapshot is posted: a listener that cannot be bound fails `apply` as a whole and the old
/// table keeps serving.
public final class Reactor {
    public let workers: Int
    private var loops: [Loop] = []
    private var threads: [ThreadHandle] = []
    private var current: RoutingSnapshot
    private let logger: Logger
    /// One access-log ring per loop, in loop order; empty when no access log is written.
    public let accessLogRings: [AccessLogRing]
    /// The kernel interface every loop's driver uses.
    public let backend: IOBackend
    /// Every loop's listening socket per listener, as the loops hold them once an `apply` has
    /// returned (for a takeover by the next process).
    private var listening: [[ListenerKey: Int32]] = []

    /// Makes `workers` loops and binds every listener of `snapshot`. Throws `ReactorError`
    /// naming the listener that could not be bound.
    /// `accessLogCapacity` > 0 gives every loop an access-log ring of that many records.
    /// `inherited`: sockets of the previous process, adopted instead of binding where the
    /// address matches; those no listener takes are closed.
    public init(
        workers: Int, snapshot: RoutingSnapshot, logger: Logger, accessLogCapacity: Int = 0,
        inherited: InheritedSockets = InheritedSockets(), backend: IOBackend = .epoll
    ) throws(ReactorError) {
        precondition(workers > 0)
        self.workers = workers
        self.backend = backend
        self.logger = logger
        current = snapshot
        accessLogRings =
            accessLogCapacity > 0 ? (0..<workers).map { _ in AccessLogRing(capacity: accessLogCapacity) } : []
        do {
            for index in 0..<workers {
                loops.append(
                    try Loop(
                        index: index, workers: workers, snapshot: snapshot, logger: logger,
                        accessLog: accessLogRings.isEmpty ? nil : accessLogRings[index], backend: backend))
            }
        } catch {
            throw ReactorError(reason: "cannot create event loop: \(error)")
        }
        var inherited = inherited
        let sockets: [[ListenerKey: Int32]]
        do {
            sockets = try Self.bind(snapshot.listeners, loops: workers, inherited: &inherited)
        } catch {
            _ = inherited.closeRest()
            throw error
        }
        for (address, count) in inherited.closeRest() {
            logger.warning(
                "takeover: \(count) inherited socket(s) on \(address) closed: no listener of this process takes them (connections queued on them are reset)"
            )
        }
        listening = sockets
        for (index, loop) in loops.enumerated() {
            loop.swap(to: snapshot, sockets: sockets[index])
        }
    }

    /// Starts one thread per loop, pinned to the CPUs of the affinity mask in turn.
    public func start() {
        let cpus = Threads.affinityCPUs()
        let pin = cpus.count >= 1
        for loop in loops {
            let cpu = pin ? cpus[loop.index % cpus.count] : nil
            threads.append(Threads.spawn { loop.run(cpu: cpu) })
        }
    }

    /// The snapshot the loops run now (or are about to take).
    public var snapshot: RoutingSnapshot { current }

    /// Binds sockets for the listeners that are new in `next`, posts it to every loop and
    /// returns once every loop has it in force (removed listeners closed, new ones accepting).
    /// On a bind failure nothing is posted and the error names the listener.
    public func apply(_ next: RoutingSnapshot) throws(ReactorError) {
        let existing = Set(current.listeners.map(\.key))
        let fresh = next.listeners.filter { !existing.contains($0.key) }
        var none = InheritedSockets()
        let sockets = try Self.bind(fresh, loops: workers, inherited: &none)
        let keys = Set(next.listeners.map(\.key))
        for index in listening.indices {
            listening[index] = listening[index].filter { keys.contains($0.key) }.merging(sockets[index]) { $1 }
        }
        let remap = SnapshotRemap(from: current, to: next)
        let applied = CountdownLatch(count: loops.count)
        for (index, loop) in loops.enumerated() {
            loop.mailbox.post(.snapshot(next, sockets: sockets[index], remap: remap, applied: applied))
        }
        current = next
        if !applied.wait(timeoutMillis: 10_000) {
            throw ReactorError(reason: "generation \(next.generation) posted, but a loop has not taken it after 10 s")
        }
    }

    /// Every loop keeps accepting, but each HTTP/1 response from now on closes its client
    /// (`Connection: close`). The first step of a drain; `drain` follows.
    public func closeKeepAlive() {
        for loop in loops { loop.mailbox.post(.closeKeepAlive) }
    }

    /// The listening sockets of every loop, loop by loop, each listener in the current
    /// snapshot's order: what a takeover passes to the next process. Valid until the next
    /// `apply` or `drain`.
    public var listeningSockets: [Int32] {
        var fds: [Int32] = []
        for table in listening {
            for listener in current.listeners { if let fd = table[listener.key] { fds.append(fd) } }
        }
        return fds
    }

    /// Stops accepting on every loop; each exits when its connections are closed or at the
    /// deadline.
    public func drain(graceMillis: Int64) {
        let deadline = MonotonicClock.nowMillis() + graceMillis
        listening = []
        for loop in loops { loop.mailbox.post(.drain(deadline: deadline)) }
    }

    /// Whether every loop answers a message within `timeoutMillis`: each is turning, not
    /// wedged. Touches only the loops' mailboxes, so any thread may call it, also while
    /// another thread is in `apply`.
    public func ping(timeoutMillis: Int64) -> Bool {
        let answered = CountdownLatch(count: loops.count)
        for loop in loops { loop.mailbox.post(.ping(answered)) }
        return answered.wait(timeoutMillis: timeoutMillis)
    }

    /// Every loop's metrics, in loop order, or nil when a loop did not answer within
    /// `timeoutMillis`. Touches only the loops' mailboxes: any thread may call it, also while
    /// another thread is in `apply`.
    public func collect(timeoutMillis: Int64) -> [LoopMetricsSample]? {
        let collection = MetricsCollection(loops: loops.count)
        for loop in loops { loop.mailbox.post(.collect(collection)) }
        guard collection.done.wait(timeoutMillis: timeoutMillis) else { return nil }
        return collection.samples.compactMap { $0 }
    }

    /// Asks every loop to log its counters.
    public func report() {
        for loop in loops { loop.mailbox.post(.report) }
    }

    /// Waits for every loop thread to exit (after `drain`).
    public func join() {
        for thread in threads { thread.join() }
        threads.removeAll()
    }

    /// One listening socket per loop for each listener (an inherited one where there is one
    /// for its address); all or nothing.
    static func bind(
        _ listeners: [Listener], loops: Int, inherited: inout InheritedSockets
    ) throws(ReactorError) -> [[ListenerKey: Int32]] {
        var sockets = Array(repeating: [ListenerKey: Int32](), count: loops)
        for listener in listeners {
            let address = Loop.systemAddress(listener.address)
            for index in 0..<loops {
                if let fd = inherited.take(listener.address) {
                    sockets[index][listener.key] = fd
                    continue
                }
                do {
                    sockets[index][listener.key] = try Socket.listen(on: address)
                } catch {
                    for table in sockets { for fd in table.values { Syscall.close(fd) } }
                    throw ReactorError(
                        reason: "listener '\(listener.name)': cannot listen on \(listener.address): \(error)")
                }
            }
        }
        return sockets
    }
}

extension Reactor {
    /// What `choice` comes to here: `auto` is io_uring when a ring as the loops make it (setup
    /// flags, provided buffers, the opcodes) can be created, else epoll with `fallback`
    /// saying why; an explicit `io_uring` that cannot run is an error.
    public static func selectBackend(_ choice: IOBackendChoice) throws(ReactorError) -> (
        backend: IOBackend, fallback: String?
    ) {
        switch choice {
        case .epoll:
            return (.epoll, nil)
        case .ioUring:
            if let error = URing.probe() { throw ReactorError(reason: "io_uring: \(explain(error))") }
            return (.ioUring, nil)
        case .auto:
            guard let error = URing.probe() else { return (.ioUring, nil) }
            return (.epoll, "io_uring unavailable (\(explain(error))): using epoll")
        }
    }

    /// The probe's failure in an operator's words.
    static func explain(_ error: URingError) -> String {
        let disabled = URing.disabledSetting
        switch error.errno.rawValue {
        case EPERM:
            if let disabled, disabled != "0" {
                return "\(error.step): EPERM, kernel.io_uring_disabled=\(disabled)"
            }
            return
                "\(error.step): EPERM, blocked by a seccomp profile (container runtimes' default profiles block io_uring)"
        case ENOSYS:
            if error.step != "io_uring_setup" { return "the kernel lacks \(error.step) (ENOSYS)" }
            return "io_uring_setup: ENOSYS, not in this kernel or kernel.io_uring_disabled=\(disabled ?? "?")"
        default:
            return error.description
        }
    }
}

public struct ReactorError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}
