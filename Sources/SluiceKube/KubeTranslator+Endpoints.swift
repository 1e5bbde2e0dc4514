import SluiceRouting

/// EndpointSlices → endpoint addresses for one Service port.
///
/// - The slice port is the one whose `name` equals the Service port's name (`""` for an
///   unnamed port) and whose protocol matches; its number applies to that slice only, as the
///   same named port may have different numbers in different slices.
/// - New connections go to `ready` endpoints (nil ⇒ ready). When none is ready anywhere,
///   endpoints that are `serving` and `terminating` are used instead, as kube-proxy does for
///   graceful termination.
/// - IPv4 and IPv6 slices both count; FQDN slices (no defined semantics) are skipped. Only
///   an endpoint's first address is read, as kube-proxy does.
/// - The same (address, port) in two slices (a pod moving between slices) counts once; the
///   result is sorted so that an unchanged set is an unchanged list.
extension PlanBuilder {
    mutating func endpoints(of port: KubeService.Port, in slices: [KubeEndpointSlice]) -> [SocketAddress] {
        let portName = port.name ?? ""
        let portProtocol = port.protocol ?? "TCP"
        var ready: Set<SocketAddress> = []
        var terminating: Set<SocketAddress> = []
        for slice in slices {
            let family = slice.addressType ?? ""
            guard family == "IPv4" || family == "IPv6" else { continue }
            let match = (slice.ports ?? []).first {
                ($0.name ?? "") == portName && ($0.protocol ?? "TCP") == portProtocol
            }
            guard let number = match?.port else { continue }
            guard (1...65535).contains(number) else {
                warn("EndpointSlice", "\(slice.key)", "port '\(portName)' has number \(number); slice skipped")
                continue
            }
            for endpoint in slice.endpoints ?? [] {
                let usable = endpoint.isReady || (endpoint.isServing && endpoint.isTerminating)
                guard usable else { continue }
                let ip: SocketAddress.IP
                if family == "IPv4", let packed = endpoint.packedIPv4 {
                    ip = .v4(packed)
                } else if let text = endpoint.address, let parsed = Self.ip(text, family: family) {
                    ip = parsed
                } else if let text = endpoint.address {
                    warn("EndpointSlice", "\(slice.key)", "'\(text)' is not an \(family) address; skipped")
                    continue
                } else {
                    continue
                }
                let address = SocketAddress(ip: ip, port: UInt16(number))
                if endpoint.isReady {
                    ready.insert(address)
                } else {
                    terminating.insert(address)
                }
            }
        }
        let chosen = ready.isEmpty ? terminating : ready
        return chosen.sorted(by: SocketAddress.stableOrder)
    }

    /// An address literal of the slice's family.
    static func ip(_ text: String, family: String) -> SocketAddress.IP? {
        guard text != "localhost", let ip = SocketAddress.parseIP(text.utf8) else { return nil }
        switch (ip, family) {
        case (.v4, "IPv4"), (.v6, "IPv6"): return ip
        default: return nil
        }
    }
}
