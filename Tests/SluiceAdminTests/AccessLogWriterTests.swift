import Foundation
import Logging
import SluiceReactor
import SluiceRouting
import SluiceSystem
import Synchronization
import Testing

@testable import SluiceAdmin

/// The writer against real files: rings drained in order, rotation by rename + reopen, the
/// last drain at stop, drops and write errors counted and reported.
@Suite struct AccessLogWriterTests {
    /// A fresh directory for one test.
    private func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "sluice-accesslog-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func lines(_ path: String) throws -> [String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.isEmpty || text.hasSuffix("\n"))
        return text.split(separator: "\n").map(String.init)
    }

    /// Publishes records with statuses `statuses` to `ring` (each one dropped if full).
    private func fill(_ ring: AccessLogRing, statuses: some Sequence<Int>) {
        for status in statuses {
            guard let slot = ring.reserve() else { continue }
            var record = httpRecord()
            record.status = UInt16(status)
            slot.pointee = record
            ring.publish()
        }
    }

    private func statuses(_ lines: [String]) -> [Int] {
        lines.compactMap { line in
            guard let data = line.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return nil }
            return object["status"] as? Int
        }
    }

    @Test func drainsEveryRingIntoTheFile() throws {
        let file = try scratch() + "/access.log"
        let writer = try AccessLogWriter(
            settings: AccessLogSettings(destination: .file(file)), logger: TestLog().logger)
        let rings = [AccessLogRing(capacity: 8), AccessLogRing(capacity: 8)]
        writer.attach(rings)
        fill(rings[0], statuses: 200..<203)
        fill(rings[1], statuses: 300..<302)
        writer.drainOnce()
        #expect(statuses(try lines(file)) == [200, 201, 202, 300, 301])
        #expect(writer.written == 5)
        fill(rings[1], statuses: 400..<401)
        writer.drainOnce()
        writer.drainOnce()
        #expect(statuses(try lines(file)) == [200, 201, 202, 300, 301, 400])
        #expect(writer.written == 6 && writer.dropped == 0 && writer.failed == 0)

        // The writer stamps a record with the wall-clock time its monotonic start stands for.
        let slot = try #require(rings[0].reserve())
        slot.pointee = httpRecord()
        slot.pointee.startMicros = MonotonicClock.nowMicros()
        rings[0].publish()
        writer.drainOnce()
        let line = try #require(try lines(file).last)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let stamp = try #require(object["time"] as? String)
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let time = try #require(parser.date(from: stamp))
        #expect(abs(time.timeIntervalSinceNow) < 60)
        let attributes = try FileManager.default.attributesOfItem(atPath: file)
        #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o777 } == 0o640 & ~Int(currentUmask()))
        writer.stop()
    }

    @Test func appendsToAnExistingFile() throws {
        let file = try scratch() + "/access.log"
        try "earlier line\n".write(toFile: file, atomically: false, encoding: .utf8)
        let writer = try AccessLogWriter(
            settings: AccessLogSettings(destination: .file(file), format: .text), logger: TestLog().logger)
        let ring = AccessLogRing(capacity: 4)
        writer.attach([ring])
        fill(ring, statuses: [204])
        writer.drainOnce()
        let all = try lines(file)
        #expect(all.count == 2 && all[0] == "earlier line")
        #expect(all[1].wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z .*/) != nil)
        #expect(all[1].contains(" http 192.0.2.10:54321 \"web\" \"example.com\" GET \"/a?b=1\" 204 78 1234 \"api\" "))
        writer.stop()
    }

    @Test func reopenAfterRenameStartsANewFile() throws {
        let directory = try scratch()
        let file = directory + "/access.log"
        let log = TestLog()
        let writer = try AccessLogWriter(settings: AccessLogSettings(destination: .file(file)), logger: log.logger)
        let ring = AccessLogRing(capacity: 16)
        writer.attach([ring])
        fill(ring, statuses: 200..<202)
        writer.drainOnce()
        try FileManager.default.moveItem(atPath: file, toPath: file + ".1")
        // Records drained before the reopen is asked for still go to the moved file.
        fill(ring, statuses: [202])
        writer.drainOnce()
        writer.reopen()
        fill(ring, statuses: 203..<205)
        writer.drainOnce()
        #expect(statuses(try lines(file + ".1")) == [200, 201, 202])
        #expect(statuses(try lines(file)) == [203, 204])
        #expect(writer.reopened == 1)
        #expect(log.messages.contains { $0.contains("reopened \(file)") })
        writer.stop()
    }

    @Test func aReopenThatFailsKeepsTheOldFile() throws {
        let directory = try scratch()
        let file = directory + "/logs/access.log"
        try FileManager.default.createDirectory(atPath: directory + "/logs", withIntermediateDirectories: true)
        let log = TestLog()
        let writer = try AccessLogWriter(settings: AccessLogSettings(destination: .file(file)), logger: log.logger)
        let ring = AccessLogRing(capacity: 16)
        writer.attach([ring])
        try FileManager.default.moveItem(atPath: directory + "/logs", toPath: directory + "/old")
        writer.reopen()
        fill(ring, statuses: [500])
        writer.drainOnce()
        #expect(statuses(try lines(directory + "/old/access.log")) == [500])
        #expect(writer.reopened == 0)
        #expect(log.messages.contains { $0.contains("cannot reopen \(file)") })
        writer.stop()
    }

    @Test func stopDrainsWhatIsLeft() throws {
        let file = try scratch() + "/access.log"
        // An interval no test waits for: only the last drain at stop can write these.
        let settings = AccessLogSettings(destination: .file(file), intervalMillis: 600_000)
        let writer = try AccessLogWriter(settings: settings, logger: TestLog().logger)
        let ring = AccessLogRing(capacity: 64)
        writer.start(rings: [ring])
        fill(ring, statuses: 200..<240)
        #expect(writer.stop(timeoutMillis: 30_000))
        #expect(statuses(try lines(file)) == Array(200..<240))
        #expect(writer.written == 40)
        #expect(writer.stop())  // a second stop is harmless
    }

    @Test func theThreadDrainsOnItsOwn() throws {
        let file = try scratch() + "/access.log"
        let settings = AccessLogSettings(destination: .file(file), intervalMillis: 5)
        let writer = try AccessLogWriter(settings: settings, logger: TestLog().logger)
        let ring = AccessLogRing(capacity: 8)
        writer.start(rings: [ring])
        // More records than the ring holds, published as the writer frees slots.
        var next = 0
        let deadline = Date().addingTimeInterval(60)
        while next < 100 && Date() < deadline {
            if let slot = ring.reserve() {
                var record = httpRecord()
                record.status = UInt16(200 + next)
                slot.pointee = record
                ring.publish()
                next += 1
            } else {
                usleep(1_000)
            }
        }
        writer.stop(timeoutMillis: 30_000)
        #expect(statuses(try lines(file)) == Array(200..<(200 + next)))
        #expect(next == 100)
    }

    @Test func dropsAreCountedAndReported() throws {
        let file = try scratch() + "/access.log"
        let log = TestLog()
        let writer = try AccessLogWriter(settings: AccessLogSettings(destination: .file(file)), logger: log.logger)
        let ring = AccessLogRing(capacity: 4)
        writer.attach([ring])
        fill(ring, statuses: 200..<207)
        #expect(ring.dropped == 3 && writer.dropped == 3)
        writer.drainOnce()
        #expect(writer.written == 4)
        #expect(log.warnings.count == 1)
        #expect(log.warnings.first?.contains("3 records dropped (3 in all)") == true)
        // Within the rate limit: counted, not reported again until stop.
        fill(ring, statuses: 200..<206)
        writer.drainOnce()
        #expect(writer.dropped == 5)
        #expect(log.warnings.count == 1)
        writer.stop()
        #expect(log.warnings.count == 2)
        #expect(log.warnings.last?.contains("2 records dropped (5 in all)") == true)
    }

    @Test func writeErrorsLoseRecordsAndSaySo() throws {
        let log = TestLog()
        let writer = try AccessLogWriter(
            settings: AccessLogSettings(destination: .file("/dev/full")), logger: log.logger)
        let ring = AccessLogRing(capacity: 8)
        writer.attach([ring])
        fill(ring, statuses: 200..<203)
        writer.drainOnce()
        #expect(writer.failed == 3 && writer.written == 0)
        #expect(log.errors.first?.contains("cannot write to /dev/full") == true)
        writer.stop()
    }

    @Test func aFileThatCannotBeOpenedIsNamed() throws {
        let file = try scratch() + "/missing/access.log"
        #expect(throws: AccessLogError.self) {
            _ = try AccessLogWriter(settings: AccessLogSettings(destination: .file(file)), logger: TestLog().logger)
        }
        do {
            _ = try AccessLogWriter(settings: AccessLogSettings(destination: .file(file)), logger: TestLog().logger)
        } catch {
            #expect(error.description == "cannot open \(file): No such file or directory")
        }
    }

    @Test func manyRecordsSpanSeveralWrites() throws {
        let file = try scratch() + "/access.log"
        // A buffer of two lines' room: a write every few records.
        let writer = try AccessLogWriter(
            settings: AccessLogSettings(destination: .file(file)), logger: TestLog().logger, bufferBytes: 1)
        let ring = AccessLogRing(capacity: 1024)
        writer.attach([ring])
        fill(ring, statuses: 100..<1100)
        writer.drainOnce()
        #expect(statuses(try lines(file)) == Array(100..<1100))
        writer.stop()
    }
}

/// The process's umask (tests expect 0640 less what it masks).
private func currentUmask() -> mode_t {
    let current = umask(0)
    umask(current)
    return current
}

/// Log messages kept for assertions.
final class TestLog: Sendable {
    private let entries = Mutex<[(Logger.Level, String)]>([])

    var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    var messages: [String] { entries.withLock { $0.map(\.1) } }
    var warnings: [String] { entries.withLock { $0.filter { $0.0 == .warning }.map(\.1) } }
    var errors: [String] { entries.withLock { $0.filter { $0.0 == .error }.map(\.1) } }

    fileprivate func add(_ level: Logger.Level, _ message: String) {
        entries.withLock { $0.append((level, message)) }
    }

    struct Handler: LogHandler {
        let log: TestLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.add(event.level, event.message.description)
        }
    }
}
