import SluiceRouting

/// Makes the loops' snapshots from successive plans, redoing only what a `KubePlanChange`
/// names: the result equals `KubeRoutingPlan.snapshot` of the same plan (services in plan
/// order, so the indices and the `/routes` text are those a fresh process has).
///
/// | change                                 | work                                            |
/// | -------------------------------------- | ----------------------------------------------- |
/// | endpoints of services, same counts     | those endpoints overwritten                     |
/// | endpoints of services, counts changed, | the others copied run by run (a memory copy),   |
/// | services added or removed              | their indices and ranges moved by a linear pass |
/// | routes, or service indices moved       | the route tables edited: the hosts whose routes |
/// |                                        | changed made again, the rest renumbered         |
/// |                                        | (`HTTPRouteTable.replacing`)                    |
/// | routes of the TLS listener             | its two tables built again                      |
/// | `all`, listeners                       | everything laid out and built again             |
///
/// No hashing or allocation per unchanged service or route: a Service that comes or goes in
/// a table of 50,000 costs a few copies of flat arrays. Unchanged route tables (classes,
/// immutable) are shared with the previous snapshot.
public struct KubeSnapshotBuilder: Sendable {
    private var services: [Service] = []
    private var endpoints: [Endpoint] = []
    private var tables = KubeRoutingPlan.Tables(listeners: [], routeTables: [], tlsContexts: [])
    /// What the tables were made from.
    private var header: Header?
    private var routes: [KubeRoutingPlan.PlannedRoute] = []
    private var terminatedRoutes: [KubeRoutingPlan.PlannedRoute] = []
    private var built = false

    /// The plan's listeners: when they change, the tables are built again.
    struct Header: Equatable, Sendable {
        var httpAddress: SocketAddress?
        var defaultStatus: UInt16
        var tls: KubeRoutingPlan.PlannedTLSListener?
        var tcpListeners: [KubeRoutingPlan.PlannedTCPListener]
        var accessLog: AccessLogPolicy
        var http2: Bool

        init(_ plan: KubeRoutingPlan) {
            httpAddress = plan.httpAddress
            defaultStatus = plan.defaultStatus
            tls = plan.tls
            tcpListeners = plan.tcpListeners
            accessLog = plan.accessLog
            http2 = plan.http2
        }
    }

    public init() {}

    /// The snapshot of `plan`, given what changed since the plan of the last `build`
    /// (anything, on the first call).
    public mutating func build(
        _ plan: KubeRoutingPlan, change: KubePlanChange, generation: UInt64, timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(), tuning: Tuning = Tuning()
    ) -> RoutingSnapshot {
        var layout = !built || change.all
        var renumbered: [Int32]? = nil
        if !layout && !change.services.isEmpty {
            let touched = change.services.sorted()
            if change.servicesAddedOrRemoved || !overwrite(plan, touched) {
                renumbered = merge(plan, touched)
            }
        }
        // A change that did not name every service that came or went: lay out again.
        if services.count != plan.services.count { layout = true }
        if layout {
            lay(plan)
        } else if change.routing || renumbered != nil || header != Header(plan) {
            edit(plan, renumbered: renumbered)
        }
        built = true
        return RoutingSnapshot(
            generation: generation, listeners: tables.listeners, services: services, endpoints: endpoints,
            routeTables: tables.routeTables, tlsContexts: tables.tlsContexts, timeouts: timeouts, limits: limits,
            tuning: tuning)
    }

    /// Every service, endpoint and table from the plan. O(services + endpoints + routes).
    private mutating func lay(_ plan: KubeRoutingPlan) {
        services = []
        services.reserveCapacity(plan.services.count)
        endpoints = []
        endpoints.reserveCapacity(plan.services.reduce(0) { $0 + $1.endpoints.count })
        for (index, planned) in plan.services.enumerated() {
            let start = endpoints.count
            for address in planned.endpoints { endpoints.append(Endpoint(address: address, service: index)) }
            services.append(
                Service(name: planned.key, algorithm: planned.algorithm, endpoints: start..<endpoints.count))
            services[services.count - 1].upstreamProtocol = planned.upstreamProtocol
        }
        tables = plan.tables(index: serviceIndex)
        header = Header(plan)
        routes = plan.routes
        terminatedRoutes = plan.terminatedRoutes
    }

    /// The services `touched` (sorted keys, each present here and in the plan at the same
    /// position, with as many endpoints) overwritten in place; false, with nothing changed,
    /// when they are not all like that.
    private mutating func overwrite(_ plan: KubeRoutingPlan, _ touched: [String]) -> Bool {
        var positions: [Int] = []
        positions.reserveCapacity(touched.count)
        for key in touched {
            let index = Self.position(of: key, in: services, from: 0)
            guard index < services.count, services[index].name == key, index < plan.services.count,
                plan.services[index].key == key,
                plan.services[index].endpoints.count == services[index].endpoints.count
            else { return false }
            positions.append(index)
        }
        for index in positions {
            let planned = plan.services[index]
            let range = services[index].endpoints
            for (offset, address) in planned.endpoints.enumerated() {
                endpoints[range.lowerBound + offset] = Endpoint(address: address, service: index)
            }
            // The same name and range: written only when the algorithm changed, so that an
            // endpoint change does not copy the services.
            if services[index].algorithm != planned.algorithm
                || services[index].upstreamProtocol != planned.upstreamProtocol
            {
                services[index] = Service(name: planned.key, algorithm: planned.algorithm, endpoints: range)
                services[index].upstreamProtocol = planned.upstreamProtocol
            }
        }
        return true
    }

    /// The services `touched` (sorted keys) made again from the plan, added or removed; the
    /// runs of services between them copied whole, their indices and endpoint ranges moved.
    /// Returns old service index → new (-1: gone) when some index moved, else nil.
    private mutating func merge(_ plan: KubeRoutingPlan, _ touched: [String]) -> [Int32]? {
        var nextServices: [Service] = []
        nextServices.reserveCapacity(plan.services.count)
        var nextEndpoints: [Endpoint] = []
        nextEndpoints.reserveCapacity(endpoints.count + touched.count * 16)
        var map = [Int32](repeating: -1, count: services.count)
        var moved = false
        var old = 0
        /// Copies the unchanged services old..<end and their endpoints.
        func copyRun(upTo end: Int) {
            guard old < end else { return }
            let shift = nextServices.count - old
            let from = services[old].endpoints.lowerBound
            let to = services[end - 1].endpoints.upperBound
            let endpointShift = nextEndpoints.count - from
            let base = nextEndpoints.count
            nextEndpoints.append(contentsOf: endpoints[from..<to])
            if shift != 0 {
                moved = true
                for index in base..<nextEndpoints.count { nextEndpoints[index].service += shift }
            }
            // One copy of the run, then its ranges moved in place (no per-service copies).
            let first = nextServices.count
            nextServices.append(contentsOf: services[old..<end])
            if endpointShift != 0 {
                for index in first..<nextServices.count {
                    let range = nextServices[index].endpoints
                    nextServices[index].endpoints =
                        (range.lowerBound + endpointShift)..<(range.upperBound + endpointShift)
                }
            }
            for index in old..<end { map[index] = Int32(index + shift) }
            old = end
        }
        for key in touched {
            let at = Self.position(of: key, in: services, from: old)
            copyRun(upTo: at)
            let existed = at < services.count && services[at].name == key
            if existed { old = at + 1 }
            let planIndex = KubeIncrementalTranslator.position(of: key, in: plan.services)
            if planIndex < plan.services.count, plan.services[planIndex].key == key {
                let planned = plan.services[planIndex]
                let index = nextServices.count
                let start = nextEndpoints.count
                for address in planned.endpoints { nextEndpoints.append(Endpoint(address: address, service: index)) }
                nextServices.append(
                    Service(name: planned.key, algorithm: planned.algorithm, endpoints: start..<nextEndpoints.count))
                nextServices[nextServices.count - 1].upstreamProtocol = planned.upstreamProtocol
                if existed {
                    map[at] = Int32(index)
                    if at != index { moved = true }
                } else {
                    moved = true
                }
            } else if existed {
                moved = true
            }
        }
        copyRun(upTo: services.count)
        services = nextServices
        endpoints = nextEndpoints
        return moved ? map : nil
    }

    /// The tables for `plan` from the last ones: listeners the same, routes edited where they
    /// changed, service indices renumbered by `renumbered` (old → new) when given.
    private mutating func edit(_ plan: KubeRoutingPlan, renumbered: [Int32]?) {
        guard header == Header(plan) else {
            tables = plan.tables(index: serviceIndex)
            header = Header(plan)
            routes = plan.routes
            terminatedRoutes = plan.terminatedRoutes
            return
        }
        var next = 0
        if plan.httpAddress != nil {
            tables.routeTables[0] = Self.edit(
                tables.routeTables[0], from: routes, to: plan.routes, renumbered: renumbered, index: serviceIndex)
            next = 1
        }
        if plan.tls != nil {
            if terminatedRoutes != plan.terminatedRoutes {
                let made = plan.tlsTables(index: serviceIndex)
                tables.routeTables[next] = made.serverNames
                tables.routeTables[next + 1] = made.requests
            } else if let renumbered {
                tables.routeTables[next + 1] = tables.routeTables[next + 1].replacing(
                    0..<0, with: [], services: renumbered)
            }
            next += 1
        }
        let first = tables.listeners.count - plan.tcpListeners.count
        for (offset, listener) in plan.tcpListeners.enumerated() {
            tables.listeners[first + offset].service = serviceIndex(listener.service)
        }
        routes = plan.routes
        terminatedRoutes = plan.terminatedRoutes
    }

    /// `table` (made from `old`) for the routes `new`: the run between their common start
    /// and end replaced, the rest renumbered.
    private static func edit(
        _ table: HTTPRouteTable, from old: [KubeRoutingPlan.PlannedRoute], to new: [KubeRoutingPlan.PlannedRoute],
        renumbered: [Int32]?, index: (String) -> Int
    ) -> HTTPRouteTable {
        let common = min(old.count, new.count)
        var prefix = 0
        while prefix < common && old[prefix] == new[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < common - prefix && old[old.count - 1 - suffix] == new[new.count - 1 - suffix] { suffix += 1 }
        if prefix == old.count && prefix == new.count && renumbered == nil { return table }
        let inserted = new[prefix..<(new.count - suffix)].map {
            HTTPRoute(host: $0.host, pathPrefix: Array($0.pathPrefix.utf8), service: index($0.service))
        }
        return table.replacing(prefix..<(old.count - suffix), with: inserted, services: renumbered)
    }

    /// The index of the service `key` (binary search: services are in key order). The plan
    /// names only its own services.
    private func serviceIndex(_ key: String) -> Int {
        let index = Self.position(of: key, in: services, from: 0)
        precondition(index < services.count && services[index].name == key, "the plan names its services")
        return index
    }

    /// The first index from `from` whose name is not below `key`.
    private static func position(of key: String, in services: [Service], from: Int) -> Int {
        var low = from
        var high = services.count
        while low < high {
            let mid = (low + high) / 2
            if services[mid].name < key { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
