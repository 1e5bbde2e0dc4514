import SluiceRouting
import SluiceSystem

/// Listening sockets taken over from the process that served before this one
/// (`sluice run --takeover`), grouped by the address each is bound to, in the order the
/// old process's loops had them. `Reactor` adopts one per loop per listener instead of
/// binding: connections waiting in the old process's accept queues are taken from the same
/// queues, so none is refused during the hand-over.
public struct InheritedSockets: Sendable {
    private var byAddress: [SocketAddress: [Int32]] = [:]

    public init() {}

    /// Groups `descriptors` by their bound address (getsockname); one that is not a bound
    /// IPv4 or IPv6 socket is closed.
    public init(descriptors: [Int32]) {
        for fd in descriptors {
            guard let address = try? Socket.localAddress(fd) else {
                Syscall.close(fd)
                continue
            }
            byAddress[SocketAddress(ip: Loop.routingIP(address.ip), port: address.port), default: []].append(fd)
        }
    }

    /// How many descriptors are left.
    public var count: Int { byAddress.values.reduce(0) { $0 + $1.count } }

    /// The next socket bound to `address`, now the caller's; nil when none is left.
    mutating func take(_ address: SocketAddress) -> Int32? {
        guard var list = byAddress[address], !list.isEmpty else { return nil }
        let fd = list.removeFirst()
        byAddress[address] = list.isEmpty ? nil : list
        return fd
    }

    /// Closes what no listener took; returns the addresses and counts closed.
    mutating func closeRest() -> [(address: SocketAddress, count: Int)] {
        let rest = byAddress.map { (address: $0.key, count: $0.value.count) }
        for fds in byAddress.values { for fd in fds { Syscall.close(fd) } }
        byAddress = [:]
        return rest
    }
}
