import Testing

@testable import SluiceRouting

/// A snapshot with one service per entry of `counts`, holding that many endpoints
/// (10.0.S.E:80), all with `algorithm`.
private func snapshot(_ counts: [Int], algorithm: Algorithm) -> RoutingSnapshot {
    var services: [Service] = []
    var endpoints: [Endpoint] = []
    for (serviceIndex, count) in counts.enumerated() {
        let start = endpoints.count
        for e in 0..<count {
            let ip = UInt32(10 << 24) | UInt32(serviceIndex) << 8 | UInt32(e + 1)
            endpoints.append(Endpoint(address: SocketAddress(ip: .v4(ip), port: 80), service: serviceIndex))
        }
        services.append(Service(name: "s\(serviceIndex)", algorithm: algorithm, endpoints: start..<endpoints.count))
    }
    return RoutingSnapshot(generation: 1, listeners: [], services: services, endpoints: endpoints)
}

@Suite struct RoundRobinTests {
    @Test func followsTheEndpointsInOrderFromTheSeededStart() {
        let table = snapshot([2, 5], algorithm: .roundrobin)
        for seed: UInt64 in [0, 1, 42, .max] {
            var picker = EndpointPicker(snapshot: table, seed: seed)
            // The second service's cursor starts at the second step of the seed's mixing.
            let start = Int(SocketAddress.mix(SocketAddress.mix(seed)) % 5)
            let picks = (0..<10).map { _ in picker.pick(service: 1, clientHash: 0, now: 0)! }
            #expect(picks == (0..<10).map { 2 + (start + $0) % 5 })
        }
    }

    @Test func eachRoundVisitsEveryEndpointOnce() {
        var picker = EndpointPicker(snapshot: snapshot([3, 4], algorithm: .roundrobin), seed: 7)
        for _ in 0..<5 {
            let round = (0..<4).map { _ in picker.pick(service: 1, clientHash: 0, now: 0)! }
            #expect(Set(round) == Set(3..<7))
        }
    }

    @Test func manyPicksAreEvenlySpread() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .roundrobin), seed: 99)
        var counts = [0, 0, 0]
        for _ in 0..<3_000 { counts[picker.pick(service: 0, clientHash: 0, now: 0)!] += 1 }
        #expect(counts == [1_000, 1_000, 1_000])
    }

    @Test func differentSeedsStartAtDifferentEndpoints() {
        let table = snapshot([8], algorithm: .roundrobin)
        var starts = Set<Int>()
        for seed: UInt64 in 0..<16 {
            var picker = EndpointPicker(snapshot: table, seed: seed)
            starts.insert(picker.pick(service: 0, clientHash: 0, now: 0)!)
        }
        #expect(starts.count > 1)
    }

    @Test func emptyServiceHasNoEndpoint() {
        var picker = EndpointPicker(snapshot: snapshot([2, 0], algorithm: .roundrobin), seed: 1)
        #expect(picker.pick(service: 1, clientHash: 0, now: 0) == nil)
        #expect(picker.next(after: 0, service: 0, now: 0) == 1)
    }
}

@Suite struct LeastConnTests {
    @Test func prefersTheEndpointWithFewestConnections() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .leastconn), seed: 5)
        picker.opened(0)
        picker.opened(0)
        picker.opened(2)
        for _ in 0..<4 { #expect(picker.pick(service: 0, clientHash: 0, now: 0) == 1) }
        picker.opened(1)
        picker.opened(1)
        #expect(picker.pick(service: 0, clientHash: 0, now: 0) == 2)
        picker.closed(0)
        picker.closed(0)
        #expect(picker.pick(service: 0, clientHash: 0, now: 0) == 0)
        #expect(picker.activeCount(1) == 2)
    }

    @Test func tiesRotate() {
        var picker = EndpointPicker(snapshot: snapshot([1, 4], algorithm: .leastconn), seed: 3)
        let picks = (0..<8).map { _ in picker.pick(service: 1, clientHash: 0, now: 0)! }
        #expect(Set(picks[0..<4]) == Set(1..<5))
        #expect(Array(picks[4..<8]) == Array(picks[0..<4]))
    }

    @Test func fillsUpEvenlyWhenConnectionsStayOpen() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .leastconn), seed: 11)
        for _ in 0..<30 {
            let endpoint = picker.pick(service: 0, clientHash: 0, now: 0)!
            picker.opened(endpoint)
        }
        #expect((0..<3).map { picker.activeCount($0) } == [10, 10, 10])
    }

    @Test func skipsDownEndpointsEvenWhenIdle() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .leastconn), seed: 0)
        picker.opened(1)
        picker.markDown(0, until: 100)
        picker.markDown(2, until: 100)
        #expect(picker.pick(service: 0, clientHash: 0, now: 50) == 1)
    }
}

@Suite struct SourceHashTests {
    @Test func oneClientAlwaysGetsTheSameEndpoint() throws {
        var picker = EndpointPicker(snapshot: snapshot([5], algorithm: .source), seed: 1)
        let client = try SocketAddress.parse("192.0.2.7:5555").get().addressHash
        let first = picker.pick(service: 0, clientHash: client, now: 0)
        for _ in 0..<20 { #expect(picker.pick(service: 0, clientHash: client, now: 0) == first) }
        // Another loop (another seed) sends the client to the same endpoint.
        var other = EndpointPicker(snapshot: snapshot([5], algorithm: .source), seed: 2)
        #expect(other.pick(service: 0, clientHash: client, now: 0) == first)
    }

    @Test func differentClientsSpreadOverTheEndpoints() {
        var picker = EndpointPicker(snapshot: snapshot([4], algorithm: .source), seed: 1)
        var counts = [0, 0, 0, 0]
        for host: UInt32 in 1...4_000 {
            let client = SocketAddress(ip: .v4(0xC000_0200 &+ host), port: 1).addressHash
            counts[picker.pick(service: 0, clientHash: client, now: 0)!] += 1
        }
        // 1,000 each on average; a fair hash stays well within ±20%.
        #expect(counts.allSatisfy { (800...1_200).contains($0) }, "\(counts)")
    }

    @Test func aDownEndpointSendsItsClientsToTheNextOne() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .source), seed: 1)
        let client: UInt64 = 4  // 4 % 3 == 1
        #expect(picker.pick(service: 0, clientHash: client, now: 0) == 1)
        picker.markDown(1, until: 10)
        #expect(picker.pick(service: 0, clientHash: client, now: 5) == 2)
        #expect(picker.pick(service: 0, clientHash: client, now: 10) == 1)
    }
}

@Suite struct EndpointHealthTests {
    @Test func downEndpointsAreSkippedUntilTheirTime() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .roundrobin), seed: 4)
        picker.markDown(1, until: 1_000)
        #expect(picker.isDown(1, now: 999))
        let whileDown = (0..<6).map { _ in picker.pick(service: 0, clientHash: 0, now: 500)! }
        #expect(!whileDown.contains(1))
        #expect(Set(whileDown) == [0, 2])
        #expect(!picker.isDown(1, now: 1_000))
        let after = (0..<3).map { _ in picker.pick(service: 0, clientHash: 0, now: 1_000)! }
        #expect(Set(after) == [0, 1, 2])
    }

    @Test func markUpRestoresAtOnce() {
        var picker = EndpointPicker(snapshot: snapshot([2], algorithm: .roundrobin), seed: 4)
        picker.markDown(0, until: .max)
        #expect((0..<4).map { _ in picker.pick(service: 0, clientHash: 0, now: 0)! } == [1, 1, 1, 1])
        picker.markUp(0)
        #expect(Set((0..<2).map { _ in picker.pick(service: 0, clientHash: 0, now: 0)! }) == [0, 1])
    }

    @Test(arguments: Algorithm.allCases)
    func allDownStillGivesAnEndpoint(algorithm: Algorithm) {
        var picker = EndpointPicker(snapshot: snapshot([1, 3], algorithm: algorithm), seed: 8)
        for endpoint in 1..<4 { picker.markDown(endpoint, until: 100) }
        for client: UInt64 in 0..<6 {
            let pick = picker.pick(service: 1, clientHash: client, now: 0)
            #expect(pick.map { (1..<4).contains($0) } == true)
        }
    }
}

@Suite struct RetryTests {
    @Test func nextAfterReachesEveryOtherEndpoint() {
        let picker = EndpointPicker(snapshot: snapshot([2, 5], algorithm: .roundrobin), seed: 0)
        for failed in 2..<7 {
            var seen: [Int] = []
            var current = failed
            for _ in 0..<4 {
                current = picker.next(after: current, service: 1, now: 0)!
                seen.append(current)
            }
            #expect(Set(seen) == Set(2..<7).subtracting([failed]), "from \(failed): \(seen)")
            #expect(seen.allSatisfy { (2..<7).contains($0) })
        }
    }

    @Test func nextAfterSkipsDownEndpoints() {
        var picker = EndpointPicker(snapshot: snapshot([4], algorithm: .roundrobin), seed: 0)
        picker.markDown(1, until: 100)
        picker.markDown(2, until: 100)
        #expect(picker.next(after: 0, service: 0, now: 0) == 3)
        #expect(picker.next(after: 3, service: 0, now: 0) == 0)
    }

    @Test func nextAfterWhenEveryOtherIsDownStillMovesOn() {
        var picker = EndpointPicker(snapshot: snapshot([3], algorithm: .roundrobin), seed: 0)
        picker.markDown(0, until: 100)
        picker.markDown(1, until: 100)
        #expect(picker.next(after: 2, service: 0, now: 0) == 0)
        #expect(picker.next(after: 0, service: 0, now: 0) == 2)
    }

    @Test func aSingleEndpointHasNoNext() {
        let picker = EndpointPicker(snapshot: snapshot([1], algorithm: .roundrobin), seed: 0)
        #expect(picker.next(after: 0, service: 0, now: 0) == nil)
    }
}
