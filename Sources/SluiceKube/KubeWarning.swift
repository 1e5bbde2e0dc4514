/// Something in the cluster (or the options) that could not be used as written. The table is
/// built anyway, with the default named in `message`; the caller logs it.
public struct KubeWarning: Sendable, Hashable, CustomStringConvertible {
    /// `Service`, `EndpointSlice`, or `option`.
    public var kind: String
    /// `namespace/name` of the object, or the option's flag name.
    public var object: String
    public var message: String

    public init(kind: String, object: String, message: String) {
        self.kind = kind
        self.object = object
        self.message = message
    }

    /// `Service monitoring/grafana: lb.algorithm 'fast' is unknown; using roundrobin`.
    public var description: String { "\(kind) \(object): \(message)" }
}
