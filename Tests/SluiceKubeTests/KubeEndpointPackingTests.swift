import Foundation
import SluiceRouting
import Testing

@testable import SluiceKube

/// A slice endpoint keeps a canonical IPv4 address and its conditions in eight bytes, and
/// every other address as given: both read back exactly, compare and hash by value.
@Suite("EndpointSlice endpoints, packed")
struct KubeEndpointPackingTests {
    static let conditionChoices: [KubeEndpointSlice.Conditions?] = {
        var all: [KubeEndpointSlice.Conditions?] = [nil]
        for ready: Bool? in [nil, false, true] {
            for serving: Bool? in [nil, false, true] {
                for terminating: Bool? in [nil, false, true] {
                    all.append(KubeEndpointSlice.Conditions(ready: ready, serving: serving, terminating: terminating))
                }
            }
        }
        return all
    }()

    @Test func anEndpointTakesEightBytesAndASnapshotEndpointTwentyFour() {
        #expect(MemoryLayout<KubeEndpointSlice.Endpoint>.stride == 8)
        #expect(MemoryLayout<Endpoint>.stride == 24)
    }

    @Test(arguments: ["10.0.0.1", "0.0.0.0", "255.255.255.255", "127.100.3.250", "1.22.133.4"])
    func canonicalIPv4IsPackedAndReadsBack(_ text: String) throws {
        for conditions in Self.conditionChoices {
            let endpoint = KubeEndpointSlice.Endpoint(addresses: [text], conditions: conditions)
            #expect(endpoint.address == text)
            #expect(endpoint.conditions == conditions)
            let packed = try #require(endpoint.packedIPv4)
            #expect(SocketAddress.parseIP(text.utf8) == .v4(packed))
        }
    }

    @Test(arguments: [
        "010.0.0.1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", ".1.2.3", "1.2.3.", "::1", "fe80::1",
        "not-an-ip", "", "1.2.3.4 ", "1.2.3.0004",
    ])
    func anythingElseIsKeptAsGiven(_ text: String) {
        for conditions in Self.conditionChoices {
            let endpoint = KubeEndpointSlice.Endpoint(addresses: [text], conditions: conditions)
            #expect(endpoint.address == text)
            #expect(endpoint.conditions == conditions)
            #expect(endpoint.packedIPv4 == nil)
        }
        let none = KubeEndpointSlice.Endpoint(addresses: [])
        #expect(none.address == nil && none.addresses.isEmpty && none.conditions == nil)
    }

    @Test func equalityAndHashingAreByValue() {
        var seen: [KubeEndpointSlice.Endpoint: Int] = [:]
        var count = 0
        for text in ["10.0.0.1", "10.0.0.2", "::1", "bad"] {
            for conditions in Self.conditionChoices {
                let a = KubeEndpointSlice.Endpoint(addresses: [text], conditions: conditions)
                let b = KubeEndpointSlice.Endpoint(addresses: [String(text)], conditions: conditions)
                #expect(a == b)
                #expect(a.hashValue == b.hashValue)
                seen[a] = count
                count += 1
            }
        }
        #expect(seen.count == count)
        var changed = KubeEndpointSlice.Endpoint(addresses: ["::1"])
        changed.address = "10.1.2.3"
        #expect(changed == KubeEndpointSlice.Endpoint(addresses: ["10.1.2.3"]))
        #expect(changed.packedIPv4 != nil)
        changed.conditions = KubeEndpointSlice.Conditions(ready: false)
        #expect(changed.isReady == false && changed.isServing && !changed.isTerminating)
    }

    @Test func decodedAndEncodedAsTheAPIWritesThem() throws {
        let json = Data(
            #"[{"addresses":["10.0.0.7","10.0.0.8"],"conditions":{"ready":false,"terminating":true}},{"addresses":["fd00::7"]},{"addresses":[]}]"#
                .utf8)
        let endpoints = try JSONDecoder().decode([KubeEndpointSlice.Endpoint].self, from: json)
        #expect(endpoints.map(\.address) == ["10.0.0.7", "fd00::7", nil])
        #expect(endpoints[0].conditions == KubeEndpointSlice.Conditions(ready: false, terminating: true))
        #expect(endpoints[1].conditions == nil)
        let again = try JSONDecoder().decode(
            [KubeEndpointSlice.Endpoint].self, from: try JSONEncoder().encode(endpoints))
        #expect(again == endpoints)
    }
}
