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
    public var backoffInitial: Duration
    public var backoffMaximum: Duration

    public init(
        namespace: String? = nil, idleTimeout: Duration = .seconds(90), watchTimeoutSeconds: Int = 300,
        listTimeout: Duration = .seconds(60), backoffInitial: Duration = .milliseconds(500),
        backoffMaximum: Duration = .seconds(30)
    ) {
        self.namespace = namespace
        self.idleTimeout = idleTimeout
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.listTimeout = listTimeout
        self.backoffInitial = backoffInitial
        self.backoffMaximum = backoffMaximum
    }

    /// How often a running watch checks for idleness and re-list requests.
    var watchdogTick: Duration { min(idleTimeout / 4, .milliseconds(250)) }
}
