import Dispatch
import SluiceRouting

/// One Service's inputs to the plan: the Service (nil when it is gone) and the EndpointSlices
/// joined to it (same namespace, `kubernetes.io/service-name` label), in key order.
public struct KubeServiceInputs: Sendable, Equatable {
    public var service: KubeService?
    public var slices: [KubeEndpointSlice]

    public init(service: KubeService?, slices: [KubeEndpointSlice]) {
        self.service = service
        self.slices = slices
    }
}

/// What changed in the cluster state since the last translation.
public enum KubeCacheChange: Sendable {
    /// Anything may have: the first sync, or a list replaced a collection.
    case all(KubeCache)
    /// Only these Services' inputs, each given whole as it now is.
    case services([KubeObjectKey: KubeServiceInputs])
}

/// What a translation changed in the plan, as `KubeSnapshotBuilder` needs it. A superset is
/// always safe (`formUnion` joins the changes of translations never built).
public struct KubePlanChange: Sendable, Equatable {
    /// Anything may have changed.
    public var all: Bool
    /// Planned services (by key) whose settings or endpoints changed, or that came or went.
    public var services: Set<String>
    /// A planned service came or went (it is in `services`): the ones after it moved.
    public var servicesAddedOrRemoved: Bool
    /// Routes, TCP listeners or the TLS listener changed.
    public var routing: Bool
    /// The http listener's routes changed (then `routing` is set) only in the run between
    /// the first `prefix` and the last `suffix` of them, which are those before; nil when
    /// they did not change.
    public var routeEdit: RouteEdit?

    /// `KubePlanChange.routeEdit`: the routes before and after the change agree in their
    /// first `prefix` and their last `suffix` (`prefix + suffix` is at most either count).
    public struct RouteEdit: Sendable, Equatable {
        public var prefix: Int
        public var suffix: Int

        public init(prefix: Int, suffix: Int) {
            self.prefix = prefix
            self.suffix = suffix
        }
    }

    public init(
        all: Bool = false, services: Set<String> = [], servicesAddedOrRemoved: Bool = false, routing: Bool = false,
        routeEdit: RouteEdit? = nil
    ) {
        self.all = all
        self.services = services
        self.servicesAddedOrRemoved = servicesAddedOrRemoved
        self.routing = routing || routeEdit != nil
        self.routeEdit = routeEdit
    }

    public var isEmpty: Bool { !all && services.isEmpty && !servicesAddedOrRemoved && !routing }

    /// `other` (a later change) joined to this one.
    public mutating func formUnion(_ other: KubePlanChange) {
        all = all || other.all
        services.formUnion(other.services)
        servicesAddedOrRemoved = servicesAddedOrRemoved || other.servicesAddedOrRemoved
        routing = routing || other.routing
        // What both kept at either end was kept through both.
        if let later = other.routeEdit {
            routeEdit =
                routeEdit.map {
                    RouteEdit(prefix: min($0.prefix, later.prefix), suffix: min($0.suffix, later.suffix))
                } ?? later
        }
    }
}

/// `KubeTranslator` kept up to date change by change: each Service's part of the plan (its
/// planned services with their endpoints, the routes it asks for, its warnings) is kept, and
/// a change re-translates only the Services it names. The plan, its `contentHash` and the
/// warnings equal what `KubeTranslator.translate` makes of the same cluster state (warnings
/// as a set: their order may differ).
///
/// | input change                          | work                                              |
/// | ------------------------------------- | ------------------------------------------------- |
/// | `.all` (first sync, re-list)          | everything: O(cluster)                            |
/// | slices of one Service                 | that Service's endpoints: O(its endpoints + log S)|
/// | a Service (annotations, ports)        | the same, and the routes again when its claims    |
/// |                                       | changed: O(routes), no endpoint work              |
/// | `--tcp-services` Services             | their listeners again (few)                       |
///
/// The hash is a wrapping sum of per-service and per-route digests (`KubeRoutingPlan`), so it
/// moves by what changed. Not thread-safe: one owner (the applier).
public struct KubeIncrementalTranslator: Sendable {
    public let options: KubeTranslatorOptions
    /// The plan for the cluster state as last given.
    public private(set) var plan: KubeRoutingPlan
    /// `plan.contentHash`, kept up to date by parts.
    public var contentHash: UInt64 { plan.headerDigest &+ servicesDigest &+ routesDigest }

    typealias Claim = PlanBuilder.RouteClaim

    /// One Service's part of the plan.
    struct Entry: Sendable {
        /// Sorted by key.
        var planned: [KubeRoutingPlan.PlannedService]
        var claims: [Claim]
        var warnings: [KubeWarning]
    }

    enum Owner: Equatable, Sendable {
        case http(KubeObjectKey)
        case tcp
    }

    private var entries: [KubeObjectKey: Entry] = [:]
    /// Who holds each route, and the routes in plan order.
    private var book = KubeRouteBook()
    /// Route conflicts, by the Service that lost.
    private var conflicts: [KubeObjectKey: [KubeWarning]] = [:]
    /// Who made each planned service of `plan.services`.
    private var owners: [String: Owner] = [:]
    /// The Services `--tcp-services` names, and their inputs as last given.
    private let tcpKeys: Set<KubeObjectKey>
    private var tcpInputs: [KubeObjectKey: KubeServiceInputs] = [:]
    private var tcpWarnings: [KubeWarning] = []
    /// The planned services of `plan.services` only `--tcp-services` makes.
    private var tcpOwned: Set<String> = []
    private var optionWarnings: [KubeWarning] = []
    /// Services with entry warnings or conflicts.
    private var warned: Set<KubeObjectKey> = []
    private var servicesDigest: UInt64 = 0
    private var routesDigest: UInt64 = 0

    public init(options: KubeTranslatorOptions) {
        self.options = options
        plan = KubeRoutingPlan(
            httpAddress: options.httpAddress, defaultStatus: 404, services: [], routes: [], tcpListeners: [])
        tcpKeys = Set(
            options.tcpServices.map {
                KubeObjectKey(namespace: $0.namespace ?? options.namespace ?? "default", name: $0.name)
            })
    }

    /// The warnings of the plan: the options', then per Service in key order, then the TCP
    /// listeners'; each once.
    public var warnings: [KubeWarning] {
        var all = optionWarnings
        for key in warned.sorted() {
            all += entries[key]?.warnings ?? []
            all += conflicts[key] ?? []
        }
        all += tcpWarnings
        var seen: Set<KubeWarning> = []
        return all.filter { seen.insert($0).inserted }
    }

    /// Applies `change`; returns the translation and what moved in the plan.
    public mutating func apply(_ change: KubeCacheChange) -> (KubeTranslator.Translation, KubePlanChange) {
        let moved: KubePlanChange
        switch change {
        case .all(let cache): moved = rebuild(cache)
        case .services(let inputs): moved = update(inputs)
        }
        return (KubeTranslator.Translation(plan: plan, warnings: warnings), moved)
    }

    // MARK: Whole

    private mutating func rebuild(_ cache: KubeCache) -> KubePlanChange {
        var header = PlanBuilder(options: options)
        header.build(KubeCache())
        optionWarnings = header.warnings.filter { $0.kind == "option" && $0.object != "--tcp-services" }
        plan = header.plan
        plan.services = []
        plan.routes = []
        plan.terminatedRoutes = []
        plan.tcpListeners = []
        entries = [:]
        tcpOwned = []
        owners = [:]
        warned = []
        var slices: [KubeObjectKey: [KubeEndpointSlice]] = [:]
        for slice in cache.endpointSlices.items.values where inScope(slice.metadata.namespace) {
            guard let name = slice.serviceName else { continue }
            slices[KubeObjectKey(namespace: slice.key.namespace, name: name), default: []].append(slice)
        }
        var planned: [KubeRoutingPlan.PlannedService] = []
        let inputs = cache.services.items.values.map { service in
            KubeServiceInputs(service: service, slices: (slices[service.key] ?? []).sorted { $0.key < $1.key })
        }
        for (index, made) in makeEntries(inputs).enumerated() {
            guard let entry = made, let key = inputs[index].service?.key else { continue }
            entries[key] = entry
            if !entry.warnings.isEmpty { warned.insert(key) }
            for service in entry.planned {
                planned.append(service)
                owners[service.key] = .http(key)
            }
        }
        planned.sort { $0.key < $1.key }
        plan.services = planned
        servicesDigest = planned.reduce(0) { $0 &+ KubeRoutingPlan.digest($1) }
        book = KubeRouteBook()
        conflicts = [:]
        let claimants = entries.compactMap { $0.value.claims.isEmpty ? nil : $0.key }.sorted()
        for key in claimants { _ = book.replace([], with: entries[key]!.claims, of: key) }
        for key in claimants { noteConflicts(of: key) }
        _ = book.takeEdit()
        takeRoutes()
        tcpInputs = [:]
        for key in tcpKeys {
            tcpInputs[key] = KubeServiceInputs(
                service: cache.services.items[key], slices: (slices[key] ?? []).sorted { $0.key < $1.key })
        }
        _ = updateTCP()
        return KubePlanChange(all: true)
    }

    // MARK: By Service

    private mutating func update(_ inputs: [KubeObjectKey: KubeServiceInputs]) -> KubePlanChange {
        var moved = KubePlanChange()
        if let slot = options.tlsContext, let tls = plan.tls, slot.current.version != tls.contextVersion {
            let current = slot.current
            plan.tls = KubeRoutingPlan.PlannedTLSListener(
                address: tls.address, contextVersion: current.version, context: current.handle)
            moved.routing = true
        }
        var before: [String: KubeRoutingPlan.PlannedService] = [:]
        var after: [String: KubeRoutingPlan.PlannedService] = [:]
        var claimsMoved = false
        // No copy of the book's route arrays left here: they move in place (`takeRoutes`
        // shares them again).
        plan.routes = []
        plan.terminatedRoutes = []
        for (key, given) in inputs {
            if tcpKeys.contains(key) { tcpInputs[key] = given }
            let old = entries[key]
            let new = entry(given)
            for service in old?.planned ?? [] where owners[service.key] == .http(key) {
                if let removed = remove(service.key) { before[service.key] = before[service.key] ?? removed }
            }
            for service in new?.planned ?? [] {
                if owners[service.key] == .tcp, let removed = remove(service.key) {
                    before[service.key] = before[service.key] ?? removed
                }
                insert(service, owner: .http(key))
                after[service.key] = service
            }
            entries[key] = new
            if (old?.claims ?? []) != (new?.claims ?? []) {
                claimsMoved = true
                for touched in book.replace(old?.claims ?? [], with: new?.claims ?? [], of: key) {
                    noteConflicts(of: touched)
                }
            }
            if new?.warnings.isEmpty == false || conflicts[key] != nil {
                warned.insert(key)
            } else {
                warned.remove(key)
            }
        }
        if claimsMoved {
            moved.routeEdit = book.takeEdit()
            moved.routing = true
        }
        takeRoutes()
        let tcp = updateTCP()
        moved.routing = moved.routing || tcp.listeners
        for (key, service) in tcp.removed where before[key] == nil { before[key] = service }
        for (key, service) in tcp.added { after[key] = service }
        for (key, old) in before {
            // Removed and made again: moved only when it differs.
            guard let new = after[key] else {
                moved.servicesAddedOrRemoved = true
                moved.services.insert(key)
                continue
            }
            if new != old { moved.services.insert(key) }
        }
        for key in after.keys where before[key] == nil {
            moved.servicesAddedOrRemoved = true
            moved.services.insert(key)
        }
        return moved
    }

    // MARK: Parts

    /// The result slots of `makeEntries`, shared by its workers.
    private struct Slots: @unchecked Sendable {
        // SAFETY (@unchecked Sendable): the workers write disjoint ranges, and the buffer lives
        // until `concurrentPerform` has returned.
        let base: UnsafeMutablePointer<Entry?>
    }

    /// `entry` of each of `inputs`, in order; large clusters in two halves on two threads
    /// (a whole translation: the first sync, a re-list).
    private func makeEntries(_ inputs: [KubeServiceInputs]) -> [Entry?] {
        let workers = inputs.count >= 2048 ? 2 : 1
        guard workers > 1 else { return inputs.map { entry($0) } }
        var made = [Entry?](repeating: nil, count: inputs.count)
        let translator = self
        made.withUnsafeMutableBufferPointer { buffer in
            guard let start = buffer.baseAddress else { return }
            let slots = Slots(base: start)
            let share = (inputs.count + workers - 1) / workers
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                // SAFETY: each worker writes only its own range of `made`, which outlives the
                // call; `translator` and `inputs` are read-only copies.
                for index in (worker * share)..<min(inputs.count, (worker + 1) * share) {
                    (slots.base + index).pointee = translator.entry(inputs[index])
                }
            }
        }
        return made
    }

    /// The part of the plan one Service makes: nil when it is gone, out of scope or has no
    /// `lb.host`.
    private func entry(_ inputs: KubeServiceInputs) -> Entry? {
        guard let service = inputs.service, inScope(service.metadata.namespace),
            service.metadata.annotations?[KubeAnnotation.host] != nil
        else { return nil }
        var builder = PlanBuilder(options: options)
        builder.plan.tls = plan.tls
        builder.slicesByService[service.key] = inputs.slices
        let claims = builder.routeClaims(service, take: false)
        let planned = builder.services.values.sorted { $0.key < $1.key }
        return Entry(planned: planned, claims: claims, warnings: builder.warnings)
    }

    /// The routes from the book.
    private mutating func takeRoutes() {
        plan.routes = book.routes
        plan.terminatedRoutes = book.terminatedRoutes
        routesDigest = book.digest
    }

    /// Records the route conflicts of Service `key` as its claims now stand.
    private mutating func noteConflicts(of key: KubeObjectKey) {
        let found = book.conflicts(entries[key]?.claims ?? [], of: key)
        conflicts[key] = found.isEmpty ? nil : found
        if !found.isEmpty || entries[key]?.warnings.isEmpty == false { warned.insert(key) } else { warned.remove(key) }
    }

    /// The `--tcp-services` listeners and the planned services only they make (those an
    /// `lb.host` entry makes too are the entry's). Returns what changed.
    private mutating func updateTCP() -> (
        listeners: Bool, removed: [String: KubeRoutingPlan.PlannedService],
        added: [String: KubeRoutingPlan.PlannedService]
    ) {
        guard !options.tcpServices.isEmpty else { return (false, [:], [:]) }
        var builder = PlanBuilder(options: options)
        builder.plan.tls = plan.tls
        var all: [KubeObjectKey: KubeService] = [:]
        for (key, inputs) in tcpInputs {
            builder.slicesByService[key] = inputs.slices
            if let service = inputs.service { all[key] = service }
        }
        builder.exposeTCP(all)
        let listenersMoved = builder.plan.tcpListeners != plan.tcpListeners
        plan.tcpListeners = builder.plan.tcpListeners
        tcpWarnings = builder.warnings
        var removed: [String: KubeRoutingPlan.PlannedService] = [:]
        var added: [String: KubeRoutingPlan.PlannedService] = [:]
        let wanted = builder.services.filter { key, _ in
            if case .http = owners[key] { return false }
            return true
        }
        for key in tcpOwned where wanted[key] == nil {
            if let service = remove(key) { removed[key] = service }
        }
        for (key, service) in wanted {
            let index = Self.position(of: key, in: plan.services)
            if owners[key] == .tcp, index < plan.services.count, plan.services[index] == service { continue }
            if owners[key] == .tcp, let old = remove(key) { removed[key] = old }
            insert(service, owner: .tcp)
            added[key] = service
        }
        return (listenersMoved, removed, added)
    }

    /// Inserts (or replaces) a planned service in key order.
    private mutating func insert(_ service: KubeRoutingPlan.PlannedService, owner: Owner) {
        let index = Self.position(of: service.key, in: plan.services)
        if index < plan.services.count && plan.services[index].key == service.key {
            servicesDigest &-= KubeRoutingPlan.digest(plan.services[index])
            plan.services[index] = service
        } else {
            plan.services.insert(service, at: index)
        }
        servicesDigest &+= KubeRoutingPlan.digest(service)
        owners[service.key] = owner
        if owner == .tcp { tcpOwned.insert(service.key) } else { tcpOwned.remove(service.key) }
    }

    /// Removes the planned service `key`; returns it, or nil when there is none.
    private mutating func remove(_ key: String) -> KubeRoutingPlan.PlannedService? {
        owners[key] = nil
        tcpOwned.remove(key)
        let index = Self.position(of: key, in: plan.services)
        guard index < plan.services.count, plan.services[index].key == key else { return nil }
        let service = plan.services.remove(at: index)
        servicesDigest &-= KubeRoutingPlan.digest(service)
        return service
    }

    private func inScope(_ namespace: String?) -> Bool {
        guard let filter = options.namespace else { return true }
        return namespace == filter
    }

    /// The first index whose key is not below `key` (binary search).
    static func position(of key: String, in services: [KubeRoutingPlan.PlannedService]) -> Int {
        var low = 0
        var high = services.count
        while low < high {
            let mid = (low + high) / 2
            if services[mid].key < key { low = mid + 1 } else { high = mid }
        }
        return low
    }

    static func position(of key: KubeObjectKey, in keys: [KubeObjectKey]) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let mid = (low + high) / 2
            if keys[mid] < key { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
