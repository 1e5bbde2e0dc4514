import SluiceRouting

/// Who holds each (listener, host, path) of the plan, kept up to date as Services change
/// their claims, with the plan's routes in their order: Services by key, each one's claims in
/// annotation order, as `PlanBuilder` takes them.
///
/// | per (listener, host, path) | the claims of every Service, by (Service key, position)  |
/// | -------------------------- | -------------------------------------------------------- |
/// | the first claim            | holds the route; the others lose (a warning when they    |
/// |                            | name another planned service)                            |
///
/// Replacing one Service's claims costs O(its claims × (log routes + claimants of the same
/// route)); the routes arrays move by the insertions and removals, in place when nothing
/// else holds them (the translator lets go of its copy first), and the run they touched is
/// recorded for the snapshot builder (`takeEdit`).
struct KubeRouteBook: Sendable {
    typealias Claim = PlanBuilder.RouteClaim

    struct Key: Hashable, Sendable {
        var terminated: Bool
        var host: HostPattern
        var path: String

        init(_ claim: Claim) {
            terminated = claim.terminated
            host = claim.route.host
            path = claim.route.pathPrefix
        }
    }

    /// One claim: the Service that made it, its position among that Service's claims, and the
    /// planned service it routes to.
    struct Ref: Equatable, Sendable {
        var owner: KubeObjectKey
        var order: Int
        var service: String

        func precedes(_ other: Ref) -> Bool { (owner, order) < (other.owner, other.order) }
    }

    private var claims: [Key: [Ref]] = [:]
    private(set) var routes: [KubeRoutingPlan.PlannedRoute] = []
    private var routeRefs: [Ref] = []
    private(set) var terminatedRoutes: [KubeRoutingPlan.PlannedRoute] = []
    private var terminatedRefs: [Ref] = []
    /// The routes' terms of `KubeRoutingPlan.contentHash`.
    private(set) var digest: UInt64 = 0
    /// What `routes` did since `takeEdit`: the routes before `editedFrom` and the last
    /// `keptTail` ones are those it had then (nil: no insertion or removal since).
    private var editedFrom: Int?
    private var keptTail = 0

    /// Replaces `owner`'s claims `old` with `new`. Returns the Services whose conflicts may
    /// have changed (every claimant of a route either list names, `owner` included).
    mutating func replace(_ old: [Claim], with new: [Claim], of owner: KubeObjectKey) -> Set<KubeObjectKey> {
        var touched: Set<KubeObjectKey> = [owner]
        for (order, claim) in old.enumerated() {
            let key = Key(claim)
            guard var refs = claims[key] else { continue }
            let ref = Ref(owner: owner, order: order, service: claim.route.service)
            guard let at = refs.firstIndex(of: ref) else { continue }
            refs.remove(at: at)
            if at == 0 {
                removeRoute(ref, key)
                if let next = refs.first { addRoute(next, key) }
            }
            for other in refs { touched.insert(other.owner) }
            claims[key] = refs.isEmpty ? nil : refs
        }
        for (order, claim) in new.enumerated() {
            let key = Key(claim)
            let ref = Ref(owner: owner, order: order, service: claim.route.service)
            var refs = claims[key] ?? []
            let at = refs.firstIndex { ref.precedes($0) } ?? refs.count
            refs.insert(ref, at: at)
            if at == 0 {
                if refs.count > 1 { removeRoute(refs[1], key) }
                addRoute(ref, key)
            }
            for other in refs { touched.insert(other.owner) }
            claims[key] = refs
        }
        return touched
    }

    /// The warnings of `owner`'s `claims` that lost to another planned service, in claim order.
    func conflicts(_ claims: [Claim], of owner: KubeObjectKey) -> [KubeWarning] {
        var warnings: [KubeWarning] = []
        for (order, claim) in claims.enumerated() {
            guard let holder = self.claims[Key(claim)]?.first else { continue }
            if holder.owner == owner && holder.order == order { continue }
            if holder.service != claim.route.service {
                warnings.append(PlanBuilder.conflict(claim, heldBy: holder.service, object: owner))
            }
        }
        return warnings
    }

    private mutating func addRoute(_ ref: Ref, _ key: Key) {
        let route = KubeRoutingPlan.PlannedRoute(host: key.host, pathPrefix: key.path, service: ref.service)
        if key.terminated {
            let at = Self.position(of: ref, in: terminatedRefs)
            terminatedRefs.insert(ref, at: at)
            terminatedRoutes.insert(route, at: at)
        } else {
            let at = Self.position(of: ref, in: routeRefs)
            noteEdit(at: at, kept: routes.count - at)
            routeRefs.insert(ref, at: at)
            routes.insert(route, at: at)
        }
        digest &+= KubeRoutingPlan.digest(route, terminated: key.terminated)
    }

    private mutating func removeRoute(_ ref: Ref, _ key: Key) {
        let route: KubeRoutingPlan.PlannedRoute
        if key.terminated {
            let at = Self.position(of: ref, in: terminatedRefs)
            precondition(at < terminatedRefs.count && terminatedRefs[at] == ref, "a held route is in the list")
            terminatedRefs.remove(at: at)
            route = terminatedRoutes.remove(at: at)
        } else {
            let at = Self.position(of: ref, in: routeRefs)
            precondition(at < routeRefs.count && routeRefs[at] == ref, "a held route is in the list")
            noteEdit(at: at, kept: routes.count - at - 1)
            routeRefs.remove(at: at)
            route = routes.remove(at: at)
        }
        digest &-= KubeRoutingPlan.digest(route, terminated: key.terminated)
    }

    private mutating func noteEdit(at position: Int, kept tail: Int) {
        if let from = editedFrom {
            editedFrom = min(from, position)
            keptTail = min(keptTail, tail)
        } else {
            editedFrom = position
            keptTail = tail
        }
    }

    /// The run of `routes` the insertions and removals since the last call replaced (see
    /// `KubePlanChange.RouteEdit`); nil when there were none. Starts a new record.
    mutating func takeEdit() -> KubePlanChange.RouteEdit? {
        defer { editedFrom = nil }
        return editedFrom.map { KubePlanChange.RouteEdit(prefix: $0, suffix: keptTail) }
    }

    /// The first position whose ref does not precede `ref` (binary search).
    private static func position(of ref: Ref, in refs: [Ref]) -> Int {
        var low = 0
        var high = refs.count
        while low < high {
            let mid = (low + high) / 2
            if refs[mid].precedes(ref) { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
