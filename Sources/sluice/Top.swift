import ArgumentParser
import SluiceAdmin
import SluiceRouting
import SluiceSystem

/// `sluice top --admin HOST:PORT`: live per-backend rates from a running Sluice's
/// `/metrics`, redrawn every interval.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch per-service request rates, 5xx rates and latency of a running Sluice.")

    @Option(help: "The admin listener of the Sluice to watch, HOST:PORT.")
    var admin: String = "127.0.0.1:8081"

    @Option(help: "Seconds between scrapes.")
    var interval: Double = 1

    @Option(help: "Stop after this many screens (0: until interrupted).")
    var count: Int = 0

    @Option(help: "Services shown at most, busiest first.")
    var limit: Int = 30

    @Flag(help: "Print each screen after the last instead of redrawing the terminal.")
    var plain = false

    func validate() throws {
        _ = try address()
        guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 seconds") }
        guard count >= 0 else { throw ValidationError("--count must not be negative") }
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
    }

    func address() throws -> SluiceRouting.SocketAddress {
        switch SocketAddress.parse(admin) {
        case .success(let address): return address
        case .failure(let error): throw ValidationError("--admin '\(admin)': \(error)")
        }
    }

    func run() throws {
        FileOutput.lineBufferStandardOutput()
        let target = try address()
        var previous: (samples: [MetricsText.Sample], at: Int64)?
        var shown = 0
        while count == 0 || shown < count {
            let started = MonotonicClock.nowMillis()
            let screen: String
            do {
                let response = try AdminClient.get(target, path: "/metrics", timeoutMillis: 5_000)
                guard response.status == 200 else {
                    throw AdminClient.Failure(description: "\(admin)/metrics answered \(response.status)")
                }
                let samples = MetricsText.parse(String(decoding: response.body, as: UTF8.self))
                let at = MonotonicClock.nowMillis()
                let seconds = previous.map { Double(at - $0.at) / 1000 } ?? 0
                let rows = TopView.rows(previous: previous?.samples, current: samples, seconds: seconds)
                screen = TopView.render(rows, title: title(samples), limit: limit)
                previous = (samples, at)
            } catch {
                screen = "sluice top: \(error)"
                previous = nil
            }
            print(plain ? screen + "\n" : "\u{1B}[H\u{1B}[2J" + screen)
            shown += 1
            if count != 0 && shown >= count { break }
            let wait = Int64(interval * 1000) - (MonotonicClock.nowMillis() - started)
            Threads.sleep(millis: Int(max(wait, 0)))
        }
    }

    func title(_ samples: [MetricsText.Sample]) -> String {
        func value(_ name: String) -> Int? { samples.first { $0.name == name }.map { Int($0.value) } }
        var parts = ["sluice top  \(admin)"]
        if let generation = value("sluice_generation") { parts.append("generation \(generation)") }
        if let workers = value("sluice_workers") { parts.append("\(workers) workers") }
        if let connections = value("sluice_current_connections") { parts.append("\(connections) connections") }
        return parts.joined(separator: "  ·  ")
    }
}
