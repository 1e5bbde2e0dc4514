/// The routing table the loops read: frozen, flat, indexed by small integers.
///
/// Built by the control plane (configuration file or Kubernetes watcher), posted to every
/// loop, and swapped in between event batches. Nothing in it changes after construction, so
/// loops share one instance without locks. Connections keep the endpoint *index* they were
/// given together with the snapshot's `generation`; an index is only meaningful against the
/// snapshot of the same generation.
public final class RoutingSnapshot: Sendable {
    public let generation: UInt64
    public let listeners: [Listener]
    public let services: [Service]
    /// Every service's endpoints, flattened; `Service.endpoints` is a range into this array.
    public let endpoints: [Endpoint]
    /// The route tables of HTTP and TLS listeners; `Listener.routes` indexes this array.
    public let routeTables: [HTTPRouteTable]
    /// Server TLS contexts of terminating listeners; `Listener.tlsContext` indexes this array.
    public let tlsContexts: [TLSContextHandle]
    public let timeouts: Timeouts
    public let limits: Limits
    public let tuning: Tuning
    /// Cookie values of the endpoints of `cookie` services, computed once per snapshot.
    let cookies: EndpointCookies

    public init(
        generation: UInt64,
        listeners: [Listener],
        services: [Service],
        endpoints: [Endpoint],
        routeTables: [HTTPRouteTable] = [],
        tlsContexts: [TLSContextHandle] = [],
        timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(),
        tuning: Tuning = Tuning()
    ) {
        self.generation = generation
        self.listeners = listeners
        self.services = services
        self.endpoints = endpoints
        self.routeTables = routeTables
        self.tlsContexts = tlsContexts
        self.timeouts = timeouts
        self.limits = limits
        self.tuning = tuning
        self.cookies = EndpointCookies(services: services, endpoints: endpoints)
    }

    /// The cookie value that names `endpoint` in this snapshot (16 lower-case hex digits of a
    /// hash of its service's name and its address, so stable across snapshots); empty when its
    /// service does not use the cookie algorithm. Precomputed: no allocation.
    public func cookieValue(for endpoint: Int) -> [UInt8] {
        guard let slot = cookieSlot(endpoint) else { return [] }
        return cookies.values[slot]
    }

    @inline(__always)
    private func cookieSlot(_ endpoint: Int) -> Int? {
        guard !cookies.start.isEmpty else { return nil }
        let service = endpoints[endpoint].service
        return cookies.slot(endpoint, service: service, range: services[service].endpoints)
    }

    /// `Set-Cookie: NAME=VALUE; Path=/; HttpOnly\r\n` for `endpoint`, ready for
    /// `HTTPHeadWriter.writeResponse(extraFields:)`; empty when its service does not use cookies.
    public func setCookieField(for endpoint: Int) -> [UInt8] {
        guard let slot = cookieSlot(endpoint) else { return [] }
        return cookies.setCookieFields[slot]
    }

    /// The endpoint of `service` that the cookie `value` names (as `cookieValue(for:)` made it;
    /// double quotes accepted), or nil: the service does not use cookies, the value is
    /// malformed, or no endpoint of the service has it. No allocation.
    public func endpoint(forCookie value: UnsafeRawBufferPointer, service: Int) -> Int? {
        guard services[service].algorithm == .cookie else { return nil }
        return cookies.endpoint(forCookie: value, service: service, in: services[service].endpoints)
    }

    /// The index of the service called `name`, if any.
    public func serviceIndex(named name: String) -> Int? {
        services.firstIndex { $0.name == name }
    }
}

public enum ListenerProtocol: String, Sendable, CaseIterable {
    /// Bytes relayed both ways to one service.
    case tcp
    /// HTTP/1.1 requests sent by their host and path to a service (`Listener.routes`).
    case http
    /// TLS passed through untouched, sent by the ClientHello's server name (SNI) to a service
    /// (`Listener.routes`, every route's path `/`, looked up with `defaultPort` 443). Unknown
    /// or absent names go to the table's default service; nil there means close. With
    /// certificates (`Listener.tlsContext`), names routed to `.terminate` are decrypted here
    /// and their requests routed like an http listener's by `Listener.terminatedRoutes`.
    case tls
}

public struct Listener: Sendable, Hashable {
    public var name: String
    public var address: SocketAddress
    public var `protocol`: ListenerProtocol
    /// tcp: index into `RoutingSnapshot.services`; http and tls: unused (-1).
    public var service: Int
    /// http and tls: index into `RoutingSnapshot.routeTables`; tcp: -1.
    public var routes: Int
    /// Clients connecting from these blocks must start with a PROXY protocol header (v1 or
    /// v2), whose source address then stands for theirs; others are taken as they are.
    /// Empty: no header is expected from anyone.
    public var acceptProxy: [CIDR]
    /// tls listeners with certificates: index into `RoutingSnapshot.tlsContexts`, the context
    /// terminating sessions are created from; -1 otherwise (passthrough only).
    public var tlsContext: Int = -1
    /// tls listeners with certificates: index into `RoutingSnapshot.routeTables`, the HTTP
    /// table (looked up with `defaultPort` 443) for requests decrypted on this listener; -1
    /// otherwise.
    public var terminatedRoutes: Int = -1
    /// Which of this listener's requests and connections get an access-log record.
    public var accessLog: AccessLogPolicy = AccessLogPolicy()
    /// HTTP/2 for this listener's HTTP traffic: ALPN `h2` on terminated TLS sessions (tls),
    /// the client connection preface with prior knowledge (http, beside HTTP/1.1).
    public var http2: Bool = false

    public init(
        name: String, address: SocketAddress, protocol: ListenerProtocol, service: Int, routes: Int = -1,
        acceptProxy: [CIDR] = [], tlsContext: Int = -1, terminatedRoutes: Int = -1,
        accessLog: AccessLogPolicy = AccessLogPolicy(), http2: Bool = false
    ) {
        self.accessLog = accessLog
        self.http2 = http2
        self.name = name
        self.address = address
        self.protocol = `protocol`
        self.service = service
        self.routes = routes
        self.acceptProxy = acceptProxy
        self.tlsContext = tlsContext
        self.terminatedRoutes = terminatedRoutes
    }

    /// Whether a client at `ip` is expected to send a PROXY header first. Allocation-free.
    public func expectsProxyHeader(from ip: SocketAddress.IP) -> Bool {
        for block in acceptProxy where block.contains(ip) { return true }
        return false
    }

    /// Two listeners with the same key share their listening sockets across a reload.
    public var key: ListenerKey { ListenerKey(address: address, protocol: self.protocol) }
}

/// Which requests (http) or connections (tcp, passthrough) of a listener are logged. Records
/// go to the process's access log when one is configured; without one, nothing is recorded.
public struct AccessLogPolicy: Sendable, Hashable {
    public enum Mode: String, Sendable, CaseIterable {
        case off
        /// Every request or connection (sampled by `samplePerMillion`).
        case on
        /// Only failures: a 5xx status, no response, or an abnormal close (timeout, reset,
        /// connect failure). Never sampled away.
        case errors
    }

    public var mode: Mode
    /// `on`: the share of successful records kept, per million (1,000,000: all). Failures are
    /// always kept.
    public var samplePerMillion: UInt32

    public init(mode: Mode = .on, samplePerMillion: UInt32 = 1_000_000) {
        self.mode = mode
        self.samplePerMillion = samplePerMillion
    }
}

public struct ListenerKey: Sendable, Hashable {
    public var address: SocketAddress
    public var `protocol`: ListenerProtocol
}

public enum Algorithm: String, Sendable, CaseIterable {
    /// Each endpoint in turn; cursor per loop, random start.
    case roundrobin
    /// The endpoint with the fewest connections this loop holds open; ties go round-robin.
    case leastconn
    /// A hash of the client's address: one client, one endpoint, while the set is unchanged.
    case source
    /// Sticky sessions: a cookie names the endpoint (`RoutingSnapshot.endpoint(forCookie:service:)`);
    /// requests without a valid one go round-robin and get the cookie set.
    case cookie
}

public struct Service: Sendable, Hashable {
    public var name: String
    public var algorithm: Algorithm
    /// Range into `RoutingSnapshot.endpoints`. May be empty: such a service refuses connections.
    public var endpoints: Range<Int>
    /// `cookie` algorithm: the cookie's name (`SLUICE` unless given); nil for the others.
    public var cookieName: [UInt8]?
    /// Send this PROXY protocol header to the endpoints before the client's bytes, so they
    /// see the client's address (tcp and tls listeners; http uses X-Forwarded-For). nil: none.
    public var proxyProtocol: ProxyVersion?
    /// How HTTP requests reach the endpoints: HTTP/1.1 (one request per pooled connection),
    /// or HTTP/2 streams multiplexed over a few connections per endpoint.
    public var upstreamProtocol: UpstreamProtocol = .http1
    /// `protocol: h2`: how its endpoints' TLS is spoken and checked; nil otherwise.
    public var upstreamTLS: UpstreamTLS? = nil

    public static let defaultCookieName: [UInt8] = Array("SLUICE".utf8)
    /// The longest cookie name a configuration may give (browsers keep name and value within
    /// 4 KiB; the proxy formats `Set-Cookie` into a fixed scratch area).
    public static let maxCookieNameLength = 256

    /// `cookieName` nil with algorithm `cookie` means `defaultCookieName`; it is ignored (kept
    /// nil) for the other algorithms.
    public init(
        name: String, algorithm: Algorithm, endpoints: Range<Int>, cookieName: [UInt8]? = nil,
        proxyProtocol: ProxyVersion? = nil
    ) {
        self.name = name
        self.algorithm = algorithm
        self.endpoints = endpoints
        self.cookieName = algorithm == .cookie ? cookieName ?? Self.defaultCookieName : nil
        self.proxyProtocol = proxyProtocol
    }
}

/// The HTTP version a service's endpoints speak (`services[i].protocol`).
public enum UpstreamProtocol: String, Sendable, CaseIterable {
    /// HTTP/1.1, one request in flight per connection (pooled between requests).
    case http1 = "http/1.1"
    /// HTTP/2 with prior knowledge over plain TCP (RFC 9113 §3.3): streams multiplexed over
    /// a few connections per endpoint; needed by gRPC.
    case h2c
    /// HTTP/2 over TLS (ALPN h2) to the endpoints, checked as `Service.upstreamTLS` says.
    case h2
}

/// The PROXY protocol header a service's endpoints expect (haproxy.org, proxy-protocol.txt).
public enum ProxyVersion: String, Sendable, CaseIterable {
    /// Text: `PROXY TCP4 src dst sport dport\r\n`.
    case v1
    /// Binary: the 12-byte signature, then the addresses.
    case v2
}

public struct Endpoint: Sendable, Hashable {
    public var address: SocketAddress
    /// `service`, stored in 32 bits so that an endpoint takes 24 bytes, not 32 (a snapshot
    /// holds one per endpoint of the cluster).
    private var serviceIndex: Int32

    /// Index into `RoutingSnapshot.services`.
    public var service: Int {
        @inline(__always) get { Int(serviceIndex) }
        set { serviceIndex = Int32(newValue) }
    }

    public init(address: SocketAddress, service: Int) {
        self.address = address
        self.serviceIndex = Int32(service)
    }
}

/// Every wait has a bound. Milliseconds, as the timer wheel counts.
public struct Timeouts: Sendable, Hashable {
    /// From connect(2) to the upstream accepting.
    public var connectMillis: Int64 = 5_000
    /// Client inactivity before a connection is established (and for HTTP, between requests).
    public var clientMillis: Int64 = 50_000
    /// Server inactivity while waiting for a response (HTTP).
    public var serverMillis: Int64 = 50_000
    /// Inactivity in both directions once a TCP tunnel is established.
    public var tunnelMillis: Int64 = 3_600_000
    /// On SIGTERM: how long open connections may take to finish before they are closed,
    /// counted from when accepting stops (after `drainDelayMillis`).
    public var drainMillis: Int64 = 30_000
    /// On SIGTERM: how long the listeners keep accepting after `/readyz` turned 503 (the time
    /// kube-proxy and outside load balancers take to stop sending). nil: the mode's default
    /// (5 s in `sluice kube`, 0 in `sluice run`).
    public var drainDelayMillis: Int64? = nil
    /// HTTP: a request head must arrive whole within this long of its first byte (else 408).
    public var requestHeadMillis: Int64 = 5_000
    /// TLS: the ClientHello must arrive whole within this long (else the connection is closed).
    public var tlsHelloMillis: Int64 = 5_000
    /// HTTP: a request body must arrive within this long of its head going upstream, plus one
    /// second per `Limits.requestBodyMinRate` bytes received (else 408 and close): a body
    /// trickled a byte at a time cannot hold a client and an upstream connection forever.
    public var requestBodyMillis: Int64 = 30_000

    public init() {}
}

public struct Limits: Sendable, Hashable {
    /// Open downstream connections, all loops together. A loop at its share stops accepting.
    public var maxConnections: Int = 10_000
    /// Connect attempts per downstream connection, each on the next endpoint.
    public var connectTries: Int = 3
    /// After a failed connect, an endpoint is passed over by this loop for this long.
    public var endpointBackoffMillis: Int64 = 2_000
    /// HTTP: idle upstream connections a loop keeps per endpoint for reuse.
    public var upstreamIdlePerEndpoint: Int = 32
    /// HTTP: an idle upstream connection is closed after this long.
    public var upstreamIdleMillis: Int64 = 30_000
    /// HTTP: bytes per second a request body must keep up on average after the
    /// `Timeouts.requestBodyMillis` grace; 0 makes that grace a total deadline.
    public var requestBodyMinRate: Int = 1024

    public init() {}
}

public struct Tuning: Sendable, Hashable {
    /// F_SETPIPE_SZ for splice pipes. The kernel caps it at /proc/sys/fs/pipe-max-size.
    public var pipeSize: Int = 1 << 20
    /// Idle pipes a loop keeps for reuse; more are closed when released.
    public var pipePoolSize: Int = 64
    /// Copy buffer for connections where splice is refused.
    public var copyBufferSize: Int = 64 * 1024
    /// Use splice for tunnels; false forces read/write copying (for comparison and debugging).
    public var splice: Bool = true
    /// The loops' kernel interface, read at start (a reload that changes it warns).
    public var ioBackend: IOBackendChoice = .auto

    public init() {}
}

/// `tuning.ioBackend`: io_uring where this process may use it (`auto`), or one of the two.
public enum IOBackendChoice: String, Sendable, Hashable, CaseIterable {
    case auto
    case ioUring = "io_uring"
    case epoll
}
