import SluiceRouting
import Synchronization

/// The server TLS context the tls listener of `sluice kube` terminates with: built from the
/// certificate files at start, replaced when they are read again (SIGHUP), so rotated
/// certificates apply without a restart.
///
/// Each replacement gets the next `version`, which the plan records and its content hash
/// digests: a new context makes a new snapshot even when the cluster did not change. The
/// handle itself is not hashed; the snapshot carries it (`RoutingSnapshot.tlsContexts`).
///
/// Thread-safe: the control thread replaces, the applier reads. Compared by identity.
public final class KubeTLSContextSlot: Sendable, Hashable {
    /// The context in force and the number of the build that made it (1 for the first).
    public struct Current: Sendable {
        public var handle: TLSContextHandle
        public var version: UInt64
    }

    private let state: Mutex<Current>

    public init(_ handle: TLSContextHandle) {
        state = Mutex(Current(handle: handle, version: 1))
    }

    public var current: Current { state.withLock { $0 } }

    /// Puts `handle` in force; returns its version. The old context lives on in the snapshots
    /// (and sessions) that still use it.
    @discardableResult
    public func replace(with handle: TLSContextHandle) -> UInt64 {
        state.withLock { current in
            current = Current(handle: handle, version: current.version + 1)
            return current.version
        }
    }

    public static func == (lhs: KubeTLSContextSlot, rhs: KubeTLSContextSlot) -> Bool { lhs === rhs }

    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}
