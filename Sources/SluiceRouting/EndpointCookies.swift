/// The sticky-session cookie of every endpoint of a `cookie` service, computed once per
/// snapshot and shared by the pickers of every loop.
///
/// An endpoint's cookie value is 16 lower-case hex digits of a hash of its address (with the
/// port) and its service's name: stable across runs, reloads and loops, so a client keeps its
/// endpoint while that endpoint stays in the service, and distinct for two services sharing
/// an endpoint. Endpoints of other services have no cookie (empty arrays, id 0).
struct EndpointCookies: Sendable {
    /// Per endpoint: the value as a number (the hex digits' value).
    let ids: [UInt64]
    /// Per endpoint: the 16 hex digits.
    let values: [[UInt8]]
    /// Per endpoint: `Set-Cookie: NAME=VALUE; Path=/; HttpOnly\r\n`.
    let setCookieFields: [[UInt8]]
    /// Within each cookie service's range of endpoints: endpoint indices sorted by id, for a
    /// binary search. Other positions hold their own index.
    let order: [Int32]

    init(services: [Service], endpoints: [Endpoint]) {
        var ids = [UInt64](repeating: 0, count: endpoints.count)
        var values = [[UInt8]](repeating: [], count: endpoints.count)
        var fields = [[UInt8]](repeating: [], count: endpoints.count)
        var order = (0..<endpoints.count).map { Int32($0) }
        for service in services where service.algorithm == .cookie {
            let name = service.cookieName ?? Service.defaultCookieName
            for index in service.endpoints {
                let id = Self.id(address: endpoints[index].address, service: service.name)
                ids[index] = id
                values[index] = Self.hex(id)
                fields[index] =
                    Array("Set-Cookie: ".utf8) + name + [UInt8(ascii: "=")] + values[index]
                    + Array("; Path=/; HttpOnly\r\n".utf8)
            }
            let sorted = service.endpoints.sorted { ids[$0] < ids[$1] }
            for (offset, index) in sorted.enumerated() { order[service.endpoints.lowerBound + offset] = Int32(index) }
        }
        self.ids = ids
        self.values = values
        self.setCookieFields = fields
        self.order = order
    }

    /// The stable id of `address` within the service called `service`.
    static func id(address: SocketAddress, service: String) -> UInt64 {
        var hash = SocketAddress.mix(address.addressHash ^ UInt64(address.port))
        for byte in service.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return SocketAddress.mix(hash)
    }

    static func hex(_ id: UInt64) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        return (0..<16).map { digits[Int(id >> (60 - 4 * UInt64($0)) & 0xF)] }
    }

    /// The endpoint of `range` whose cookie is `value`, or nil. `value` must be 16 lower-case
    /// hex digits, optionally in double quotes (RFC 6265 allows them). No allocation.
    func endpoint(forCookie value: UnsafeRawBufferPointer, in range: Range<Int>) -> Int? {
        var start = 0
        var count = value.count
        if count == 18, value[0] == UInt8(ascii: "\""), value[17] == UInt8(ascii: "\"") {
            start = 1
            count = 16
        }
        guard count == 16 else { return nil }
        var id: UInt64 = 0
        for offset in start..<(start + 16) {
            let byte = value[offset]
            let nibble: UInt8
            if byte &- UInt8(ascii: "0") < 10 {
                nibble = byte &- UInt8(ascii: "0")
            } else if byte &- UInt8(ascii: "a") < 6 {
                nibble = byte &- UInt8(ascii: "a") &+ 10
            } else {
                return nil
            }
            id = id << 4 | UInt64(nibble)
        }
        var low = range.lowerBound
        var high = range.upperBound
        while low < high {
            let middle = (low + high) >> 1
            let candidate = ids[Int(order[middle])]
            if candidate == id { return Int(order[middle]) }
            if candidate < id { low = middle + 1 } else { high = middle }
        }
        return nil
    }
}
