/// The per-request path: no allocation, no `String`, bytes read in place.
extension HTTPRouteTable {
    /// The route for a request.
    ///
    /// `host` is the `Host` field value (or the authority of an absolute-form target) as sent:
    /// `Example.COM`, `example.com.:8080`, `[::1]:8080`; empty when the request had none.
    /// `path` is the origin-form target (`/a/b?q`); empty is read as `/`. `defaultPort` (80 or
    /// 443) is the request's port when `host` names none.
    ///
    /// Host matching is case-insensitive and ignores one trailing dot. Precedence: exact name
    /// with the request's port, exact name for any port, `*.domain` with the port, `*.domain`
    /// for any port. The first host entry found decides: if none of its paths matches, the
    /// request takes the default (there is no falling through to a less specific host). Within
    /// the entry the longest prefix matching at a segment boundary wins.
    ///
    /// A matching `terminate` route answers `.terminate`, a `redirectHTTPS` route
    /// `.redirect(route:)`, any other `.service`. A malformed `host` (bad port, unclosed
    /// bracket) matches no route. Without a match: `.terminate` when the default terminates,
    /// else the default service when there is one, else `.noRoute`. Pure; any thread; the
    /// buffers are only read during the call.
    public func lookup(host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer, defaultPort: UInt16) -> RouteMatch {
        let route = findRoute(host: host, path: path, defaultPort: defaultPort)
        guard route >= 0 else { return fallback }
        switch routeAction[route] {
        case Self.actionTerminate: return .terminate
        case Self.actionRedirect: return .redirect(route: routeIndex[route])
        default: return .service(routeService[route], stripPrefix: routeStrip[route])
        }
    }

    /// The index into `routes` of the route `lookup(host:path:defaultPort:)` chooses, or -1
    /// when the request takes the default. The same matching rules; for callers that need
    /// more of the route than `RouteMatch` carries (its `hstsField`, `httpsPort`). Pure,
    /// allocation-free; any thread.
    public func lookupRoute(host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer, defaultPort: UInt16) -> Int32 {
        let route = findRoute(host: host, path: path, defaultPort: defaultPort)
        return route >= 0 ? routeIndex[route] : -1
    }

    /// The stored route (an index into the flat route arrays, not `routes`) for a request, or -1.
    private func findRoute(host: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer, defaultPort: UInt16) -> Int {
        guard let (nameEnd, port) = Self.splitAuthority(host, defaultPort: defaultPort) else { return -1 }
        let exactHash = Self.nameHash(UnsafeRawBufferPointer(rebasing: host[0..<nameEnd]))
        var entry = find(in: exactSlots, nameHash: exactHash, port: port, host: host, from: 0, to: nameEnd)
        if entry < 0, port != 0 {
            entry = find(in: exactSlots, nameHash: exactHash, port: 0, host: host, from: 0, to: nameEnd)
        }
        if entry < 0, host[0] != UInt8(ascii: "[") {
            // `*.domain` matches one label in front of `domain`: look the rest up after the first dot.
            var dot = 0
            while dot < nameEnd, host[dot] != UInt8(ascii: ".") { dot += 1 }
            if dot > 0, dot + 1 < nameEnd {
                let start = dot + 1
                let domainHash = Self.nameHash(UnsafeRawBufferPointer(rebasing: host[start..<nameEnd]))
                entry = find(in: wildcardSlots, nameHash: domainHash, port: port, host: host, from: start, to: nameEnd)
                if entry < 0, port != 0 {
                    entry = find(in: wildcardSlots, nameHash: domainHash, port: 0, host: host, from: start, to: nameEnd)
                }
            }
        }
        guard entry >= 0 else { return -1 }
        return matchPath(entry: entry, path: path)
    }

    /// What a request that matches no route gets.
    var fallback: RouteMatch {
        if defaultBackend.terminate { return .terminate }
        if let service = defaultBackend.service { return .service(Int32(service), stripPrefix: 0) }
        return .noRoute
    }

    /// Where the host name ends in `authority` (before the port, without a trailing dot) and
    /// the request's port; nil when the name is empty or the port is not 1–65535 digits.
    static func splitAuthority(_ authority: UnsafeRawBufferPointer, defaultPort: UInt16) -> (Int, UInt16)? {
        let count = authority.count
        guard count > 0 else { return nil }
        var nameEnd = 0
        if authority[0] == UInt8(ascii: "[") {
            while nameEnd < count, authority[nameEnd] != UInt8(ascii: "]") { nameEnd += 1 }
            guard nameEnd < count else { return nil }
            nameEnd += 1
        } else {
            while nameEnd < count, authority[nameEnd] != UInt8(ascii: ":") { nameEnd += 1 }
        }
        var port = defaultPort
        if nameEnd < count {
            guard authority[nameEnd] == UInt8(ascii: ":") else { return nil }
            let digits = count - nameEnd - 1
            // An empty port is allowed by RFC 3986 and means the default.
            if digits > 0 {
                guard digits <= 5 else { return nil }
                var value = 0
                for index in (nameEnd + 1)..<count {
                    let digit = authority[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    value = value * 10 + Int(digit)
                }
                guard value <= 65535 else { return nil }
                port = UInt16(value)
            }
        }
        if nameEnd > 0, authority[nameEnd - 1] == UInt8(ascii: ".") { nameEnd -= 1 }
        guard nameEnd > 0 else { return nil }
        return (nameEnd, port)
    }

    /// The host entry for `host[from..<to]` and `port` in `slots`, or -1.
    private func find(
        in slots: [Int32], nameHash: UInt64, port: UInt16, host: UnsafeRawBufferPointer, from: Int, to: Int
    ) -> Int {
        let hash = Self.keyHash(name: nameHash, port: port)
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = Int(slots[slot]) - 1
            if entry < 0 { return -1 }
            if hostKeyHash[entry] == hash, hostPort[entry] == port, nameEquals(entry, host, from, to) { return entry }
            slot = (slot + 1) & mask
        }
    }

    private func nameEquals(_ entry: Int, _ host: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Bool {
        let start = Int(hostNameStart[entry])
        guard Int(hostNameEnd[entry]) - start == to - from else { return false }
        for offset in 0..<(to - from) where HostPattern.lowercaseASCII(host[from + offset]) != hostNames[start + offset]
        {
            return false
        }
        return true
    }

    /// The longest prefix of `entry` that `path` starts with at a segment boundary: the prefix
    /// is the whole path, or ends in `/`, or is followed by `/` or `?`. Returns the stored
    /// route's index, or -1 when none of the entry's prefixes matches.
    private func matchPath(entry: Int, path: UnsafeRawBufferPointer) -> Int {
        for route in Int(hostRouteStart[entry])..<Int(hostRouteEnd[entry]) {
            let start = Int(routePathStart[route])
            let length = Int(routePathStart[route + 1]) - start
            if length > 1 {
                guard path.count >= length else { continue }
                var equal = true
                for offset in 0..<length where path[offset] != paths[start + offset] {
                    equal = false
                    break
                }
                guard equal else { continue }
                if path.count > length, paths[start + length - 1] != UInt8(ascii: "/") {
                    let next = path[length]
                    guard next == UInt8(ascii: "/") || next == UInt8(ascii: "?") else { continue }
                }
            }
            return route
        }
        return -1
    }
}
