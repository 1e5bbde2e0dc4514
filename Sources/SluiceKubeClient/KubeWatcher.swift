import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import SluiceKube
import Synchronization

/// Lists then watches one kind, forever, feeding `KubeDiscoveryState`.
///
/// | step            | success                              | failure                                   |
/// | --------------- | ------------------------------------ | ----------------------------------------- |
/// | LIST (paged)    | store replaced, WATCH from list's RV | back off (jittered, Retry-After), LIST    |
/// | WATCH           | events applied; clean end → WATCH    | 410 / ERROR 410 → LIST; other → back off, |
/// |                 | from the last RV                     | WATCH from the last RV                    |
/// | idle too long   | —                                    | connection dropped, WATCH again           |
/// | re-list asked   | watch dropped, LIST                  | —                                         |
///
/// Errors never clear the store: the last good table keeps serving until a list replaces it.
/// Back-off (`RetryBackoff`): at most about a second while the API server cannot be reached;
/// a request of either watcher answered again ends the other's wait, so both kinds list again
/// together after an outage. One task runs `run()`; cancelling it ends the loop.
final class KubeWatcher<Object: KubeWatchable>: Sendable {
    let client: KubeAPIClient
    let state: KubeDiscoveryState
    let settings: KubeWatchSettings
    let logger: Logger
    var resource: KubeResource { Object.resource }

    init(client: KubeAPIClient, state: KubeDiscoveryState, settings: KubeWatchSettings, logger: Logger) {
        self.client = client
        self.state = state
        self.settings = settings
        self.logger = logger
    }

    enum WatchEnd {
        /// The server ended the body; `lines` events (bookmarks included) came before.
        case closed(lines: Int, after: Duration)
        /// The store needs a list first (410 event, or a re-list request).
        case relist
    }

    private enum Phase: String {
        case list, watch
    }

    /// The back-off and its log lines over one watcher's run of failures.
    private struct Retrying {
        var backoff: RetryBackoff
        var log = RetryLog()

        /// A request went through: the next failure waits the initial step and is logged.
        mutating func succeeded() {
            backoff.reset()
            log.succeeded()
        }
    }

    /// Lists and watches until the task is cancelled (see the table above). The task of
    /// `KubeDiscovery.start` only.
    func run() async {
        var retry = Retrying(
            backoff: RetryBackoff(initial: settings.backoffInitial, maximum: settings.backoffMaximum))
        var pageLimit = KubeAPIPath.pageSize
        let margin = Duration.seconds(30)
        // A dead connection is replaced at once; only a second one in a row backs off.
        var idleInARow = 0
        while !Task.isCancelled {
            state.heartbeat(resource, until: .now + settings.listTimeout + margin)
            var phase = Phase.list
            do {
                let from: String
                if let resourceVersion = state.watchStart(Object.self) {
                    from = resourceVersion
                } else {
                    from = try await list(pageLimit: &pageLimit)
                    retry.succeeded()
                }
                phase = .watch
                let end = try await watch(from: from)
                idleInARow = 0
                switch end {
                case .relist:
                    continue
                case .closed(let lines, let after):
                    logger.debug("\(resource) watch ended by the server after \(lines) events; watching again")
                    if lines > 0 || after >= .seconds(1) {
                        retry.succeeded()
                        continue
                    }
                    // A server that ends every watch at once must not be hammered.
                    try await pause(after: .answered, reason: "the watch ended at once", retry: &retry)
                }
            } catch is CancellationError {
                return
            } catch let error as KubeAPIError {
                if case .idle = error {
                    idleInARow += 1
                    if idleInARow == 1 {
                        logger.warning("\(resource) watch: \(error); watching again")
                        continue
                    }
                } else {
                    idleInARow = 0
                }
                if error.isGone && phase == .watch {
                    logger.info("\(resource) watch: resourceVersion too old (410); listing again")
                    state.requestRelist([resource])
                    continue
                }
                do {
                    try await pause(
                        after: error.failure, retryAfter: error.retryAfter,
                        reason: "\(phase.rawValue) failed: \(error)", retry: &retry)
                } catch {
                    return
                }
            } catch {
                do {
                    try await pause(after: .answered, reason: "\(phase.rawValue) failed: \(error)", retry: &retry)
                } catch {
                    return
                }
            }
        }
    }

    /// Waits before the next attempt after a failure of kind `failure`: the back-off's next
    /// delay (or a longer `retryAfter`), logged as a warning or, while the same failure
    /// repeats, at debug level (`RetryLog`). Keeps the heartbeat promise. Ends early on a
    /// re-list request (SIGHUP), and when the other watcher has a request answered meanwhile
    /// (but not before `retryAfter` has passed): the API server is back, so this one retries
    /// at once with its back-off started over. Throws when cancelled.
    private func pause(
        after failure: RetryBackoff.Failure, retryAfter: Duration? = nil, reason: String, retry: inout Retrying
    ) async throws {
        let delay = retry.backoff.next(failure, retryAfter: retryAfter)
        let now = ContinuousClock.now
        let line = "\(resource) \(reason); retrying in \(delay.wholeMilliseconds) ms (serving the last good table)"
        let verdict = retry.log.failed(reason, at: now)
        if !verdict.warn {
            logger.debug("\(line)")
        } else if verdict.quietSince > 0 {
            logger.warning("\(line); \(verdict.quietSince) retries since the last warning")
        } else {
            logger.warning("\(line)")
        }
        let wake = now + delay
        state.heartbeat(resource, until: wake + settings.listTimeout + .seconds(30))
        // A Retry-After is the server's own request: the other watcher's answer does not cut it.
        let earliest = now + (retryAfter ?? .zero)
        let answers = state.answerCount
        while ContinuousClock.now < wake, !state.relistRequested(resource) {
            if state.answerCount != answers, ContinuousClock.now >= earliest {
                logger.info("\(resource): the API server answers again; retrying now")
                retry.backoff.reset()
                return
            }
            try await Task.sleep(for: min(wake - .now, .milliseconds(100)))
        }
    }

    /// Every page of the collection, stored as one list. Returns the list's resourceVersion.
    ///
    /// `pageLimit` is the `limit=` asked for. A page whose body is larger than
    /// `settings.maxListPageBytes` is refused (logged as an error) and asked for again at
    /// once with a quarter of the items, from the same continue token; the smaller limit is
    /// kept for later lists. A page of one item still too large throws `.tooLarge`.
    func list(pageLimit: inout Int) async throws -> String {
        var items: [Object] = []
        var token: String?
        var resourceVersion: String?
        var pages = 0
        while true {
            let target = KubeAPIPath.list(
                resource, namespace: settings.namespace, limit: pageLimit, continueToken: token)
            let body: Data
            do {
                body = try await client.get(target, timeout: settings.listTimeout, maxBytes: settings.maxListPageBytes)
                state.serverAnswered()
            } catch KubeAPIError.tooLarge(let limit) {
                state.serverAnswered()
                guard pageLimit > 1 else {
                    logger.error(
                        "\(resource) list page \(pages + 1) of one item is larger than \(KubeAPIError.size(limit)): refused"
                    )
                    throw KubeAPIError.tooLarge(limit: limit)
                }
                let smaller = max(1, pageLimit / 4)
                logger.error(
                    "\(resource) list page \(pages + 1) of up to \(pageLimit) items is larger than \(KubeAPIError.size(limit)): refused; asking for \(smaller) items per page"
                )
                pageLimit = smaller
                continue
            }
            let page: KubeList<Object>
            do {
                page = try KubeList<Object>.decode(body)
            } catch {
                throw KubeAPIError.malformed("\(resource) list page \(pages + 1) is not a list: \(error)")
            }
            if resourceVersion == nil { resourceVersion = page.metadata.resourceVersion }
            items += page.items
            token = page.metadata.continueToken
            pages += 1
            state.heartbeat(resource, until: .now + settings.listTimeout + .seconds(30))
            if (token ?? "").isEmpty { break }
        }
        guard let resourceVersion, !resourceVersion.isEmpty else {
            throw KubeAPIError.malformed("\(resource) list has no resourceVersion")
        }
        state.storeList(items, resourceVersion: resourceVersion, at: .now)
        logger.info("listed \(resource) items=\(items.count) pages=\(pages) resourceVersion=\(resourceVersion)")
        return resourceVersion
    }

    /// One watch from `resourceVersion`, until the server ends it, the store needs a list, or
    /// it fails (throws `KubeAPIError`, or CancellationError).
    func watch(from resourceVersion: String) async throws -> WatchEnd {
        let target = KubeAPIPath.watch(
            resource, namespace: settings.namespace, resourceVersion: resourceVersion,
            timeoutSeconds: settings.watchTimeoutSeconds)
        let started = ContinuousClock.now
        let deadline = Duration.seconds(settings.watchTimeoutSeconds) + settings.idleTimeout + .seconds(30)
        let response = try await client.stream(target, timeout: deadline)
        state.serverAnswered()
        state.watchStreaming(resource, true)
        defer { state.watchStreaming(resource, false) }
        logger.debug("\(resource) watching from resourceVersion=\(resourceVersion)")
        let lastByte = LastByte(started)
        return try await withThrowingTaskGroup(of: WatchEnd.self) { group in
            group.addTask { try await self.read(response.body, lastByte: lastByte, started: started) }
            group.addTask { try await self.watchdog(lastByte) }
            defer { group.cancelAll() }
            guard let end = try await group.next() else { throw CancellationError() }
            return end
        }
    }

    /// Feeds the body's bytes through the line splitter, event by event, into the state.
    private func read(_ body: HTTPClientResponse.Body, lastByte: LastByte, started: ContinuousClock.Instant)
        async throws -> WatchEnd
    {
        var splitter = WatchLineSplitter()
        var lines = 0
        do {
            for try await buffer in body {
                let now = ContinuousClock.now
                lastByte.set(now)
                for line in try splitter.feed(buffer.readableBytesView) {
                    lines += 1
                    if try handle(line, at: now) { return .relist }
                }
            }
        } catch let error as WatchLineSplitter.SplitError {
            throw KubeAPIError.malformed("\(resource) watch: \(error)")
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as KubeAPIError {
            throw error
        } catch {
            throw KubeAPIClient.mapped(error)
        }
        if let line = splitter.finish() {
            lines += 1
            if try handle(line, at: .now) { return .relist }
        }
        return .closed(lines: lines, after: .now - started)
    }

    /// Applies one event line. Returns true when the store must be listed again.
    private func handle(_ line: [UInt8], at now: ContinuousClock.Instant) throws -> Bool {
        let event: KubeWatchEvent<Object>
        do {
            event = try KubeWatchEvent<Object>.decode(line)
        } catch .unknownType(let type) {
            logger.debug("\(resource) watch: skipping an event of type \(type)")
            return false
        } catch {
            // An object we could not read may be one we now route wrongly: start over.
            state.requestRelist([resource])
            throw KubeAPIError.malformed("\(resource) watch: \(error)")
        }
        switch state.apply(event, at: now) {
        case .changed, .unchanged:
            return false
        case .relist(let status):
            logger.info("\(resource) watch expired (\(status)); listing again")
            return true
        case .rewatch(let status):
            throw KubeAPIError.status(
                code: status.code ?? 500, retryAfter: nil, message: "watch ERROR event: \(status)")
        }
    }

    /// Ends the watch when no byte came for `idleTimeout` (throws `.idle`) or a re-list is
    /// asked for; meanwhile keeps the heartbeat fresh.
    private func watchdog(_ lastByte: LastByte) async throws -> WatchEnd {
        let tick = settings.watchdogTick
        while true {
            try await Task.sleep(for: tick)
            let now = ContinuousClock.now
            if state.relistRequested(resource) {
                logger.info("\(resource): re-list requested")
                return .relist
            }
            if now - lastByte.get() > settings.idleTimeout {
                throw KubeAPIError.idle(settings.idleTimeout)
            }
            state.heartbeat(resource, until: now + settings.idleTimeout + .seconds(30))
        }
    }
}

/// When the watch body last delivered bytes; written by the reader, read by the watchdog.
final class LastByte: Sendable {
    private let instant: Mutex<ContinuousClock.Instant>
    init(_ start: ContinuousClock.Instant) { instant = Mutex(start) }
    func set(_ now: ContinuousClock.Instant) { instant.withLock { $0 = now } }
    func get() -> ContinuousClock.Instant { instant.withLock { $0 } }
}
