import Foundation
import Logging
import SluiceKube
import SluiceKubeClient
import SluiceRouting
import Synchronization
import Testing

@Suite("Applying generations")
struct KubeApplierTests {
    /// What the reactor stand-in saw: each offered snapshot's generation and service count.
    final class Loops: Sendable {
        struct Offer: Equatable {
            var generation: UInt64
            var services: Int
        }

        let offers = Mutex<[Offer]>([])
        /// How many of the first offers throw after they were "posted".
        let failFirst: Int
        let offered = DispatchSemaphore(value: 0)

        init(failFirst: Int) { self.failFirst = failFirst }

        struct Timeout: Error, CustomStringConvertible {
            var generation: UInt64
            var description: String { "generation \(generation) posted, but a loop has not taken it after 10 s" }
        }

        /// As `Reactor.apply` after a timeout: the snapshot is posted (recorded), then it throws.
        func apply(_ snapshot: RoutingSnapshot) throws {
            let count = offers.withLock { offers in
                offers.append(Offer(generation: snapshot.generation, services: snapshot.services.count))
                return offers.count
            }
            offered.signal()
            if count <= failFirst { throw Timeout(generation: snapshot.generation) }
        }

        /// Waits for the `n`-th offer (bounded), and returns every offer so far.
        func wait(for n: Int) -> [Offer] {
            while offers.withLock({ $0.count }) < n {
                if offered.wait(timeout: .now() + 10) == .timedOut { break }
            }
            return offers.withLock { $0 }
        }
    }

    /// An applier on a thread of its own, with `loops` as the reactor; `body` drives the
    /// state; the applier is stopped and joined afterwards.
    func withApplier(
        _ loops: Loops, _ body: (KubeDiscoveryState) throws -> Void
    ) rethrows {
        let translator = KubeTranslator()
        let (_, initial) = translator.snapshot(KubeCache(), generation: 1)
        let state = KubeDiscoveryState(servingHash: initial.contentHash)
        let applier = KubeApplier(
            state: state, translator: translator, logger: Logger(label: "test")
        ) { snapshot in try loops.apply(snapshot) }
        let ended = DispatchSemaphore(value: 0)
        let thread = Thread {
            applier.run()
            ended.signal()
        }
        thread.start()
        defer {
            state.stop()
            _ = ended.wait(timeout: .now() + 10)
        }
        try body(state)
    }

    static let web = KubeService(
        metadata: KubeObjectMeta(
            name: "web", namespace: "ns", resourceVersion: "1", annotations: [KubeAnnotation.host: "web.example.com"]),
        spec: KubeService.Spec(ports: [KubeService.Port(name: "http", port: 80)]))

    @Test func aTimedOutApplyThatWasPostedNeverHasItsGenerationReused() {
        let loops = Loops(failFirst: 1)
        withApplier(loops) { state in
            state.storeList([Self.web], resourceVersion: "10", at: .now)
            state.storeList([KubeEndpointSlice](), resourceVersion: "11", at: .now)
            #expect(loops.wait(for: 1) == [Loops.Offer(generation: 2, services: 1)])
            #expect(!state.isReady)
            // A re-list with the same content: the loops may run generation 2 or 1, so the
            // table is applied again, under a number of its own.
            state.storeList([Self.web], resourceVersion: "12", at: .now)
            #expect(loops.wait(for: 2).map(\.generation) == [2, 3])
        }
        #expect(loops.offers.withLock { $0 }.count == 2)
    }

    @Test func goingBackToTheTableBeforeATimeoutIsAppliedAsANewGeneration() {
        let loops = Loops(failFirst: 1)
        withApplier(loops) { state in
            state.storeList([Self.web], resourceVersion: "10", at: .now)
            state.storeList([KubeEndpointSlice](), resourceVersion: "11", at: .now)
            _ = loops.wait(for: 1)
            // The Service goes away: the content of generation 1 again, but generation 2 was
            // posted and may be what the loops run.
            _ = state.apply(KubeWatchEvent<KubeService>.deleted(Self.web), at: .now)
            #expect(
                loops.wait(for: 2) == [
                    Loops.Offer(generation: 2, services: 1), Loops.Offer(generation: 3, services: 0),
                ])
        }
    }
}
