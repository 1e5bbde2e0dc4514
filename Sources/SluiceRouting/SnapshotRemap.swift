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

    /// Maps `old` into `new` by identity. O(services + endpoints) with one dictionary over the
    /// new services' names, and per service one over its addresses when it has many. Called by
    /// the control thread; allocates.
    public init(from old: RoutingSnapshot, to new: RoutingSnapshot) {
        var serviceByName: [String: Int] = [:]
        serviceByName.reserveCapacity(new.services.count)
        for (index, service) in new.services.enumerated() where serviceByName[service.name] == nil {
            serviceByName[service.name] = index
        }
        var services = [Int32](repeating: -1, count: old.services.count)
        var endpoints = [Int32](repeating: -1, count: old.endpoints.count)
        for (oldIndex, service) in old.services.enumerated() {
            guard let newIndex = serviceByName[service.name] else { continue }
            services[oldIndex] = Int32(newIndex)
            let newRange = new.services[newIndex].endpoints
            if newRange.isEmpty { continue }
            if newRange.count <= 16 {
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
