import SluiceRouting
import Synchronization

/// One access-log record, written by a loop into its `AccessLogRing` with plain stores (no
/// string, no allocation) and formatted by the log writer thread. Fixed size, trivially
/// copyable: texts are bounded copies in `text`, at fixed offsets.
///
/// Times are monotonic microseconds (`MonotonicClock.nowMicros` at the loop's batch); the
/// writer turns `startMicros` into wall-clock time. A duration of -1 means "did not happen"
/// (no connect for a reused upstream, no response).
public struct AccessRecord: BitwiseCopyable {
    public enum Kind: UInt8, Sendable, BitwiseCopyable {
        /// One HTTP request and its response (plain or terminated TLS).
        case http
        /// One TCP connection.
        case tcp
        /// One TLS connection passed through by its SNI.
        case tlsPassthrough
    }

    /// Bounded text fields and their place in `text`.
    public enum Field: Int, CaseIterable, Sendable {
        case listener, host, target, service, sni, requestID

        public var offset: Int {
            switch self {
            case .listener: 0
            case .host: 64
            case .target: 192
            case .service: 448
            case .sni: 576
            case .requestID: 704
            }
        }

        public var capacity: Int {
            switch self {
            case .listener: 64
            case .host: 128
            case .target: 256
            case .service: 128
            case .sni: 128
            case .requestID: 64
            }
        }
    }

    public static let textCapacity = 768

    public var kind: Kind = .http
    /// `HTTPMethod` raw value (http only).
    public var method: UInt8 = 0
    /// `CloseReason` raw value: why the connection closed, when this record ended it; `.none`
    /// for a request after which the connection stayed open.
    public var closeReason: UInt8 = 0
    /// 0 none, 0x0303 TLS 1.2, 0x0304 TLS 1.3 (terminated here).
    public var tlsVersion: UInt16 = 0
    /// The client's HTTP version: 10, 11, 20 (an HTTP/2 stream); 0 when not HTTP (or no
    /// request line was read).
    public var httpVersion: UInt8 = 0
    /// The HTTP version the request went to its endpoint with: 11, or 20 (a stream of an
    /// HTTP/2 connection, `protocol: h2c`); 0 when it reached none.
    public var upstreamVersion: UInt8 = 0
    /// The status sent to the client; 0 when none was (reset, tunnel).
    public var status: UInt16 = 0
    /// The client's address: IPv6 (or IPv4-mapped) bytes, big-endian halves, and port.
    public var clientV6 = false
    public var clientHi: UInt64 = 0
    public var clientLo: UInt64 = 0
    public var clientPort: UInt16 = 0
    /// The endpoint's address (`endpointPort` 0: none chosen).
    public var endpointV6 = false
    public var endpointHi: UInt64 = 0
    public var endpointLo: UInt64 = 0
    public var endpointPort: UInt16 = 0
    /// Bytes from the client (request head and body; tunnel bytes up) and to it.
    public var bytesIn: Int64 = 0
    public var bytesOut: Int64 = 0
    /// When the request's first byte (or the connection) was seen.
    public var startMicros: Int64 = 0
    /// First byte → whole head received (http), accept → routed (tunnels).
    public var requestMicros: Int64 = -1
    /// Connect start → connected; -1 when an idle upstream was reused or none was needed.
    public var connectMicros: Int64 = -1
    /// Request sent → response head received (http); connected → first upstream byte (tunnel).
    public var responseMicros: Int64 = -1
    /// First byte → last byte of the response (http); accept → close (tunnels).
    public var totalMicros: Int64 = -1
    public var lengths: InlineArray<6, UInt16> = .init(repeating: 0)
    /// Bit `Field.rawValue` set: `set` was given more bytes than that field holds.
    public var truncated: UInt8 = 0
    public var text: InlineArray<768, UInt8> = .init(repeating: 0)

    public init() {}

    /// Copies at most `field.capacity` bytes of `bytes` into the field (a target longer than
    /// that is cut; the writer marks it).
    @inline(__always)
    public mutating func set(_ field: Field, _ bytes: UnsafeRawBufferPointer) {
        let n = min(bytes.count, field.capacity)
        let offset = field.offset
        for i in 0..<n { text[offset &+ i] = bytes[i] }
        lengths[field.rawValue] = UInt16(truncatingIfNeeded: n)
        let bit = UInt8(1) << UInt8(field.rawValue)
        truncated = bytes.count > n ? truncated | bit : truncated & ~bit
    }

    /// The bytes of `field` (writer side).
    public func bytes(_ field: Field) -> [UInt8] {
        let n = Int(lengths[field.rawValue])
        return (0..<n).map { text[field.offset + $0] }
    }
}

/// A single-producer, single-consumer ring of `AccessRecord`s: the loop thread writes, the
/// writer thread reads. The loop never waits: a record that finds the ring full is counted in
/// `dropped` and discarded.
public final class AccessLogRing: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): slot `i` is written only by the producer while
    // `tail - head < capacity` says it is free, and read only by the consumer after the
    // producer published it with a releasing store of `tail`; the consumer frees it with a
    // releasing store of `head`.
    public let capacity: Int
    private let mask: Int
    private let records: UnsafeMutablePointer<AccessRecord>
    private let head = Atomic<Int>(0)
    private let tail = Atomic<Int>(0)
    private let droppedCount = Atomic<Int>(0)
    private let writtenCount = Atomic<Int>(0)

    /// `capacity` is rounded up to a power of two.
    public init(capacity: Int) {
        var size = 1
        while size < max(capacity, 2) { size <<= 1 }
        self.capacity = size
        mask = size - 1
        records = .allocate(capacity: size)
        records.initialize(repeating: AccessRecord(), count: size)
    }

    deinit { records.deallocate() }

    /// Producer: the slot to fill for the next record, or nil (counted as dropped) when full.
    /// Follow with `publish()`.
    // SAFETY: the slot returned is the producer's alone until `commit` publishes it (one producer).
    @inline(__always)
    public func reserve() -> UnsafeMutablePointer<AccessRecord>? {
        let t = tail.load(ordering: .relaxed)
        if t &- head.load(ordering: .acquiring) >= capacity {
            droppedCount.wrappingAdd(1, ordering: .relaxed)
            return nil
        }
        // SAFETY: the slot is free (checked above) and only this thread writes it.
        return records + (t & mask)
    }

    /// Producer: makes the reserved record visible to the consumer.
    @inline(__always)
    public func publish() {
        tail.store(tail.load(ordering: .relaxed) &+ 1, ordering: .releasing)
    }

    /// Consumer: calls `body` on every published record, oldest first, then frees them.
    /// Returns how many were taken.
    @discardableResult
    public func drain(_ body: (borrowing AccessRecord) -> Void) -> Int {
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .acquiring)
        var i = h
        while i != t {
            // SAFETY: published by the producer (i < tail), not yet freed.
            body(records[i & mask])
            i &+= 1
        }
        head.store(t, ordering: .releasing)
        writtenCount.wrappingAdd(t &- h, ordering: .relaxed)
        return t &- h
    }

    /// Records dropped because the ring was full.
    public var dropped: Int { droppedCount.load(ordering: .relaxed) }
    /// Records taken by the consumer.
    public var taken: Int { writtenCount.load(ordering: .relaxed) }
}
