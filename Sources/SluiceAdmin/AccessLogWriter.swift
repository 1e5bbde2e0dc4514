import Logging
import SluiceReactor
import SluiceRouting
import SluiceSystem
import Synchronization

/// The access-log writer: one thread that drains every loop's `AccessLogRing` every
/// `settings.intervalMillis`, formats the records into one reused buffer and writes it with
/// write(2) to standard output or an append-only file.
///
/// The loops never wait for it and never make a syscall for the log: they fill ring slots
/// with plain stores, and a full ring drops the record (counted by the ring). A slow or
/// blocked destination therefore blocks only this thread; the rings fill and the loops drop.
///
/// | state    | entered by            | the writer thread                         | leaves by |
/// | -------- | --------------------- | ----------------------------------------- | --------- |
/// | opened   | `init` (opens output) | not started                               | `start`, or `stop` (closes) |
/// | running  | `start(rings:)`       | sleeps, drains, writes; reopens on demand | `stop` |
/// | stopped  | `stop`                | one last drain, then closes the file      | — |
///
/// Invariants: the output descriptor, buffer and formatter are touched by the writer thread
/// only while it runs (by the caller before `start` and after `stop`); other threads talk to
/// it through atomics (`reopen` sets a flag the thread acts on, so a reopen never races a
/// write); records are written in ring order, loop after loop (lines of different loops are
/// not merged by time).
public final class AccessLogWriter: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): the `var`s below and the buffer are used by one thread at
    // a time, as the state table says: the creating thread until `start`, the writer thread
    // from `start` until it counts down `finished`, the stopping thread after that. The
    // handover is ordered by thread creation and by the latch's mutex. `rings` is set before
    // the thread starts and only read afterwards (`dropped`, from any thread). Everything
    // else shared across threads while running is an atomic.
    public let settings: AccessLogSettings
    private let logger: Logger

    private var output: LogFile
    private var formatter: AccessLogFormatter
    private var rings: [AccessLogRing] = []
    private let buffer: UnsafeMutablePointer<UInt8>
    private let bufferCapacity: Int
    private var buffered = 0
    private var bufferedRecords = 0
    private var reportedDrops = 0
    private var lastDropWarningMillis = Int64.min
    private var lastErrorMillis = Int64.min
    private var thread: ThreadHandle?

    private let reopenRequested = Atomic<Bool>(false)
    private let writtenCount = Atomic<Int>(0)
    private let failedCount = Atomic<Int>(0)
    private let reopenCount = Atomic<Int>(0)
    private let stopSignal = CountdownLatch(count: 1)
    private let finished = CountdownLatch(count: 1)
    private let stopped = Atomic<Bool>(false)

    /// Warnings about drops and write errors come at most this often.
    static let warningIntervalMillis: Int64 = 10_000

    /// Opens the destination (a file: created 0640 when missing, appended to). Throws
    /// `AccessLogError` naming the path and the reason when it cannot be opened.
    /// `bufferBytes`: the write buffer (one write(2) per drain, or per this many bytes).
    public init(settings: AccessLogSettings, logger: Logger, bufferBytes: Int = 256 << 10) throws(AccessLogError) {
        self.settings = settings
        self.logger = logger
        output = try Self.open(settings.destination)
        formatter = AccessLogFormatter(format: settings.format)
        bufferCapacity = max(bufferBytes, 2 * AccessLogFormatter.maxLineBytes)
        buffer = .allocate(capacity: bufferCapacity)
    }

    deinit { buffer.deallocate() }

    /// Starts the thread that drains `rings` (`Reactor.accessLogRings`). Call once.
    public func start(rings: [AccessLogRing]) {
        precondition(thread == nil, "AccessLogWriter.start called twice")
        attach(rings)
        let interval = Int64(max(settings.intervalMillis, 1))
        thread = Threads.spawn { [self] in
            while !stopSignal.wait(timeoutMillis: interval) { drainOnce() }
            drainOnce()
            finish()
            finished.countDown()
        }
    }

    /// Asks the writer to reopen its file by path (after `mv` for log rotation): lines
    /// already formatted go to the old file, later ones to a new file at the path. Any
    /// thread; returns at once, the writer acts before its next drain. Standard output is
    /// left as it is.
    public func reopen() {
        reopenRequested.store(true, ordering: .releasing)
    }

    /// Stops the thread after a last drain of the rings (call it once the loops have
    /// stopped, so nothing is left behind) and closes the file. Waits at most
    /// `timeoutMillis` for a blocked destination; false when it gave up (the process may
    /// then exit with the thread still in write(2)).
    @discardableResult
    public func stop(timeoutMillis: Int64 = 5_000) -> Bool {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return true }
        guard let thread else {
            finish()
            return true
        }
        stopSignal.countDown()
        guard finished.wait(timeoutMillis: timeoutMillis) else {
            logger.error(
                "access log: the destination \(settings.destination) blocked the last write for \(timeoutMillis) ms; exiting without it"
            )
            return false
        }
        thread.join()
        return true
    }

    /// Records written to the destination.
    public var written: Int { writtenCount.load(ordering: .relaxed) }
    /// Records the loops dropped because their ring was full, all loops together.
    public var dropped: Int { rings.reduce(0) { $0 + $1.dropped } }
    /// Records lost because a write failed (disk full, closed pipe).
    public var failed: Int { failedCount.load(ordering: .relaxed) }
    /// Times the file was reopened.
    public var reopened: Int { reopenCount.load(ordering: .relaxed) }

    /// "written=… dropped=… failed=…", for SIGUSR1.
    public var summary: String { "written=\(written) dropped=\(dropped) failed=\(failed) reopened=\(reopened)" }

    // MARK: - The writer thread

    /// The rings `drainOnce` empties; set before the thread starts, read-only afterwards.
    func attach(_ rings: [AccessLogRing]) {
        self.rings = rings
    }

    /// One pass: reopen when asked, then every ring's records into the buffer (written out
    /// whenever it cannot hold one more line, and at the end), then a warning if the loops
    /// dropped records since the last one. On the writer thread (or the owner when not
    /// started: tests drive it by hand).
    func drainOnce() {
        if reopenRequested.exchange(false, ordering: .acquiringAndReleasing) { reopenOutput() }
        formatter.wallOffsetMicros = WallClock.nowMicros() &- MonotonicClock.nowMicros()
        for ring in rings {
            ring.drain { record in
                if bufferCapacity &- buffered < AccessLogFormatter.maxLineBytes { flush() }
                // SAFETY: at least `maxLineBytes` are free past `buffered` (flushed above),
                // which is all `write` may use.
                buffered &+= formatter.write(record, into: buffer + buffered)
                bufferedRecords &+= 1
            }
        }
        flush()
        warnAboutDrops(force: false)
    }

    /// Writes the buffer out and empties it; on failure the lines are lost (counted) and the
    /// error logged, rate-limited.
    private func flush() {
        guard buffered > 0 else { return }
        do {
            try output.write(UnsafeRawBufferPointer(start: buffer, count: buffered))
            writtenCount.wrappingAdd(bufferedRecords, ordering: .relaxed)
        } catch {
            failedCount.wrappingAdd(bufferedRecords, ordering: .relaxed)
            let now = MonotonicClock.nowMillis()
            if lastErrorMillis == .min || now - lastErrorMillis >= Self.warningIntervalMillis {
                lastErrorMillis = now
                logger.error(
                    "access log: cannot write to \(settings.destination): \(error); \(failed) records lost so far")
            }
        }
        buffered = 0
        bufferedRecords = 0
    }

    private func reopenOutput() {
        guard case .file(let path) = settings.destination else {
            logger.info("access log: reopen asked; \(settings.destination) is not a file, nothing to do")
            return
        }
        flush()
        do {
            let fresh = try LogFile.open(path: path)
            output.close()
            output = fresh
            reopenCount.wrappingAdd(1, ordering: .relaxed)
            logger.notice("access log: reopened \(path)")
        } catch {
            logger.error("access log: cannot reopen \(path): \(error); still writing to the file opened before")
        }
    }

    /// A warning when the rings dropped records since the last one: at once the first time,
    /// then at most every `warningIntervalMillis` (or now, when `force`).
    private func warnAboutDrops(force: Bool) {
        let total = dropped
        guard total > reportedDrops else { return }
        let now = MonotonicClock.nowMillis()
        guard force || lastDropWarningMillis == .min || now - lastDropWarningMillis >= Self.warningIntervalMillis
        else { return }
        logger.warning(
            "access log: \(total - reportedDrops) records dropped (\(total) in all): the loops found their rings full; the destination is slower than the traffic, or accessLog.buffer is too small"
        )
        reportedDrops = total
        lastDropWarningMillis = now
    }

    /// After the last drain: the drops not yet reported, the totals, and the file closed.
    private func finish() {
        warnAboutDrops(force: true)
        output.close()
        logger.info("access log: closed \(settings.destination): \(summary)")
    }

    private static func open(_ destination: AccessLogSettings.Destination) throws(AccessLogError) -> LogFile {
        switch destination {
        case .standardOutput: return .standardOutput
        case .standardError: return .standardError
        case .file(let path):
            do {
                return try LogFile.open(path: path)
            } catch {
                throw AccessLogError(path: path, reason: error.description)
            }
        }
    }
}

/// The access-log file could not be opened.
public struct AccessLogError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String

    public var description: String { "cannot open \(path): \(reason)" }
}
