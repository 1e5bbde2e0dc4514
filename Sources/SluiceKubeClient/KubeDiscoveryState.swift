import Foundation
import SluiceKube

/// What the watchers and the applier share: the cache, the `ApplyCoalescer`, re-list
/// requests and the watchers' heartbeats. One lock (`condition`) guards all of it; the
/// applier thread sleeps on it until there is work.
///
/// Threads: watchers (Swift tasks) write events and lists; the applier thread takes work;
/// the control thread requests re-lists and stops; the admin server reads health. Every call
/// is short (no I/O under the lock).
public final class KubeDiscoveryState: @unchecked Sendable {
    public typealias Instant = ContinuousClock.Instant
    // SAFETY (@unchecked Sendable): every stored var below is read and written only while
    // `condition` is locked.
    private let condition = NSCondition()
    private var cache = KubeCache()
    private var coalescer: ApplyCoalescer
    private var relist: Set<KubeResource> = []
    /// Until when each watcher promised to show progress (see `heartbeat`).
    private var alive: [KubeResource: Instant] = [:]
    /// How many times a watcher had a request answered with a 2xx (see `serverAnswered`).
    private var answers: UInt64 = 0
    /// The resources whose watch streams now (for the admin listener's metrics).
    private var streaming: Set<KubeResource> = []
    /// When the applier last left the table in force matching the cache (applied, or found
    /// nothing to change).
    private var lastSync: Date?
    private var stopped = false
    /// The Services whose inputs changed since the applier last took work, unless
    /// `changedAll` (a list came in): then everything is translated again.
    private var changedServices: Set<KubeObjectKey> = []
    private var changedAll = true
    /// The EndpointSlices joined to each Service (by key), so that a Service's inputs are
    /// found without a scan.
    private var slicesByService: [KubeObjectKey: [KubeObjectKey]] = [:]

    /// `servingHash`: the content hash of the initial snapshot the loops started with.
    public init(servingHash: UInt64) {
        coalescer = ApplyCoalescer(servingHash: servingHash)
    }

    private func locked<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    // MARK: Watchers

    /// Whether `resource` must be listed before it is watched (never listed, a 410, or a
    /// re-list asked for), and the resourceVersion to watch from otherwise.
    public func watchStart<Object: KubeWatchable>(_ type: Object.Type) -> String? {
        locked {
            relist.contains(Object.resource) ? nil : Object.resourceVersion(in: cache)
        }
    }

    /// A complete list (every page) of `Object` taken at `resourceVersion`, received at `at`.
    /// Replaces every stored object; clears a pending re-list request.
    public func storeList<Object: KubeWatchable>(_ items: [Object], resourceVersion: String?, at: Instant) {
        locked {
            Object.replace(in: &cache, with: items, resourceVersion: resourceVersion)
            if Object.resource == .endpointSlices {
                slicesByService = [:]
                for (key, slice) in cache.endpointSlices.items {
                    if let service = slice.serviceKey { slicesByService[service, default: []].append(key) }
                }
            }
            changedAll = true
            relist.remove(Object.resource)
            if coalescer.listed(Object.resource, at: at) { condition.broadcast() }
        }
    }

    /// One watch event, received at `at`. Wakes the applier when it changed the cache.
    public func apply<Object: KubeWatchable>(_ event: KubeWatchEvent<Object>, at: Instant) -> KubeStore<Object>.Outcome
    {
        locked {
            let object: Object?
            switch event {
            case .added(let given), .modified(let given), .deleted(let given): object = given
            case .bookmark, .error: object = nil
            }
            let before = object.flatMap { Object.stored($0.key, in: cache) }
            let outcome = Object.apply(event, to: &cache)
            if outcome == .changed, let object {
                let after = Object.stored(object.key, in: cache)
                for service in [before?.serviceKey, after?.serviceKey].compactMap({ $0 }) {
                    changedServices.insert(service)
                }
                if Object.resource == .endpointSlices {
                    if let service = before?.serviceKey {
                        slicesByService[service]?.removeAll { $0 == object.key }
                        if slicesByService[service]?.isEmpty == true { slicesByService[service] = nil }
                    }
                    if let service = after?.serviceKey { slicesByService[service, default: []].append(object.key) }
                }
            }
            if outcome == .changed, coalescer.changed(at: at) { condition.broadcast() }
            return outcome
        }
    }

    /// SIGHUP (every kind) or a 410 at watch start (one): list before the next watch.
    public func requestRelist(_ resources: [KubeResource] = KubeResource.allCases) {
        locked { relist.formUnion(resources) }
    }

    /// Whether a re-list was asked for while `resource` is being watched.
    public func relistRequested(_ resource: KubeResource) -> Bool {
        locked { relist.contains(resource) }
    }

    /// A watcher's request was answered with a 2xx (a list page, a watch started): the API
    /// server is reachable. A watcher backing off meanwhile retries at once (`answerCount`),
    /// so that one kind does not stay behind the other after an outage.
    public func serverAnswered() {
        locked { answers &+= 1 }
    }

    /// The watch of `resource` streams (`true`: its response began) or ended (`false`).
    public func watchStreaming(_ resource: KubeResource, _ on: Bool) {
        locked {
            if on { streaming.insert(resource) } else { streaming.remove(resource) }
        }
    }

    /// Per resource, whether its watch streams now.
    public var watchesStreaming: [(resource: KubeResource, streaming: Bool)] {
        locked { KubeResource.allCases.map { ($0, streaming.contains($0)) } }
    }

    /// When the table in force last matched the cluster state as cached; nil before that.
    public var lastSyncTime: Date? { locked { lastSync } }

    /// Moves on each `serverAnswered`; compared for equality only.
    public var answerCount: UInt64 { locked { answers } }

    /// The watcher of `resource` is working and will show progress again before `until`.
    public func heartbeat(_ resource: KubeResource, until: Instant) {
        locked { alive[resource] = until }
    }

    /// Both watchers are running and none has missed its promised progress (what `/healthz`
    /// adds to the loops' liveness). A watcher backing off from an unreachable API server is
    /// alive: restarting the process would not help.
    public func watchersAlive(now: Instant = .now) -> Bool {
        locked {
            !stopped && KubeResource.allCases.allSatisfy { resource in alive[resource].map { now < $0 } ?? false }
        }
    }

    /// The first full sync is in force (what `/readyz` reports).
    public var isReady: Bool { locked { coalescer.ready } }

    public var isSynced: Bool { locked { coalescer.synced } }

    // MARK: Applier

    /// One translation to run: the coalescer's work, what changed in the cache since the last
    /// one, and the cache's size.
    public struct Job: Sendable {
        public var work: ApplyCoalescer.Work
        /// The whole cache after a list, else the inputs of the Services that changed.
        public var change: KubeCacheChange
        public var services: Int
        public var endpointSlices: Int
    }

    /// Blocks until there is work or `stop` was called (nil). The applier thread only.
    /// O(changed Services) under the lock; after a list the cache is shared (copy on write).
    public func waitForWork() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if stopped { return nil }
            if let work = coalescer.takeWork() {
                let change: KubeCacheChange
                if changedAll {
                    change = .all(cache)
                } else {
                    var inputs: [KubeObjectKey: KubeServiceInputs] = [:]
                    for key in changedServices {
                        let slices = (slicesByService[key] ?? []).compactMap { cache.endpointSlices.items[$0] }
                        inputs[key] = KubeServiceInputs(
                            service: cache.services.items[key], slices: slices.sorted { $0.key < $1.key })
                    }
                    change = .services(inputs)
                }
                changedAll = false
                changedServices = []
                return Job(
                    work: work, change: change, services: cache.services.items.count,
                    endpointSlices: cache.endpointSlices.items.count)
            }
            condition.wait()
        }
    }

    /// See `ApplyCoalescer.decide`: an `.apply` generation is taken for good. The applier
    /// thread only, between `waitForWork` and `finish`.
    public func decide(hash: UInt64) -> ApplyCoalescer.Decision {
        locked { coalescer.decide(hash: hash) }
    }

    /// See `ApplyCoalescer.finish`. The applier thread only.
    public func finish(_ outcome: ApplyCoalescer.Outcome) {
        locked {
            _ = coalescer.finish(outcome)
            if case .failed = outcome { return }
            lastSync = Date()
        }
    }

    /// The last generation every loop confirmed (for log lines).
    public var confirmedGeneration: UInt64 { locked { coalescer.confirmedGeneration } }

    /// Ends `waitForWork` (now or at its next call) and marks the watch as not alive.
    public func stop() {
        locked {
            stopped = true
            condition.broadcast()
        }
    }
}
