import ArgumentParser
import Logging
import SluiceConfig
import SluiceReactor
import SluiceRouting
import SluiceSystem

/// The control thread: starts the loops, then waits for signals. SIGHUP reloads the
/// configuration (a bad file or an unbindable listener keeps the old table serving), SIGUSR1
/// logs every loop's counters, SIGTERM/SIGINT drain and exit.
struct ControlPlane {
    let workers: Int
    let logger: Logger
    /// Builds the snapshot of the given generation from the configuration source.
    let load: (UInt64) throws(ConfigError) -> RoutingSnapshot

    func run(initial: RoutingSnapshot) throws {
        let reactor: Reactor
        do {
            reactor = try Reactor(workers: workers, snapshot: initial, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        reactor.start()
        let listening = initial.listeners.map { "\($0.name)=\($0.address)" }.joined(separator: " ")
        logger.notice("ready generation=\(initial.generation) workers=\(workers) \(listening)")
        var generation = initial.generation
        while true {
            switch Threads.waitForSignal() {
            case .reload:
                do {
                    let next = try load(generation + 1)
                    try reactor.apply(next)
                    generation += 1
                    logger.notice("reloaded generation=\(generation)")
                } catch let error as ConfigError {
                    logger.error("reload failed: keeping generation \(generation)\n\(error.description)")
                } catch {
                    logger.error("reload failed: keeping generation \(generation): \(error)")
                }
            case .report:
                reactor.report()
            case .stop:
                let grace = reactor.snapshot.timeouts.drainMillis
                logger.notice("stopping: no new connections; open ones have \(grace) ms to finish")
                reactor.drain(graceMillis: grace)
                reactor.join()
                logger.notice("stopped")
                return
            }
        }
    }
}
