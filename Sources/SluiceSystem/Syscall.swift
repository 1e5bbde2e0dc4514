import CShims
import Glibc

/// An errno value. Zero cost: one `Int32`.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    @inline(__always) public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let again = Errno(rawValue: EAGAIN)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let inProgress = Errno(rawValue: EINPROGRESS)
    public static let invalid = Errno(rawValue: EINVAL)
    public static let notSupported = Errno(rawValue: ENOSYS)
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    public static let brokenPipe = Errno(rawValue: EPIPE)
    public static let timedOut = Errno(rawValue: ETIMEDOUT)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let fault = Errno(rawValue: EFAULT)
    public static let addressInUse = Errno(rawValue: EADDRINUSE)
    public static let tooManyFiles = Errno(rawValue: EMFILE)
    public static let tooManyFilesInSystem = Errno(rawValue: ENFILE)

    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }
}

/// The outcome of a non-blocking operation: done with a value, or "would block" (EAGAIN),
/// which is a normal state under edge-triggered readiness and never an error.
public enum IOResult<Value> {
    case done(Value)
    case wouldBlock
}

extension IOResult: Equatable where Value: Equatable {}

/// The one place that turns a shim's `-errno` return into Swift.
///
/// Policy (as swift-nio's `System.swift`): EINTR is retried; EAGAIN becomes `.wouldBlock`;
/// EBADF and EFAULT mean the program is wrong (a closed or foreign descriptor, a bad pointer)
/// and trap at once rather than corrupt another connection; everything else is thrown as an
/// `Errno` for the caller to handle as a normal close (reset, refused, timeout…).
public enum Syscall {
    /// Runs `call` until it does not report EINTR, then applies the policy above.
    @inline(__always)
    public static func run(_ name: StaticString, _ call: () -> Int) throws(Errno) -> IOResult<Int> {
        while true {
            let result = call()
            if result >= 0 { return .done(result) }
            let errno = Int32(truncatingIfNeeded: -result)
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            case EBADF, EFAULT: bug(name, errno)
            default: throw Errno(rawValue: errno)
            }
        }
    }

    /// For calls that cannot say "would block": the value, or a thrown `Errno`.
    @inline(__always)
    public static func value(_ name: StaticString, _ call: () -> Int) throws(Errno) -> Int {
        switch try run(name, call) {
        case .done(let value): return value
        case .wouldBlock: throw Errno.again
        }
    }

    /// Close never retries: Linux releases the descriptor even when it reports EINTR.
    @inline(__always)
    public static func close(_ fd: Int32) {
        let result = sluice_close(fd)
        if result == -EBADF { bug("close", EBADF) }
    }

    static func bug(_ name: StaticString, _ errno: Int32) -> Never {
        fatalError("\(name) failed with \(Errno(rawValue: errno)): a descriptor or pointer is wrong")
    }
}
