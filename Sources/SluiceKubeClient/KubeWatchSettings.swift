/// How the watchers talk to the API server (flags of `sluice kube`).
public struct KubeWatchSettings: Sendable, Hashable {
    /// `--namespace`: one namespace; nil: all.
    public var namespace: String?
    /// `--watch-idle-timeout`: a watch that delivers no byte (not even a bookmark) for this
    /// long is taken for dead and replaced. The API server sends bookmarks about every minute.
    public var idleTimeout: Duration
    /// Asked of the server (`timeoutSeconds`); it ends the watch cleanly then, and the watcher
    /// continues from the last resourceVersion.
    public var watchTimeoutSeconds: Int
    /// For each list page.
    public var listTimeout: Duration
    /// The largest list page body accepted. A larger page is refused, and asked for again
    /// with fewer items (`KubeWatcher.list`); a page of one item still too large fails the
    /// list, which is retried after the back-off.
    public var maxListPageBytes: Int
    public var backoffInitial: Duration
    public var backoffMaximum: Duration

    public init(
        namespace: String? = nil, idleTimeout: Duration = .seconds(90), watchTimeoutSeconds: Int = 300,
        listTimeout: Duration = .seconds(60), maxListPageBytes: Int = 64 << 20,
        backoffInitial: Duration = .milliseconds(500), backoffMaximum: Duration = .seconds(30)
    ) {
        precondition(maxListPageBytes > 0, "the page bound must be positive")
        self.namespace = namespace
        self.idleTimeout = idleTimeout
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.listTimeout = listTimeout
        self.maxListPageBytes = maxListPageBytes
        self.backoffInitial = backoffInitial
        self.backoffMaximum = backoffMaximum
    }

    /// How often a running watch checks for idleness and re-list requests.
    var watchdogTick: Duration { min(idleTimeout / 4, .milliseconds(250)) }
}
