/// The routes of one HTTP listener, frozen into flat arrays for allocation-free lookups.
///
/// Layout (all `let`, shared by every loop without locks):
///
/// | array            | indexed by     | holds                                                  |
/// | ---------------- | -------------- | ------------------------------------------------------ |
/// | `exactSlots`     | hash & mask    | host entry + 1, 0 = empty (open addressing, linear)    |
/// | `wildcardSlots`  | hash & mask    | the same for `*.domain` entries, keyed by `domain`     |
/// | `hostKeyHash[h]` | host entry     | hash of (name, port) as the slots were filled          |
/// | `hostNameStart[h]..<hostNameEnd[h]` | host entry | its lower-case name in `hostNames`      |
/// | `hostPort[h]`    | host entry     | the port it requires, 0 = any                          |
/// | `hostRouteStart[h]..<hostRouteEnd[h]` | host entry | its routes, longest prefix first      |
/// | `routePathStart[r]..<routePathStart[r+1]` | route | its prefix bytes in `paths`            |
/// | `routeService[r]`, `routeStrip[r]` | route | where the request goes, bytes to strip      |
/// | `routeAction[r]` | route          | `actionService`, `actionTerminate`, `actionRedirect`   |
/// | `routeIndex[r]`  | route          | its index in `routes` (configuration order)            |
///
/// Invariants: each table is at most half full, so a probe ends at an empty slot; a host
/// entry the slots name is unique per (wildcard, name, port); within an entry prefixes are
/// unique. `replacing(_:with:services:)` leaves the entries and stored routes it replaced
/// behind, unnamed by any slot, until a rebuild drops them (when they outnumber the rest).
public final class HTTPRouteTable: Sendable {
    public let defaultBackend: DefaultBackend
    /// The routes as given, duplicates of an earlier (host, path) dropped. `lookupRoute` and
    /// `RouteMatch.redirect` index this array.
    public let routes: [HTTPRoute]
    /// Some route adds `Strict-Transport-Security` (then callers look up the route itself).
    public let hasHSTS: Bool

    let exactSlots: [Int32]
    let wildcardSlots: [Int32]
    let hostKeyHash: [UInt64]
    let hostNames: [UInt8]
    let hostNameStart: [Int32]
    let hostNameEnd: [Int32]
    let hostPort: [UInt16]
    let hostWildcard: [Bool]
    let hostRouteStart: [Int32]
    let hostRouteEnd: [Int32]
    let paths: [UInt8]
    let routePathStart: [Int32]
    let routeService: [Int32]
    let routeStrip: [Int32]
    let routeAction: [UInt8]
    let routeIndex: [Int32]
    /// Host entries and stored routes the slots name.
    let liveHosts: Int
    let liveRoutes: Int
    let liveWildcards: Int

    static let actionService: UInt8 = 0
    static let actionTerminate: UInt8 = 1
    static let actionRedirect: UInt8 = 2

    /// Builds the table. When two routes have the same host pattern and path prefix the first
    /// is kept (the configuration loader reports such a pair before it gets here). Service
    /// indices are not checked against any snapshot.
    public convenience init(routes given: [HTTPRoute], defaultBackend: DefaultBackend = DefaultBackend()) {
        // Group by host pattern in first-appearance order (one hash per route).
        var order: [HostPattern] = []
        var groupOf: [HostPattern: Int] = [:]
        groupOf.reserveCapacity(given.count)
        // Members by their index in `kept` (no route copies).
        var groups: [[Int32]] = []
        var kept: [HTTPRoute] = []
        kept.reserveCapacity(given.count)
        for route in given {
            let group: Int
            if let known = groupOf[route.host] {
                if groups[known].contains(where: { kept[Int($0)].pathPrefix == route.pathPrefix }) { continue }
                group = known
            } else {
                group = groups.count
                groupOf[route.host] = group
                groups.append([])
                order.append(route.host)
            }
            groups[group].append(Int32(kept.count))
            kept.append(route)
        }
        var parts = Parts()
        parts.reserve(hosts: order.count, routes: kept.count)
        for (group, pattern) in order.enumerated() {
            parts.appendEntry(pattern, members: groups[group], of: kept)
        }
        parts.fillSlots()
        self.init(parts: parts, routes: kept, defaultBackend: defaultBackend)
    }

    private init(parts: Parts, routes: [HTTPRoute], defaultBackend: DefaultBackend) {
        self.defaultBackend = defaultBackend
        self.routes = routes
        hasHSTS = routes.contains { $0.hstsField != nil }
        exactSlots = parts.exactSlots
        wildcardSlots = parts.wildcardSlots
        hostKeyHash = parts.hostKeyHash
        hostNames = parts.hostNames
        hostNameStart = parts.hostNameStart
        hostNameEnd = parts.hostNameEnd
        hostPort = parts.hostPort
        hostWildcard = parts.hostWildcard
        hostRouteStart = parts.hostRouteStart
        hostRouteEnd = parts.hostRouteEnd
        paths = parts.paths
        routePathStart = parts.routePathStart
        routeService = parts.routeService
        routeStrip = parts.routeStrip
        routeAction = parts.routeAction
        routeIndex = parts.routeIndex
        liveHosts = parts.liveHosts
        liveRoutes = parts.liveRoutes
        liveWildcards = parts.liveWildcards
    }

    private var parts: Parts {
        Parts(
            exactSlots: exactSlots, wildcardSlots: wildcardSlots, hostKeyHash: hostKeyHash, hostNames: hostNames,
            hostNameStart: hostNameStart, hostNameEnd: hostNameEnd, hostPort: hostPort, hostWildcard: hostWildcard,
            hostRouteStart: hostRouteStart, hostRouteEnd: hostRouteEnd, paths: paths, routePathStart: routePathStart,
            routeService: routeService, routeStrip: routeStrip, routeAction: routeAction, routeIndex: routeIndex,
            liveHosts: liveHosts, liveRoutes: liveRoutes, liveWildcards: liveWildcards)
    }

    /// The table `HTTPRouteTable(routes:defaultBackend:)` makes of this one's `routes` with
    /// `removed` replaced by `inserted`, and each service index `s` of the others (and of the
    /// default backend) read as `services[s]` when `services` is given. Only the host entries
    /// the removed and inserted routes name are made again; the rest of the work is copying
    /// and renumbering the flat arrays (no hashing, no allocation per route), so a change of a
    /// few hosts in a table of many costs little. Builds the table whole when an inserted
    /// route repeats another's (host, path), or when left-behind entries outnumber the rest.
    public func replacing(_ removed: Range<Int>, with inserted: [HTTPRoute], services: [Int32]? = nil)
        -> HTTPRouteTable
    {
        precondition(removed.lowerBound >= 0 && removed.upperBound <= routes.count, "a range of the routes")
        let delta = inserted.count - removed.count
        func mapped(_ service: Int) -> Int {
            guard let services, service >= 0, service < services.count else { return service }
            return Int(services[service])
        }
        var newRoutes = routes
        newRoutes.replaceSubrange(removed, with: inserted)
        if services != nil {
            for index in newRoutes.indices
            where index < removed.lowerBound || index >= removed.lowerBound + inserted.count {
                newRoutes[index].service = mapped(newRoutes[index].service)
            }
        }
        var backend = defaultBackend
        if let service = backend.service { backend.service = mapped(service) }
        // A large part replaced: building whole is as cheap.
        if (removed.count + inserted.count) * 4 > routes.count + inserted.count + 64 {
            return HTTPRouteTable(routes: newRoutes, defaultBackend: backend)
        }
        // The hosts whose entries change, each once, in a fixed order, with the inserted
        // routes (by offset) of each.
        var touched: [HostPattern] = []
        var insertedOf: [HostPattern: [Int32]] = [:]
        for route in routes[removed] where insertedOf[route.host] == nil {
            insertedOf[route.host] = []
            touched.append(route.host)
        }
        for (offset, route) in inserted.enumerated() {
            if insertedOf[route.host] == nil { touched.append(route.host) }
            insertedOf[route.host, default: []].append(Int32(removed.lowerBound + offset))
        }

        var parts = self.parts
        // The touched hosts' routes in the new order (by new index): those of the old entry
        // that stay, and the inserted ones; their old entries leave the slots.
        var pending: [(HostPattern, [Int32])] = []
        pending.reserveCapacity(touched.count)
        for host in touched {
            var members: [Int32] = []
            let old = parts.entry(of: host)
            if old >= 0 {
                for stored in Int(parts.hostRouteStart[old])..<Int(parts.hostRouteEnd[old]) {
                    let index = Int(parts.routeIndex[stored])
                    if removed.contains(index) { continue }
                    members.append(Int32(index < removed.lowerBound ? index : index + delta))
                }
                parts.removeEntry(old)
            }
            members += insertedOf[host] ?? []
            pending.append((host, members))
        }
        // Renumber what stays: routes after the removed ones move by `delta`, services by
        // `services`. (Stored routes of replaced entries are renumbered too, unread.)
        if delta != 0 {
            let from = Int32(removed.upperBound)
            for stored in parts.routeIndex.indices where parts.routeIndex[stored] >= from {
                parts.routeIndex[stored] += Int32(delta)
            }
        }
        if let services {
            for stored in parts.routeService.indices where parts.routeAction[stored] == Self.actionService {
                let service = Int(parts.routeService[stored])
                if service >= 0 && service < services.count { parts.routeService[stored] = services[service] }
            }
        }
        for (host, unsorted) in pending where !unsorted.isEmpty {
            let members = unsorted.sorted()
            for (position, member) in members.enumerated() {
                let prefix = newRoutes[Int(member)].pathPrefix
                if members[..<position].contains(where: { newRoutes[Int($0)].pathPrefix == prefix }) {
                    return HTTPRouteTable(routes: newRoutes, defaultBackend: backend)
                }
            }
            parts.appendEntry(host, members: members, of: newRoutes)
            parts.insertSlot(parts.hostKeyHash.count - 1)
        }
        if parts.routeIndex.count > 2 * parts.liveRoutes + 1024 || parts.hostPort.count > 2 * parts.liveHosts + 1024 {
            return HTTPRouteTable(routes: newRoutes, defaultBackend: backend)
        }
        return HTTPRouteTable(parts: parts, routes: newRoutes, defaultBackend: backend)
    }

    /// FNV-1a over the lower-cased bytes. Stable across runs; lookups hash request bytes the
    /// same way without copying them.
    @inline(__always)
    static func nameHash<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(HostPattern.lowercaseASCII(byte))) &* 0x0000_0100_0000_01B3 }
        return hash
    }

    @inline(__always)
    static func keyHash(name: UInt64, port: UInt16) -> UInt64 {
        SocketAddress.mix(name &+ UInt64(port))
    }
}

extension HTTPRouteTable {
    /// The arrays of a table while it is built or edited.
    struct Parts {
        var exactSlots: [Int32] = []
        var wildcardSlots: [Int32] = []
        var hostKeyHash: [UInt64] = []
        var hostNames: [UInt8] = []
        var hostNameStart: [Int32] = []
        var hostNameEnd: [Int32] = []
        var hostPort: [UInt16] = []
        var hostWildcard: [Bool] = []
        var hostRouteStart: [Int32] = []
        var hostRouteEnd: [Int32] = []
        var paths: [UInt8] = []
        var routePathStart: [Int32] = [0]
        var routeService: [Int32] = []
        var routeStrip: [Int32] = []
        var routeAction: [UInt8] = []
        var routeIndex: [Int32] = []
        var liveHosts = 0
        var liveRoutes = 0
        /// Of `liveHosts`, the `*.domain` ones.
        var liveWildcards = 0

        mutating func reserve(hosts: Int, routes: Int) {
            hostKeyHash.reserveCapacity(hosts)
            hostNameStart.reserveCapacity(hosts)
            hostNameEnd.reserveCapacity(hosts)
            hostPort.reserveCapacity(hosts)
            hostWildcard.reserveCapacity(hosts)
            hostRouteStart.reserveCapacity(hosts)
            hostRouteEnd.reserveCapacity(hosts)
            routePathStart.reserveCapacity(routes + 1)
            routeService.reserveCapacity(routes)
            routeStrip.reserveCapacity(routes)
            routeAction.reserveCapacity(routes)
            routeIndex.reserveCapacity(routes)
        }

        /// Appends a host entry for `pattern` whose routes are `routes[members]` (unique
        /// prefixes), longest prefix first. Not yet in the slots.
        mutating func appendEntry(_ pattern: HostPattern, members: [Int32], of routes: [HTTPRoute]) {
            let port = pattern.port ?? 0
            hostKeyHash.append(HTTPRouteTable.keyHash(name: HTTPRouteTable.nameHash(pattern.name[...]), port: port))
            hostNameStart.append(Int32(hostNames.count))
            hostNames += pattern.name
            hostNameEnd.append(Int32(hostNames.count))
            hostPort.append(port)
            hostWildcard.append(pattern.wildcard)
            hostRouteStart.append(Int32(routeService.count))
            // Longest prefix first; equal lengths cannot both match one path.
            let sorted =
                members.count == 1
                ? members : members.sorted { routes[Int($0)].pathPrefix.count > routes[Int($1)].pathPrefix.count }
            for index in sorted {
                let route = routes[Int(index)]
                paths += route.pathPrefix
                routePathStart.append(Int32(paths.count))
                routeService.append(Int32(route.service))
                routeStrip.append(route.stripLength)
                routeAction.append(
                    route.terminate
                        ? HTTPRouteTable.actionTerminate
                        : route.redirectHTTPS ? HTTPRouteTable.actionRedirect : HTTPRouteTable.actionService)
                routeIndex.append(index)
            }
            hostRouteEnd.append(Int32(routeService.count))
            liveHosts += 1
            if pattern.wildcard { liveWildcards += 1 }
            liveRoutes += members.count
        }

        /// Open-addressing tables for every entry: a power of two at least twice their number.
        mutating func fillSlots() {
            exactSlots = [Int32](repeating: 0, count: Self.capacity(for: liveHosts - liveWildcards))
            wildcardSlots = [Int32](repeating: 0, count: Self.capacity(for: liveWildcards))
            for entry in hostKeyHash.indices { place(entry) }
        }

        static func capacity(for entries: Int) -> Int {
            var capacity = 8
            while capacity < entries * 2 { capacity <<= 1 }
            return capacity
        }

        private mutating func place(_ entry: Int) {
            let hash = hostKeyHash[entry]
            if hostWildcard[entry] {
                Self.place(entry, hash: hash, in: &wildcardSlots)
            } else {
                Self.place(entry, hash: hash, in: &exactSlots)
            }
        }

        private static func place(_ entry: Int, hash: UInt64, in slots: inout [Int32]) {
            let mask = slots.count - 1
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(entry + 1)
        }

        /// Puts the appended entry `entry` (counted live already) in its slots, growing them
        /// when they would be more than half full.
        mutating func insertSlot(_ entry: Int) {
            let wildcard = hostWildcard[entry]
            let live = wildcard ? liveWildcards : liveHosts - liveWildcards
            if live * 2 > (wildcard ? wildcardSlots.count : exactSlots.count) {
                let live = liveEntries()
                exactSlots = [Int32](repeating: 0, count: Self.capacity(for: live.exact.count))
                wildcardSlots = [Int32](repeating: 0, count: Self.capacity(for: live.wildcard.count))
                for other in live.exact + live.wildcard { place(other) }
            } else {
                place(entry)
            }
        }

        /// The entries the slots name (the new one included: it is live once appended).
        private func liveEntries() -> (exact: [Int], wildcard: [Int]) {
            var exact: [Int] = []
            var wildcard: [Int] = []
            for slot in exactSlots where slot != 0 { exact.append(Int(slot) - 1) }
            for slot in wildcardSlots where slot != 0 { wildcard.append(Int(slot) - 1) }
            let last = hostKeyHash.count - 1
            if hostWildcard[last] { wildcard.append(last) } else { exact.append(last) }
            return (exact, wildcard)
        }

        /// The live entry for `pattern`, or -1.
        func entry(of pattern: HostPattern) -> Int {
            let slots = pattern.wildcard ? wildcardSlots : exactSlots
            guard !slots.isEmpty else { return -1 }
            let port = pattern.port ?? 0
            let hash = HTTPRouteTable.keyHash(name: HTTPRouteTable.nameHash(pattern.name[...]), port: port)
            let mask = slots.count - 1
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 {
                let entry = Int(slots[slot]) - 1
                if hostKeyHash[entry] == hash, hostPort[entry] == port,
                    hostNames[Int(hostNameStart[entry])..<Int(hostNameEnd[entry])].elementsEqual(pattern.name)
                {
                    return entry
                }
                slot = (slot + 1) & mask
            }
            return -1
        }

        /// Takes the live entry `entry` out of its slots (backward-shift deletion: no
        /// tombstones, every probe still ends at an empty slot). Its arrays stay, unnamed.
        mutating func removeEntry(_ entry: Int) {
            if hostWildcard[entry] {
                Self.remove(entry, hashes: hostKeyHash, from: &wildcardSlots)
            } else {
                Self.remove(entry, hashes: hostKeyHash, from: &exactSlots)
            }
            liveHosts -= 1
            if hostWildcard[entry] { liveWildcards -= 1 }
            liveRoutes -= Int(hostRouteEnd[entry] - hostRouteStart[entry])
        }

        private static func remove(_ entry: Int, hashes: [UInt64], from slots: inout [Int32]) {
            let mask = slots.count - 1
            var hole = Int(truncatingIfNeeded: hashes[entry]) & mask
            while Int(slots[hole]) - 1 != entry { hole = (hole + 1) & mask }
            slots[hole] = 0
            var next = hole
            while true {
                next = (next + 1) & mask
                let occupant = Int(slots[next]) - 1
                if occupant < 0 { return }
                let home = Int(truncatingIfNeeded: hashes[occupant]) & mask
                // The occupant may move into the hole when its home is not cyclically in
                // (hole, next].
                let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
                if stays { continue }
                slots[hole] = slots[next]
                slots[next] = 0
                hole = next
            }
        }
    }
}
