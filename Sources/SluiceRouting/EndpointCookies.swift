/// The sticky-session cookie of every endpoint of a `cookie` service, computed once per
/// snapshot and shared by the pickers of every loop.
///
/// An endpoint's cookie value is 16 lower-case hex digits of a hash of its address (with the
/// port) and its service's name: stable across runs, reloads and loops, so a client keeps its
/// endpoint while that endpoint stays in the service, and distinct for two services sharing
/// an endpoint. Endpoints of other services have no cookie (no slot; empty values).
///
/// Sparse: only endpoints of `cookie` services have a slot, so a table without them costs
/// nothing per endpoint (building, memory, freeing).
struct EndpointCookies: Sendable {
    /// Per service: the slot of its first endpoint in the arrays below, -1 when it does not
    /// use cookies. Empty when no service does.
    let start: [Int32]
    /// Per slot: the value as a number (the hex digits' value).
    let ids: [UInt64]
    /// Per slot: the 16 hex digits.
    let values: [[UInt8]]
    /// Per slot: `Set-Cookie: NAME=VALUE; Path=/; HttpOnly\r\n`.
    let setCookieFields: [[UInt8]]
    /// Within each cookie service's slots: its endpoint indices sorted by id, for a binary
    /// search.
    let order: [Int32]

    init(services: [Service], endpoints: [Endpoint]) {
        // The cookie services by index, read in place: no copy (and no reference count
        // touched) per service of a large table.
        let cookieServices: [Int] = services.withUnsafeBufferPointer { buffer in
            // SAFETY: `buffer` is `services`' storage, read only within this closure.
            buffer.indices.filter { buffer[$0].algorithm == .cookie }
        }
        guard !cookieServices.isEmpty else {
            (start, ids, values, setCookieFields, order) = ([], [], [], [], [])
            return
        }
        var start = [Int32](repeating: -1, count: services.count)
        var ids: [UInt64] = []
        var values: [[UInt8]] = []
        var fields: [[UInt8]] = []
        var order: [Int32] = []
        for serviceIndex in cookieServices {
            let service = services[serviceIndex]
            let first = ids.count
            start[serviceIndex] = Int32(first)
            let name = service.cookieName ?? Service.defaultCookieName
            for index in service.endpoints {
                let id = Self.id(address: endpoints[index].address, service: service.name)
                let value = Self.hex(id)
                ids.append(id)
                values.append(value)
                fields.append(
                    Array("Set-Cookie: ".utf8) + name + [UInt8(ascii: "=")] + value
                        + Array("; Path=/; HttpOnly\r\n".utf8))
            }
            let lower = service.endpoints.lowerBound
            order += service.endpoints.sorted { ids[first + $0 - lower] < ids[first + $1 - lower] }.map { Int32($0) }
        }
        self.start = start
        self.ids = ids
        self.values = values
        self.setCookieFields = fields
        self.order = order
    }

    /// The slot of `endpoint` (of service `service`, whose range is `range`), or nil when the
    /// service does not use cookies.
    @inline(__always)
    func slot(_ endpoint: Int, service: Int, range: Range<Int>) -> Int? {
        guard !start.isEmpty, service >= 0, service < start.count, start[service] >= 0 else { return nil }
        return Int(start[service]) + endpoint - range.lowerBound
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
    func endpoint(forCookie value: UnsafeRawBufferPointer, service: Int, in range: Range<Int>) -> Int? {
        guard let first = slot(range.lowerBound, service: service, range: range) else { return nil }
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
        var low = first
        var high = first + range.count
        while low < high {
            let middle = (low + high) >> 1
            let endpoint = Int(order[middle])
            let candidate = ids[first + endpoint - range.lowerBound]
            if candidate == id { return endpoint }
            if candidate < id { low = middle + 1 } else { high = middle }
        }
        return nil
    }
}
