import Logging
import SluiceRouting
import SluiceSystem
import SluiceWire
import Synchronization

/// Bounds of the admin listener.
public struct AdminOptions: Sendable {
    /// Connections open at once; more are accepted and closed at once.
    public var maxConnections = 64
    /// A connection with no request in progress (new, or after an answer) is closed after this.
    public var idleMillis: Int64 = 30_000
    /// A request head must arrive whole within this long of its first byte (else 408, close).
    public var headMillis: Int64 = 10_000
    /// An answer must be taken by the client within this long (else the connection closes).
    public var writeMillis: Int64 = 30_000
    /// How long a scrape waits for every loop's tables before answering 503.
    public var collectTimeoutMillis: Int64 = 1_000
    /// Longer heads are answered 431.
    public var maxHeadBytes = 8192

    public init() {}
}

public struct AdminError: Error, CustomStringConvertible {
    public var description: String
}

/// The admin listener (`--admin-address`): HTTP/1.1 on a thread of its own with its own
/// epoll, never on an event loop and never on a SwiftNIO thread.
///
/// Requests are read with `HeadScanner` and parsed with `HTTPRequestParser`; answers go out
/// with keep-alive (HEAD without a body) or close. The admin thread itself never waits for a
/// loop: `/healthz` and the collecting paths (`/metrics`, `/routes`, `/stats`, `/stats.json`)
/// are handed to two `AdminWorker`s, one for probes and one for scrapes, so a probe never
/// queues behind a large scrape. `/readyz` is answered on the admin thread (it reads flags).
///
/// Bounds: `AdminOptions` (64 connections, idle, head and write deadlines); a malformed head
/// is 400, a head too large 431, a head too slow 408, an unknown path 404, another method
/// than GET/HEAD 405, loops that do not answer a scrape in time 503. A request with a body
/// is answered and the connection closed (the body is not read).
///
/// Threads: `init`, `start` and `close` on the control thread; everything else on the admin
/// thread, except the workers' `deliver`, which only queues under `completions` and signals.
public final class AdminServer: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): after `start`, the connection table, `epoll`, `fields`
    // and the listening socket are touched by the admin thread only; `completions` is a
    // thread-safe queue, `stopping` an atomic. `close` joins the thread before it
    // frees anything.
    let options: AdminOptions
    let source: AdminSource
    let logger: Logger
    let listenFD: Int32
    /// The address bound (the kernel's choice for port 0).
    public let boundAddress: SystemAddress
    let epoll: Epoll
    let completions: AdminCompletions
    let stopping = Atomic(false)
    var connections: [AdminConnection]
    var freeSlots: [Int32]
    var liveCount = 0
    let fields: UnsafeMutableBufferPointer<HTTPField>
    let limits: HTTPLimits
    var probeWorker: AdminWorker!
    var scrapeWorker: AdminWorker!
    var thread: ThreadHandle?
    var now: Int64 = 0
    /// Accepts stopped for want of descriptors; retried at this time.
    var acceptRetryAt: Int64 = .max
    var acceptErrorLogged = false
    /// Connections refused at `maxConnections` (tests read it; also logged once).
    let refusedCount = Atomic(0)

    static let tokenListener: UInt64 = 1
    static let tokenWake: UInt64 = 2
    static let tokenConnection: UInt64 = 3

    /// Binds `address` (SO_REUSEADDR, not SO_REUSEPORT: one admin listener per address).
    /// Throws naming the address when it cannot be bound.
    /// `inherited`: a listening socket already bound to `address` (taken over from the
    /// previous process), used instead of binding.
    public init(
        address: SluiceRouting.SocketAddress, source: AdminSource, options: AdminOptions = AdminOptions(),
        logger: Logger, inherited: Int32? = nil
    ) throws(AdminError) {
        self.options = options
        self.source = source
        self.logger = logger
        let system: SystemAddress
        switch address.ip {
        case .v4(let a): system = SystemAddress(ip: .v4(a), port: address.port)
        case .v6(let hi, let lo): system = SystemAddress(ip: .v6(hi, lo), port: address.port)
        }
        do {
            listenFD = try inherited ?? Socket.listen(on: system, backlog: 128, reusePort: false)
        } catch {
            throw AdminError(description: "admin listener: cannot listen on \(address): \(error)")
        }
        do {
            boundAddress = try Socket.localAddress(listenFD)
            epoll = try Epoll(capacity: 128)
            completions = try AdminCompletions()
            try epoll.add(listenFD, events: Epoll.readable | Epoll.edgeTrigger, data: Self.tokenListener)
            try epoll.add(completions.wake.fd, events: Epoll.readable | Epoll.edgeTrigger, data: Self.tokenWake)
        } catch {
            Syscall.close(listenFD)
            throw AdminError(description: "admin listener on \(address): \(error)")
        }
        connections = Array(repeating: AdminConnection(), count: options.maxConnections)
        freeSlots = (0..<Int32(options.maxConnections)).reversed()
        fields = .allocate(capacity: 64)
        fields.initialize(repeating: HTTPField(name: 0..<0, value: 0..<0))
        limits = HTTPLimits(maxHeadBytes: options.maxHeadBytes, maxTargetBytes: options.maxHeadBytes, maxFields: 64)
        let deliver: AdminWorker.Delivery = { [completions] answers in completions.deliver(answers) }
        do {
            probeWorker = try AdminWorker(
                handle: { [source] jobs in
                    // One probe answers every queued request: they asked at about the same time.
                    let answer = AdminAnswers.health(source)
                    return jobs.map { _ in answer }
                }, deliver: deliver)
            scrapeWorker = try AdminWorker(
                handle: { [source, timeout = options.collectTimeoutMillis] jobs in
                    AdminAnswers.collected(jobs.map(\.route), source: source, timeoutMillis: timeout)
                }, deliver: deliver)
        } catch {
            // Every stored property is set by now, so `deinit` runs and frees `fields`.
            Syscall.close(listenFD)
            throw AdminError(description: "admin listener: cannot start its workers: \(error)")
        }
    }

    deinit {
        fields.deallocate()
    }

    /// Starts the admin thread and its workers.
    public func start() {
        probeWorker.start()
        scrapeWorker.start()
        thread = Threads.spawn { [self] in run() }
    }

    /// Stops listening, closes every admin connection and ends the threads; returns once
    /// they have ended. Control thread.
    public func close() {
        guard let thread else { return }
        stopping.store(true, ordering: .releasing)
        completions.wake.signal()
        thread.join()
        self.thread = nil
        probeWorker.stop()
        scrapeWorker.stop()
    }

    /// The listening socket (for a takeover by the next process); closed by `close`.
    public var listeningSocket: Int32 { listenFD }

    /// Connections refused because `maxConnections` were open.
    public var refused: Int { refusedCount.load(ordering: .relaxed) }

    // MARK: The admin thread

    private func run() {
        while !stopping.load(ordering: .acquiring) {
            now = MonotonicClock.nowMillis()
            let n = epoll.wait(timeoutMillis: waitTimeout())
            now = MonotonicClock.nowMillis()
            for i in 0..<n {
                let data = epoll.data(at: i)
                let mask = epoll.mask(at: i)
                switch data & 0xFF {
                case Self.tokenListener: acceptAll()
                case Self.tokenWake: takeCompletions()
                case Self.tokenConnection:
                    let slot = Int32(truncatingIfNeeded: (data >> 8) & 0xFF_FFFF)
                    let generation = UInt32(truncatingIfNeeded: data >> 32)
                    onEvent(slot: slot, generation: generation, mask: mask)
                default: break
                }
            }
            expireDeadlines()
            if now >= acceptRetryAt {
                acceptRetryAt = .max
                acceptAll()
            }
        }
        for slot in 0..<Int32(connections.count) where connections[Int(slot)].live { closeConnection(slot) }
        epoll.remove(listenFD)
        Syscall.close(listenFD)
    }

    /// Until the nearest deadline, at most a second (so `stopping` is seen without a wake).
    private func waitTimeout() -> Int32 {
        var nearest = min(acceptRetryAt, now + 1_000)
        for c in connections where c.live && c.deadline < nearest { nearest = c.deadline }
        return Int32(max(0, min(nearest - now, 1_000)))
    }

    private func acceptAll() {
        while true {
            let accepted: AcceptedSocket
            do {
                switch try Socket.accept(listenFD) {
                case .wouldBlock: return
                case .done(let socket): accepted = socket
                }
            } catch {
                if error == .tooManyFiles || error == .tooManyFilesInSystem {
                    if !acceptErrorLogged {
                        logger.warning("admin listener: cannot accept: \(error); retrying every 100 ms")
                        acceptErrorLogged = true
                    }
                    acceptRetryAt = now + 100
                    return
                }
                continue  // ECONNABORTED and the like: that client is gone
            }
            guard let slot = freeSlots.popLast() else {
                Syscall.close(accepted.fd)
                if refusedCount.wrappingAdd(1, ordering: .relaxed).oldValue == 0 {
                    logger.warning(
                        "admin listener: \(options.maxConnections) connections open; refusing more (logged once)")
                }
                continue
            }
            open(slot: slot, fd: accepted.fd)
        }
    }

    private func open(slot: Int32, fd: Int32) {
        Socket.setNoDelay(fd)
        let i = Int(slot)
        connections[i].generation &+= 1
        let token = Self.tokenConnection | UInt64(UInt32(slot)) << 8 | UInt64(connections[i].generation) << 32
        do {
            try epoll.add(fd, events: Epoll.edgeTriggeredAll, data: token)
        } catch {
            Syscall.close(fd)
            freeSlots.append(slot)
            return
        }
        connections[i].state = .reading
        connections[i].fd = fd
        connections[i].input = .allocate(byteCount: options.maxHeadBytes, alignment: 8)
        connections[i].inputCount = 0
        connections[i].consumed = 0
        connections[i].scanner.reset()
        connections[i].mayRead = true
        connections[i].mayWrite = true
        connections[i].deadline = now + options.idleMillis
        liveCount += 1
    }

    func closeConnection(_ slot: Int32) {
        let i = Int(slot)
        guard connections[i].live else { return }
        epoll.remove(connections[i].fd)
        Syscall.close(connections[i].fd)
        connections[i].input?.deallocate()
        let generation = connections[i].generation
        connections[i] = AdminConnection()
        connections[i].generation = generation
        freeSlots.append(slot)
        liveCount -= 1
    }

    private func onEvent(slot: Int32, generation: UInt32, mask: UInt32) {
        let i = Int(slot)
        guard i < connections.count, connections[i].live, connections[i].generation == generation else { return }
        if mask & Epoll.error != 0 { return closeConnection(slot) }
        if mask & (Epoll.readable | Epoll.readHangup | Epoll.hangup) != 0 { connections[i].mayRead = true }
        if mask & (Epoll.writable | Epoll.hangup) != 0 { connections[i].mayWrite = true }
        drive(slot)
    }

    /// Answers the workers delivered.
    private func takeCompletions() {
        let answers = completions.take()
        for (job, response) in answers {
            let i = Int(job.slot)
            guard connections[i].state == .waiting, connections[i].generation == job.generation else { continue }
            answer(job.slot, response)
            drive(job.slot)
        }
    }

    private func expireDeadlines() {
        for slot in 0..<Int32(connections.count) {
            let i = Int(slot)
            guard connections[i].live, connections[i].deadline <= now else { continue }
            switch connections[i].state {
            case .reading where connections[i].inputCount > 0:
                // A head begun but not finished in time.
                answerError(slot, status: 408)
                drive(slot)
            default:
                closeConnection(slot)
            }
        }
    }
}

/// Answers from the workers to the admin thread: a locked queue and an eventfd that wakes
/// the admin thread's epoll.
final class AdminCompletions: Sendable {
    let wake: EventFD
    private let queue = Mutex<[(AdminWorker.Job, AdminResponse)]>([])

    init() throws(Errno) { wake = try EventFD() }

    deinit { wake.close() }

    /// A worker thread.
    func deliver(_ answers: [(AdminWorker.Job, AdminResponse)]) {
        queue.withLock { $0.append(contentsOf: answers) }
        wake.signal()
    }

    /// The admin thread: everything delivered so far. The eventfd is drained first, so an
    /// answer delivered meanwhile raises a new edge.
    func take() -> [(AdminWorker.Job, AdminResponse)] {
        wake.drain()
        return queue.withLock { queued in
            let taken = queued
            queued.removeAll(keepingCapacity: true)
            return taken
        }
    }
}
