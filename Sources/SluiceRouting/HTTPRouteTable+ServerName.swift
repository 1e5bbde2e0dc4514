/// TLS listeners share the HTTP route table: every route's path is `/`, the host is the
/// ClientHello's server name.
extension HTTPRouteTable {
    /// The route for a TLS connection whose ClientHello named `serverName` (the SNI
    /// host_name bytes as sent; empty when there was no server_name extension).
    ///
    /// The same host matching as `lookup(host:path:defaultPort:)` with path `/` and port 443:
    /// case-insensitive, one trailing dot ignored, exact names before `*.domain`. A `terminate`
    /// route answers `.terminate` (decrypt here). When nothing matches: `.terminate` if the
    /// default terminates, else the default service if there is one, else `.noRoute` (close
    /// the connection). Pure, allocation-free; any thread; `serverName` is only read during the call.
    public func lookup(serverName: UnsafeRawBufferPointer) -> RouteMatch {
        lookup(host: serverName, path: UnsafeRawBufferPointer(start: nil, count: 0), defaultPort: 443)
    }
}
