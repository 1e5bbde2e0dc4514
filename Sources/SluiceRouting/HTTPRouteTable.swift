/// The routes of one HTTP listener, frozen into flat arrays for allocation-free lookups.
///
/// Layout (all `let`, shared by every loop without locks):
///
/// | array            | indexed by     | holds                                                  |
/// | ---------------- | -------------- | ------------------------------------------------------ |
/// | `exactSlots`     | hash & mask    | host entry + 1, 0 = empty (open addressing, linear)    |
/// | `wildcardSlots`  | hash & mask    | the same for `*.domain` entries, keyed by `domain`     |
/// | `hostKeyHash[h]` | host entry     | hash of (name, port) as the slots were filled          |
/// | `hostNameStart[h]..<hostNameStart[h+1]` | host entry | its lower-case name in `hostNames` |
/// | `hostPort[h]`    | host entry     | the port it requires, 0 = any                          |
/// | `hostRouteStart[h]..<hostRouteStart[h+1]` | host entry | its routes, longest prefix first |
/// | `routePathStart[r]..<routePathStart[r+1]` | route | its prefix bytes in `paths`            |
/// | `routeService[r]`, `routeStrip[r]` | route | where the request goes, bytes to strip      |
/// | `routeAction[r]` | route          | `actionService`, `actionTerminate`, `actionRedirect`   |
/// | `routeIndex[r]`  | route          | its index in `routes` (configuration order)            |
///
/// Invariants: each table is at most half full, so a probe ends at an empty slot; a host
/// entry is unique per (wildcard, name, port); within an entry prefixes are unique.
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
    let hostPort: [UInt16]
    let hostRouteStart: [Int32]
    let paths: [UInt8]
    let routePathStart: [Int32]
    let routeService: [Int32]
    let routeStrip: [Int32]
    let routeAction: [UInt8]
    let routeIndex: [Int32]

    static let actionService: UInt8 = 0
    static let actionTerminate: UInt8 = 1
    static let actionRedirect: UInt8 = 2

    /// Builds the table. When two routes have the same host pattern and path prefix the first
    /// is kept (the configuration loader reports such a pair before it gets here). Service
    /// indices are not checked against any snapshot.
    public init(routes given: [HTTPRoute], defaultBackend: DefaultBackend = DefaultBackend()) {
        self.defaultBackend = defaultBackend

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
        routes = kept
        hasHSTS = kept.contains { $0.hstsField != nil }

        var keyHash: [UInt64] = []
        var names: [UInt8] = []
        var nameStart: [Int32] = [0]
        var ports: [UInt16] = []
        var routeStart: [Int32] = [0]
        var pathBytes: [UInt8] = []
        var pathStart: [Int32] = [0]
        var services: [Int32] = []
        var strips: [Int32] = []
        var actions: [UInt8] = []
        var indices: [Int32] = []
        var exactEntries: [Int] = []
        var wildcardEntries: [Int] = []
        for (group, pattern) in order.enumerated() {
            let entry = ports.count
            let port = pattern.port ?? 0
            keyHash.append(Self.keyHash(name: Self.nameHash(pattern.name[...]), port: port))
            names += pattern.name
            nameStart.append(Int32(names.count))
            ports.append(port)
            if pattern.wildcard { wildcardEntries.append(entry) } else { exactEntries.append(entry) }
            // Longest prefix first; equal lengths cannot both match one path.
            let members = groups[group]
            let sorted =
                members.count == 1
                ? members : members.sorted { kept[Int($0)].pathPrefix.count > kept[Int($1)].pathPrefix.count }
            for index in sorted {
                let route = kept[Int(index)]
                pathBytes += route.pathPrefix
                pathStart.append(Int32(pathBytes.count))
                services.append(Int32(route.service))
                strips.append(route.stripLength)
                actions.append(
                    route.terminate
                        ? Self.actionTerminate : route.redirectHTTPS ? Self.actionRedirect : Self.actionService)
                indices.append(index)
            }
            routeStart.append(Int32(services.count))
        }
        hostKeyHash = keyHash
        hostNames = names
        hostNameStart = nameStart
        hostPort = ports
        hostRouteStart = routeStart
        paths = pathBytes
        routePathStart = pathStart
        routeService = services
        routeStrip = strips
        routeAction = actions
        routeIndex = indices
        exactSlots = Self.slots(for: exactEntries, hashes: keyHash)
        wildcardSlots = Self.slots(for: wildcardEntries, hashes: keyHash)
    }

    /// An open-addressing table for `entries`: a power of two at least twice their number.
    private static func slots(for entries: [Int], hashes: [UInt64]) -> [Int32] {
        var capacity = 8
        while capacity < entries.count * 2 { capacity <<= 1 }
        var slots = [Int32](repeating: 0, count: capacity)
        let mask = capacity - 1
        for entry in entries {
            var slot = Int(truncatingIfNeeded: hashes[entry]) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(entry + 1)
        }
        return slots
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
