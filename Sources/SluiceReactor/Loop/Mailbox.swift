import SluiceRouting
import SluiceSystem
import Synchronization

/// What the control plane tells a loop.
enum LoopMessage: Sendable {
    /// Swap in a new routing table. `sockets` holds this loop's listening socket for every
    /// listener key the loop does not have yet; the loop takes ownership of them. The loop
    /// counts `applied` down once the table is in force. `remap` maps the previous snapshot's
    /// indices into this one's by identity (computed once for all loops).
    case snapshot(RoutingSnapshot, sockets: [ListenerKey: Int32], remap: SnapshotRemap, applied: CountdownLatch)
    /// Keep accepting, but every HTTP/1 response from now on closes its client
    /// (`Connection: close`): the first step of a drain, while `/readyz` already says 503.
    case closeKeepAlive
    /// Stop accepting; exit once every connection closed or at `deadline` (monotonic ms).
    case drain(deadline: Int64)
    /// Log this loop's counters.
    case report
    /// Count `answered` down: the loop is turning (a liveness probe).
    case ping(CountdownLatch)
    /// Put this loop's metrics sample into the collection (a scrape).
    case collect(MetricsCollection)
}

/// A small locked queue plus an eventfd wake-up: the only cross-thread path into a loop.
/// The loop takes messages only when the eventfd fires, so the lock is never on the data path.
final class Mailbox: Sendable {
    let wake: EventFD
    private let queue = Mutex<[LoopMessage]>([])

    init() throws(Errno) { wake = try EventFD() }

    /// Any thread.
    func post(_ message: LoopMessage) {
        queue.withLock { $0.append(message) }
        wake.signal()
    }

    /// The loop thread: everything posted so far, oldest first.
    func take() -> [LoopMessage] {
        wake.drain()
        return queue.withLock { messages in
            let taken = messages
            messages.removeAll(keepingCapacity: true)
            return taken
        }
    }
}
