import SluiceSystem
import Synchronization

/// A thread that does the admin listener's waiting work, so that the listener's own thread
/// never blocks: `/healthz` (which asks every loop to answer) and the collecting paths (which
/// wait for every loop's tables, then render them).
///
/// Jobs queue under a lock; an eventfd wakes the thread, which takes every queued job at once
/// and hands the batch to `handle` (the scrape worker collects once for the whole batch), then
/// the answers to `deliver`. A job submitted after a batch was taken waits for the next one,
/// so its answer is never older than its request.
final class AdminWorker: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `epoll` is used by the worker thread only (after `start`);
    // `queue` is a Mutex, `wake` an eventfd (thread-safe writes), `stopping` an atomic.
    struct Job: Sendable {
        var slot: Int32
        var generation: UInt32
        var route: AdminRoute
    }

    typealias Handler = @Sendable ([Job]) -> [AdminResponse]
    typealias Delivery = @Sendable ([(Job, AdminResponse)]) -> Void

    private let queue = Mutex<[Job]>([])
    private let wake: EventFD
    private let epoll: Epoll
    private let stopping = Atomic(false)
    private let handle: Handler
    private let deliver: Delivery
    private var thread: ThreadHandle?

    init(handle: @escaping Handler, deliver: @escaping Delivery) throws(Errno) {
        wake = try EventFD()
        do {
            epoll = try Epoll(capacity: 4)
            try epoll.add(wake.fd, events: Epoll.readable, data: 0)
        } catch {
            wake.close()
            throw error
        }
        self.handle = handle
        self.deliver = deliver
    }

    deinit { wake.close() }

    func start() {
        thread = Threads.spawn { [self] in run() }
    }

    /// Any thread.
    func submit(_ job: Job) {
        queue.withLock { $0.append(job) }
        wake.signal()
    }

    /// Ends the thread after the batch in hand (its answers are still delivered) and waits.
    func stop() {
        stopping.store(true, ordering: .releasing)
        wake.signal()
        thread?.join()
        thread = nil
    }

    private func run() {
        while !stopping.load(ordering: .acquiring) {
            _ = epoll.wait(timeoutMillis: -1)
            // Drained before the queue is taken: a job added later signals again.
            wake.drain()
            let jobs = queue.withLock { queued in
                let taken = queued
                queued.removeAll(keepingCapacity: true)
                return taken
            }
            if jobs.isEmpty { continue }
            let answers = handle(jobs)
            deliver(Array(zip(jobs, answers)))
        }
    }
}
