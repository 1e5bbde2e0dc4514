import Testing

@testable import SluiceRouting

/// A snapshot of services given as name → endpoint addresses, in that order.
private func snapshot(_ generation: UInt64, _ services: [(String, [String])], algorithm: Algorithm = .roundrobin)
    throws -> RoutingSnapshot
{
    var endpoints: [Endpoint] = []
    var built: [Service] = []
    for (index, (name, addresses)) in services.enumerated() {
        let start = endpoints.count
        for address in addresses {
            endpoints.append(Endpoint(address: try SocketAddress.parse(address).get(), service: index))
        }
        built.append(Service(name: name, algorithm: algorithm, endpoints: start..<endpoints.count))
    }
    return RoutingSnapshot(generation: generation, listeners: [], services: built, endpoints: endpoints)
}

@Suite struct SnapshotRemapTests {
    @Test func endpointsFollowServiceNameAndAddressAcrossRenumbering() throws {
        let old = try snapshot(1, [("a", ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]), ("b", ["10.0.0.1:80"])])
        // b first now, a lost 10.0.0.2 and gained 10.0.0.4; c is new.
        let new = try snapshot(
            2, [("c", ["10.0.0.9:80"]), ("b", ["10.0.0.1:80"]), ("a", ["10.0.0.4:80", "10.0.0.3:80", "10.0.0.1:80"])])
        let remap = SnapshotRemap(from: old, to: new)
        #expect(remap.from == 1 && remap.to == 2)
        #expect(remap.services == [2, 1])
        // a/10.0.0.1 → new index 4, a/10.0.0.2 gone, a/10.0.0.3 → 3; b/10.0.0.1 → 1 (not a's).
        #expect(remap.endpoints == [4, -1, 3, 1])
        #expect(remap.endpoint(1) == nil)
        #expect(remap.endpoint(-1) == nil)
        #expect(remap.endpoint(99) == nil)
        #expect(remap.service(0) == 2)
    }

    @Test func aRemovedServiceTakesItsEndpointsWithIt() throws {
        let old = try snapshot(1, [("a", ["10.0.0.1:80"]), ("gone", ["10.0.0.1:80", "10.0.0.2:80"])])
        let new = try snapshot(2, [("a", ["10.0.0.1:80", "10.0.0.2:80"])])
        let remap = SnapshotRemap(from: old, to: new)
        #expect(remap.services == [0, -1])
        #expect(remap.endpoints == [0, -1, -1])
    }

    @Test func largeServicesAreMatchedByAddress() throws {
        let addresses = (0..<100).map { "10.0.1.\($0):8080" }
        let old = try snapshot(1, [("big", addresses)])
        let new = try snapshot(2, [("big", Array(addresses.reversed().dropFirst(10)))])
        let remap = SnapshotRemap(from: old, to: new)
        for index in 0..<100 {
            // Reversed, without the ten highest addresses.
            #expect(remap.endpoint(index) == (index >= 90 ? nil : 89 - index))
        }
    }

    @Test func compositionKeepsWhatStayedAndForgetsWhatLeftInBetween() throws {
        let g1 = try snapshot(1, [("a", ["10.0.0.1:80", "10.0.0.2:80"])])
        let g2 = try snapshot(2, [("a", ["10.0.0.2:80"])])
        let g3 = try snapshot(3, [("a", ["10.0.0.1:80", "10.0.0.2:80"])])
        let direct = SnapshotRemap(from: g1, to: g3)
        let composed = SnapshotRemap(from: g1, to: g2).then(SnapshotRemap(from: g2, to: g3))
        #expect(composed.from == 1 && composed.to == 3)
        #expect(composed.endpoints == [-1, 1])
        #expect(direct.endpoints == [0, 1])
    }

    @Test func aNewPickerKeepsDownMarksAndCursorsOfWhatStayed() throws {
        let old = try snapshot(1, [("a", ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"])])
        let new = try snapshot(2, [("x", ["10.0.0.9:80"]), ("a", ["10.0.0.3:80", "10.0.0.1:80"])])
        var previous = EndpointPicker(snapshot: old, seed: 7)
        previous.markDown(0, until: 1_000)
        previous.markDown(1, until: 1_000)
        let remap = SnapshotRemap(from: old, to: new)
        var picker = EndpointPicker(snapshot: new, seed: 7, carrying: previous, remap: remap)
        #expect(picker.isDown(2, now: 10))  // 10.0.0.1, down before the swap
        #expect(!picker.isDown(1, now: 10))  // 10.0.0.3
        #expect(!picker.isDown(0, now: 10))
        // Only 10.0.0.3 is up in a: every pick takes it.
        for _ in 0..<4 { #expect(picker.pick(service: 1, clientHash: 0, now: 10) == 1) }
        #expect(picker.activeCount(1) == 0)
    }

    @Test func closedNeverCountsBelowZero() throws {
        var picker = EndpointPicker(snapshot: try snapshot(1, [("a", ["10.0.0.1:80"])], algorithm: .leastconn), seed: 1)
        picker.closed(0)
        #expect(picker.activeCount(0) == 0)
        picker.opened(0)
        picker.closed(0)
        picker.closed(0)
        #expect(picker.activeCount(0) == 0)
    }
}
