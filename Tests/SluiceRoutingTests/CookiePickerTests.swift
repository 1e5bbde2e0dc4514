import Testing

@testable import SluiceRouting

/// Two cookie services sharing an endpoint address, and a roundrobin one.
private func cookieSnapshot() throws -> RoutingSnapshot {
    let addresses = try ["10.0.0.1:80", "10.0.0.1:81", "[::1]:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.9:80"].map {
        try SocketAddress.parse($0).get()
    }
    return RoutingSnapshot(
        generation: 1, listeners: [],
        services: [
            Service(name: "grafana", algorithm: .cookie, endpoints: 0..<4, cookieName: Array("G".utf8)),
            Service(name: "other", algorithm: .cookie, endpoints: 4..<5),
            Service(name: "plain", algorithm: .roundrobin, endpoints: 5..<6),
        ],
        endpoints: addresses.enumerated().map { index, address in
            Endpoint(address: address, service: index < 4 ? 0 : index < 5 ? 1 : 2)
        }
    )
}

private func endpoint(_ picker: RoutingSnapshot, cookie: [UInt8], service: Int) -> Int? {
    cookie.withUnsafeBytes { picker.endpoint(forCookie: $0, service: service) }
}

@Suite struct CookiePickerTests {
    @Test func valuesAreSixteenLowercaseHexDigitsAndDistinct() throws {
        let picker = try cookieSnapshot()
        let values = (0..<5).map { picker.cookieValue(for: $0) }
        for value in values {
            #expect(value.count == 16)
            #expect(value.allSatisfy { Array("0123456789abcdef".utf8).contains($0) })
        }
        #expect(Set(values).count == 5)
        // The same address in two services gets two values.
        #expect(values[0] != values[4])
        #expect(picker.cookieValue(for: 5) == [])
    }

    @Test func eachValueLeadsBackToItsEndpoint() throws {
        let picker = try cookieSnapshot()
        for index in 0..<4 {
            #expect(endpoint(picker, cookie: picker.cookieValue(for: index), service: 0) == index)
            let quoted = [UInt8(ascii: "\"")] + picker.cookieValue(for: index) + [UInt8(ascii: "\"")]
            #expect(endpoint(picker, cookie: quoted, service: 0) == index)
        }
        #expect(endpoint(picker, cookie: picker.cookieValue(for: 4), service: 1) == 4)
    }

    @Test func foreignOrMalformedValuesNameNoEndpoint() throws {
        let picker = try cookieSnapshot()
        let value = picker.cookieValue(for: 1)
        #expect(endpoint(picker, cookie: picker.cookieValue(for: 4), service: 0) == nil)
        #expect(endpoint(picker, cookie: value, service: 1) == nil)
        #expect(endpoint(picker, cookie: value, service: 2) == nil)
        #expect(endpoint(picker, cookie: Array(value.dropLast()), service: 0) == nil)
        #expect(endpoint(picker, cookie: value + [48], service: 0) == nil)
        // Upper case is refused: the values are only ever written in lower case.
        for index in 0..<4 where picker.cookieValue(for: index).contains(where: { $0 >= UInt8(ascii: "a") }) {
            let upper = picker.cookieValue(for: index).map { $0 >= UInt8(ascii: "a") ? $0 - 32 : $0 }
            #expect(endpoint(picker, cookie: upper, service: 0) == nil)
        }
        #expect(endpoint(picker, cookie: Array("zzzzzzzzzzzzzzzz".utf8), service: 0) == nil)
        #expect(endpoint(picker, cookie: [], service: 0) == nil)
    }

    @Test func valuesAreStableAcrossSnapshots() throws {
        let first = try cookieSnapshot()
        let second = try cookieSnapshot()
        #expect((0..<6).map { first.cookieValue(for: $0) } == (0..<6).map { second.cookieValue(for: $0) })
        // Pinned: a change of hash would reset every client's session on upgrade.
        let id = EndpointCookies.id(address: try SocketAddress.parse("10.0.0.1:80").get(), service: "grafana")
        #expect(first.cookieValue(for: 0) == EndpointCookies.hex(id))
        #expect(EndpointCookies.hex(0x0123_4567_89AB_CDEF) == Array("0123456789abcdef".utf8))
    }

    @Test func anEndpointKeepsItsValueWhenOthersComeAndGo() throws {
        let a = try SocketAddress.parse("10.0.0.1:80").get()
        let b = try SocketAddress.parse("10.0.0.2:80").get()
        let before = RoutingSnapshot(
            generation: 1, listeners: [], services: [Service(name: "s", algorithm: .cookie, endpoints: 0..<2)],
            endpoints: [Endpoint(address: a, service: 0), Endpoint(address: b, service: 0)])
        let after = RoutingSnapshot(
            generation: 2, listeners: [], services: [Service(name: "s", algorithm: .cookie, endpoints: 0..<1)],
            endpoints: [Endpoint(address: b, service: 0)])
        let old = before
        let new = after
        #expect(endpoint(new, cookie: old.cookieValue(for: 1), service: 0) == 0)
        #expect(endpoint(new, cookie: old.cookieValue(for: 0), service: 0) == nil)
    }

    @Test func setCookieFieldCarriesTheNameAndValue() throws {
        let picker = try cookieSnapshot()
        let value = String(decoding: picker.cookieValue(for: 2), as: UTF8.self)
        #expect(
            String(decoding: picker.setCookieField(for: 2), as: UTF8.self)
                == "Set-Cookie: G=\(value); Path=/; HttpOnly\r\n")
        let other = String(decoding: picker.cookieValue(for: 4), as: UTF8.self)
        #expect(
            String(decoding: picker.setCookieField(for: 4), as: UTF8.self)
                == "Set-Cookie: SLUICE=\(other); Path=/; HttpOnly\r\n")
        #expect(picker.setCookieField(for: 5) == [])
    }

    @Test func pickGoesRoundRobin() throws {
        var picker = EndpointPicker(snapshot: try cookieSnapshot(), seed: 5)
        let picks = (0..<8).map { _ in picker.pick(service: 0, clientHash: 0, now: 0)! }
        let start = picks[0]
        #expect(picks == (0..<8).map { (start + $0) % 4 })
    }

    @Test func cookieNameDefaultsOnlyForTheCookieAlgorithm() {
        #expect(Service(name: "a", algorithm: .cookie, endpoints: 0..<0).cookieName == Array("SLUICE".utf8))
        #expect(Service(name: "a", algorithm: .roundrobin, endpoints: 0..<0, cookieName: [65]).cookieName == nil)
    }

    @Test func manyEndpointsAllFoundByBinarySearch() {
        let count = 1_000
        let endpoints = (0..<count).map {
            Endpoint(address: SocketAddress(ip: .v4(0x0A00_0000 | UInt32($0)), port: 80), service: 1)
        }
        let snapshot = RoutingSnapshot(
            generation: 1, listeners: [],
            services: [
                Service(name: "none", algorithm: .cookie, endpoints: 0..<0),
                Service(name: "many", algorithm: .cookie, endpoints: 0..<count),
            ],
            endpoints: endpoints)
        let picker = snapshot
        for index in 0..<count {
            #expect(endpoint(picker, cookie: picker.cookieValue(for: index), service: 1) == index)
        }
        #expect(endpoint(picker, cookie: picker.cookieValue(for: 0), service: 0) == nil)
    }
}
