/// Where the services and endpoints of one snapshot are in a later one, by stable identity:
/// a service by its name (the file's name, or `namespace/name:port` under Kubernetes), an
/// endpoint by its service's name and its address. Indices are renumbered by every table
/// swap; identities are not.
///
/// Built once per swap by the control plane (off the loops) and composed by a loop for the
/// older snapshots it still keeps alive, so that bookkeeping about an endpoint (passive
/// down-marks, leastconn counts, pooled upstream connections) reaches the current table
/// without ever indexing it with an old number.
///
/// Invariants: `endpoints.count` is the old snapshot's endpoint count, `services.count` its
/// service count; every entry is an index into the new snapshot or -1 (gone).
public struct SnapshotRemap: Sendable {
    /// Generation of the snapshot the indices come from.
    public let from: UInt64
    /// Generation of the snapshot they are mapped into.
    public let to: UInt64
    /// Old endpoint index → new endpoint index, or -1.
    public let endpoints: [Int32]
    /// Old service index → new service index, or -1.
    public let services: [Int32]

    public init(from: UInt64, to: UInt64, endpoints: [Int32], services: [Int32]) {
        self.from = from
        self.to = to
        self.endpoints = endpoints
        self.services = services
    }

    /// Maps `old` into `new` by identity. O(services + endpoints): services are matched
    /// walking both tables in step (a service in the same place, or a few places on, is found
    /// without hashing; equal names of a reused table compare by storage), and only those left
    /// over go through a dictionary; endpoints of a service whose addresses are unchanged map
    /// by position, the others by address. Names are unique within a snapshot. Called by the
    /// control thread; allocates.
    public init(from old: RoutingSnapshot, to new: RoutingSnapshot) {
        let services = Self.matchServices(old.services, new.services)
        var endpoints = [Int32](repeating: -1, count: old.endpoints.count)
        for (oldIndex, service) in old.services.enumerated() where services[oldIndex] >= 0 {
            let newRange = new.services[Int(services[oldIndex])].endpoints
            if newRange.isEmpty { continue }
            let oldRange = service.endpoints
            if oldRange.count == newRange.count
                && (0..<oldRange.count).allSatisfy({
                    old.endpoints[oldRange.lowerBound + $0].address == new.endpoints[newRange.lowerBound + $0].address
                })
            {
                for offset in 0..<oldRange.count {
                    endpoints[oldRange.lowerBound + offset] = Int32(newRange.lowerBound + offset)
                }
            } else if newRange.count <= 16 {
                for oldEndpoint in service.endpoints {
                    let address = old.endpoints[oldEndpoint].address
                    for candidate in newRange where new.endpoints[candidate].address == address {
                        endpoints[oldEndpoint] = Int32(candidate)
                        break
                    }
                }
            } else {
                var byAddress: [SocketAddress: Int] = [:]
                byAddress.reserveCapacity(newRange.count)
                for candidate in newRange where byAddress[new.endpoints[candidate].address] == nil {
                    byAddress[new.endpoints[candidate].address] = candidate
                }
                for oldEndpoint in service.endpoints {
                    if let found = byAddress[old.endpoints[oldEndpoint].address] {
                        endpoints[oldEndpoint] = Int32(found)
                    }
                }
            }
        }
        self.init(from: old.generation, to: new.generation, endpoints: endpoints, services: services)
    }

    /// Old service index → new one by name, or -1. In step first (looking up to `lookahead`
    /// places on either side, for services added or removed), then a dictionary over the new
    /// services the walk did not match, for the old ones it did not.
    static func matchServices(_ old: [Service], _ new: [Service]) -> [Int32] {
        let lookahead = 4
        var map = [Int32](repeating: -1, count: old.count)
        var matched = [Bool](repeating: false, count: new.count)
        var unmatchedOld: [Int] = []
        var i = 0
        var j = 0
        walk: while i < old.count && j < new.count {
            if old[i].name == new[j].name {
                map[i] = Int32(j)
                matched[j] = true
                i += 1
                j += 1
                continue
            }
            for distance in 1...lookahead {
                if j + distance < new.count && new[j + distance].name == old[i].name {
                    j += distance
                    continue walk
                }
                if i + distance < old.count && old[i + distance].name == new[j].name {
                    unmatchedOld += i..<(i + distance)
                    i += distance
                    continue walk
                }
            }
            unmatchedOld.append(i)
            i += 1
            j += 1
        }
        unmatchedOld += i..<old.count
        guard !unmatchedOld.isEmpty else { return map }
        var rest: [String: Int] = [:]
        for index in new.indices where !matched[index] && rest[new[index].name] == nil {
            rest[new[index].name] = index
        }
        for index in unmatchedOld {
            if let found = rest[old[index].name] { map[index] = Int32(found) }
        }
        return map
    }

    /// The map from this one's source straight into `next`'s target (`next.from` must be
    /// `to`). An identity that left in between stays gone, even if it came back later: what
    /// came back is a new endpoint. Allocates; called on swaps only.
    public func then(_ next: SnapshotRemap) -> SnapshotRemap {
        precondition(next.from == to, "remaps compose in order")
        return SnapshotRemap(
            from: from, to: next.to,
            endpoints: endpoints.map { $0 >= 0 ? next.endpoints[Int($0)] : -1 },
            services: services.map { $0 >= 0 ? next.services[Int($0)] : -1 })
    }

    /// The new index of old endpoint `index`, or nil when it left.
    @inline(__always)
    public func endpoint(_ index: Int) -> Int? {
        guard index >= 0, index < endpoints.count, endpoints[index] >= 0 else { return nil }
        return Int(endpoints[index])
    }

    /// The new index of old service `index`, or nil when it left.
    @inline(__always)
    public func service(_ index: Int) -> Int? {
        guard index >= 0, index < services.count, services[index] >= 0 else { return nil }
        return Int(services[index])
    }
}
