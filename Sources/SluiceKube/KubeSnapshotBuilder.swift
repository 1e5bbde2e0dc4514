import SluiceRouting

/// Makes the loops' snapshots from successive plans, redoing only what a `KubePlanChange`
/// names: the result equals `KubeRoutingPlan.snapshot` of the same plan.
///
/// | change                                 | work                                            |
/// | -------------------------------------- | ----------------------------------------------- |
/// | endpoints of services, same counts     | those endpoints overwritten                     |
/// | endpoints of services, counts changed  | endpoint runs between them copied, ranges moved |
/// | a service added or removed, `all`      | services and endpoints laid out again           |
/// | routing (or services added/removed)    | listeners and route tables built again          |
///
/// Unchanged route tables (classes, immutable) are shared with the previous snapshot.
public struct KubeSnapshotBuilder: Sendable {
    private var services: [Service] = []
    private var endpoints: [Endpoint] = []
    private var indexByKey: [String: Int] = [:]
    private var tables = KubeRoutingPlan.Tables(listeners: [], routeTables: [], tlsContexts: [])
    private var built = false

    public init() {}

    /// The snapshot of `plan`, given what changed since the plan of the last `build`
    /// (anything, on the first call).
    public mutating func build(
        _ plan: KubeRoutingPlan, change: KubePlanChange, generation: UInt64, timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(), tuning: Tuning = Tuning()
    ) -> RoutingSnapshot {
        let layout = !built || change.all || change.servicesAddedOrRemoved || services.count != plan.services.count
        if layout {
            lay(plan)
        } else if !change.services.isEmpty {
            refresh(plan, changed: change.services.compactMap { indexByKey[$0] }.sorted())
        }
        if layout || change.routing {
            tables = plan.tables(indexByKey: indexByKey)
        }
        built = true
        return RoutingSnapshot(
            generation: generation, listeners: tables.listeners, services: services, endpoints: endpoints,
            routeTables: tables.routeTables, tlsContexts: tables.tlsContexts, timeouts: timeouts, limits: limits,
            tuning: tuning)
    }

    /// Every service and endpoint from the plan. O(services + endpoints).
    private mutating func lay(_ plan: KubeRoutingPlan) {
        services = []
        services.reserveCapacity(plan.services.count)
        endpoints = []
        endpoints.reserveCapacity(plan.services.reduce(0) { $0 + $1.endpoints.count })
        indexByKey = [:]
        indexByKey.reserveCapacity(plan.services.count)
        for (index, planned) in plan.services.enumerated() {
            let start = endpoints.count
            for address in planned.endpoints { endpoints.append(Endpoint(address: address, service: index)) }
            services.append(
                Service(name: planned.key, algorithm: planned.algorithm, endpoints: start..<endpoints.count))
            indexByKey[planned.key] = index
        }
    }

    /// The services at `changed` (sorted positions, the same in the plan and here) from the
    /// plan. Same endpoint counts: overwritten in place; else the unchanged runs are copied
    /// whole and their ranges moved.
    private mutating func refresh(_ plan: KubeRoutingPlan, changed: [Int]) {
        if changed.allSatisfy({ services[$0].endpoints.count == plan.services[$0].endpoints.count }) {
            for index in changed {
                let planned = plan.services[index]
                let range = services[index].endpoints
                for (offset, address) in planned.endpoints.enumerated() {
                    endpoints[range.lowerBound + offset] = Endpoint(address: address, service: index)
                }
                services[index] = Service(name: planned.key, algorithm: planned.algorithm, endpoints: range)
            }
            return
        }
        var next: [Endpoint] = []
        next.reserveCapacity(endpoints.count + changed.reduce(0) { $0 + plan.services[$1].endpoints.count })
        var runStart = 0
        for index in changed + [services.count] {
            // The unchanged services runStart..<index: one copy, then their ranges shifted.
            if runStart < index {
                let from = services[runStart].endpoints.lowerBound
                let to = services[index - 1].endpoints.upperBound
                let shift = next.count - from
                next.append(contentsOf: endpoints[from..<to])
                if shift != 0 {
                    for moved in runStart..<index {
                        let range = services[moved].endpoints
                        services[moved].endpoints = (range.lowerBound + shift)..<(range.upperBound + shift)
                    }
                }
            }
            guard index < services.count else { break }
            let planned = plan.services[index]
            let start = next.count
            for address in planned.endpoints { next.append(Endpoint(address: address, service: index)) }
            services[index] = Service(name: planned.key, algorithm: planned.algorithm, endpoints: start..<next.count)
            runStart = index + 1
        }
        endpoints = next
    }
}
