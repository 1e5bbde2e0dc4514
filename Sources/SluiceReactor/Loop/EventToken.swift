/// What an epoll event refers to, packed into its 64-bit user data.
///
/// Layout: bits 0–2 kind, bits 3–31 index (connection slot, listener position or pool
/// entry), bits 32–63 the slot's generation when the descriptor was registered. A connection slot's
/// generation changes every time the slot is freed, so an event that was already queued for
/// a closed connection cannot reach the connection that reuses the slot: it is dropped.
struct EventToken: Equatable, BitwiseCopyable {
    enum Kind: UInt64 {
        case mailbox = 0
        case listener = 1
        case downstream = 2
        case upstream = 3
        /// An idle upstream connection in the loop's pool.
        case pooled = 4
    }

    let raw: UInt64

    @inline(__always)
    init(kind: Kind, index: Int32, generation: UInt32) {
        raw = kind.rawValue | UInt64(UInt32(bitPattern: index) & 0x1FFF_FFFF) << 3 | UInt64(generation) << 32
    }

    @inline(__always) init(raw: UInt64) { self.raw = raw }

    @inline(__always) var kind: Kind { Kind(rawValue: raw & 7) ?? .mailbox }
    @inline(__always) var index: Int32 { Int32(truncatingIfNeeded: (raw >> 3) & 0x1FFF_FFFF) }
    @inline(__always) var generation: UInt32 { UInt32(truncatingIfNeeded: raw >> 32) }
}
