import CShims
import Glibc

/// A `sockaddr_in` or `sockaddr_in6` ready for bind/connect, built without text parsing.
public struct SystemAddress: Sendable, Equatable {
    public enum IP: Sendable, Equatable {
        /// Host byte order.
        case v4(UInt32)
        /// Big-endian halves of the 16 bytes.
        case v6(UInt64, UInt64)
    }

    public var ip: IP
    public var port: UInt16

    public init(ip: IP, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    public var family: Int32 {
        switch ip {
        case .v4: return SLUICE_AF_INET
        case .v6: return SLUICE_AF_INET6
        }
    }

    /// Calls `body` with a pointer to the sockaddr and its length; the pointer is valid only
    /// inside `body`.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> R) throws(Errno) -> R {
        switch ip {
        case .v4(let address):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = address.bigEndian
            return try withUnsafePointer(to: &sin) { (p) throws(Errno) -> R in
                // SAFETY: sockaddr_in begins with the sockaddr header; the kernel reads `len` bytes.
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (s) throws(Errno) -> R in
                    try body(s, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6(let hi, let lo):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                raw.storeBytes(of: hi.bigEndian, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            return try withUnsafePointer(to: &sin6) { (p) throws(Errno) -> R in
                // SAFETY: sockaddr_in6 begins with the sockaddr header; the kernel reads `len` bytes.
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (s) throws(Errno) -> R in
                    try body(s, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    /// Decodes what accept(2) or getsockname(2) filled in; nil for other families.
    public init?(storage: sockaddr_storage) {
        var copy = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let sin = withUnsafeBytes(of: &copy) { $0.load(as: sockaddr_in.self) }
            self.init(ip: .v4(UInt32(bigEndian: sin.sin_addr.s_addr)), port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &copy) { $0.load(as: sockaddr_in6.self) }
            var addr = sin6.sin6_addr
            let (hi, lo) = withUnsafeBytes(of: &addr) {
                (
                    UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self.init(ip: .v6(hi, lo), port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }
}
