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
///
/// The services and endpoints arrays are double-buffered: the arrays of the snapshot before
/// the last are kept, and once that snapshot is gone (nothing else holds them) the next
/// snapshot's are made by editing them in place with the changes of the last two builds —
/// elements moved, not copied, so no reference count is touched per unchanged service and
/// no fresh pages are faulted. While something still holds them (a connection routed with
/// that snapshot), editing them copies first, as building from the last snapshot's would.
public struct KubeSnapshotBuilder: Sendable {
    private var services: [Service] = []
    private var endpoints: [Endpoint] = []
    /// The arrays of the snapshot before the last (the spare), and the services whose plan
    /// parts changed between it and the last (nil: the spare is not usable).
    private var spareServices: [Service] = []
    private var spareEndpoints: [Endpoint] = []
    private var spareBehind: Set<String>?
    private var tables = KubeRoutingPlan.Tables(listeners: [], routeTables: [], tlsContexts: [])
    /// What the tables were made from.
    private var header: Header?
    /// How many routes the http listener's table was made from.
    private var routeCount = 0
    private var terminatedRoutes: [KubeRoutingPlan.PlannedRoute] = []
    private var built = false

    /// At most this many services are edited in place in the spare (each insertion or removal
    /// moves the arrays' tails); more are merged into fresh arrays in one pass.
    static let inPlaceLimit = 8

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
            if change.servicesAddedOrRemoved { renumbered = indexMap(plan, touched) }
            advance(plan, touched)
        }
        // A change that did not name every service that came or went: lay out again.
        if services.count != plan.services.count { layout = true }
        if layout {
            lay(plan)
        } else if change.routing || renumbered != nil || header != Header(plan) {
            edit(plan, routeEdit: change.routeEdit, renumbered: renumbered)
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
        routeCount = plan.routes.count
        terminatedRoutes = plan.terminatedRoutes
        spareServices = []
        spareEndpoints = []
        spareBehind = nil
    }

    /// The services and endpoints for `plan`, from the last ones and the services `touched`
    /// (sorted keys) since: the spare edited in place when it is usable and few services
    /// changed, else the last arrays overwritten or merged. The last arrays become the spare.
    private mutating func advance(_ plan: KubeRoutingPlan, _ touched: [String]) {
        if let behind = spareBehind, behind.count + touched.count <= Self.inPlaceLimit {
            var nextServices: [Service] = []
            var nextEndpoints: [Endpoint] = []
            // Taken out, so that this is the arrays' only holder once their snapshot is gone.
            swap(&nextServices, &spareServices)
            swap(&nextEndpoints, &spareEndpoints)
            Self.editInPlace(&nextServices, &nextEndpoints, plan, behind.union(touched).sorted())
            spareServices = services
            spareEndpoints = endpoints
            services = nextServices
            endpoints = nextEndpoints
        } else {
            let lastServices = services
            let lastEndpoints = endpoints
            if !overwrite(plan, touched) { merge(plan, touched) }
            spareServices = lastServices
            spareEndpoints = lastEndpoints
        }
        spareBehind = Set(touched)
    }

    /// `services` and `endpoints` (sorted by name, ranges in order) made those of `plan` for
    /// the services `keys` (sorted; the others are as in the plan already), in place: each
    /// named service replaced, inserted or removed with its endpoints, then the ranges and the
    /// endpoints' service indices after the first of them set again in one pass.
    private static func editInPlace(
        _ services: inout [Service], _ endpoints: inout [Endpoint], _ plan: KubeRoutingPlan, _ keys: [String]
    ) {
        // Endpoints moved so far: the ranges of the services not reached yet are off by it.
        var delta = 0
        var first = services.count
        var indicesMoved = false
        var rangesMoved = false
        var from = 0
        for key in keys {
            let at = position(of: key, in: services, from: from)
            from = at
            let existed = at < services.count && services[at].name == key
            let start = at < services.count ? services[at].endpoints.lowerBound + delta : endpoints.count
            let oldCount = existed ? services[at].endpoints.count : 0
            let planIndex = KubeIncrementalTranslator.position(of: key, in: plan.services)
            if planIndex < plan.services.count, plan.services[planIndex].key == key {
                let planned = plan.services[planIndex]
                endpoints.replaceSubrange(
                    start..<(start + oldCount),
                    with: planned.endpoints.lazy.map { Endpoint(address: $0, service: at) })
                var service = Service(
                    name: planned.key, algorithm: planned.algorithm,
                    endpoints: start..<(start + planned.endpoints.count))
                service.upstreamProtocol = planned.upstreamProtocol
                if existed {
                    if services[at] != service { services[at] = service }
                } else {
                    services.insert(service, at: at)
                    indicesMoved = true
                }
                delta += planned.endpoints.count - oldCount
                if planned.endpoints.count != oldCount { rangesMoved = true }
                from = at + 1
            } else if existed {
                endpoints.removeSubrange(start..<(start + oldCount))
                services.remove(at: at)
                indicesMoved = true
                delta -= oldCount
                if oldCount != 0 { rangesMoved = true }
            } else {
                continue
            }
            first = min(first, at)
        }
        guard first < services.count, rangesMoved || indicesMoved else { return }
        var next = first > 0 ? services[first - 1].endpoints.upperBound : 0
        for index in first..<services.count {
            let count = services[index].endpoints.count
            if services[index].endpoints.lowerBound != next {
                services[index].endpoints = next..<(next + count)
            }
            if indicesMoved {
                for endpoint in next..<(next + count) where endpoints[endpoint].service != index {
                    endpoints[endpoint].service = index
                }
            }
            next += count
        }
    }

    /// Old service index → new (-1: gone) for the services `touched` (sorted keys) coming,
    /// going or staying; nil when no index moves.
    private func indexMap(_ plan: KubeRoutingPlan, _ touched: [String]) -> [Int32]? {
        var map = [Int32](repeating: -1, count: services.count)
        var shift = 0
        var old = 0
        var moved = false
        for key in touched {
            let at = Self.position(of: key, in: services, from: old)
            while old < at {
                map[old] = Int32(old + shift)
                old += 1
            }
            let existed = at < services.count && services[at].name == key
            let planIndex = KubeIncrementalTranslator.position(of: key, in: plan.services)
            let planned = planIndex < plan.services.count && plan.services[planIndex].key == key
            if existed {
                if planned {
                    map[at] = Int32(at + shift)
                } else {
                    shift -= 1
                    moved = true
                }
                old = at + 1
            } else if planned {
                shift += 1
                moved = true
            }
        }
        while old < services.count {
            map[old] = Int32(old + shift)
            old += 1
        }
        return moved ? map : nil
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
    private mutating func merge(_ plan: KubeRoutingPlan, _ touched: [String]) {
        var nextServices: [Service] = []
        nextServices.reserveCapacity(plan.services.count)
        var nextEndpoints: [Endpoint] = []
        nextEndpoints.reserveCapacity(endpoints.count + touched.count * 16)
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
            }
        }
        copyRun(upTo: services.count)
        services = nextServices
        endpoints = nextEndpoints
    }

    /// The tables for `plan` from the last ones: listeners the same, routes edited where they
    /// changed, service indices renumbered by `renumbered` (old → new) when given.
    private mutating func edit(_ plan: KubeRoutingPlan, routeEdit: KubePlanChange.RouteEdit?, renumbered: [Int32]?) {
        guard header == Header(plan) else {
            tables = plan.tables(index: serviceIndex)
            header = Header(plan)
            routeCount = plan.routes.count
            terminatedRoutes = plan.terminatedRoutes
            return
        }
        var next = 0
        if plan.httpAddress != nil {
            tables.routeTables[0] = Self.edit(
                tables.routeTables[0], count: routeCount, to: plan.routes, edit: routeEdit, renumbered: renumbered,
                index: serviceIndex)
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
        routeCount = plan.routes.count
        terminatedRoutes = plan.terminatedRoutes
    }

    /// `table` (made from `count` routes) for the routes `new`, which agree with those in the
    /// parts `edit` names (nil: all of them): the run between replaced, the rest renumbered.
    private static func edit(
        _ table: HTTPRouteTable, count: Int, to new: [KubeRoutingPlan.PlannedRoute],
        edit: KubePlanChange.RouteEdit?, renumbered: [Int32]?, index: (String) -> Int
    ) -> HTTPRouteTable {
        if edit == nil && count == new.count {
            return renumbered.map { table.replacing(0..<0, with: [], services: $0) } ?? table
        }
        // No record of the run (never so from the translator): all of them.
        let prefix = min(edit?.prefix ?? 0, count, new.count)
        let suffix = min(edit?.suffix ?? 0, count - prefix, new.count - prefix)
        let inserted = new[prefix..<(new.count - suffix)].map {
            HTTPRoute(host: $0.host, pathPrefix: routePath($0.pathPrefix), service: index($0.service))
        }
        return table.replacing(prefix..<(count - suffix), with: inserted, services: renumbered)
    }

    /// `/`, the path of most routes, as one shared array.
    private static let rootPath: [UInt8] = [UInt8(ascii: "/")]

    private static func routePath(_ path: String) -> [UInt8] {
        path == "/" ? rootPath : Array(path.utf8)
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
