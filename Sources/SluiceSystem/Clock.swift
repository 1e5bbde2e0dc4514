import CShims

/// Monotonic time in milliseconds, the unit of every timeout.
public enum MonotonicClock {
    @inline(__always) public static func nowMillis() -> Int64 { sluice_monotonic_ms() }
    @inline(__always) public static func nowNanos() -> Int64 { sluice_monotonic_ns() }
    /// Monotonic microseconds (the loops time requests with it, once per batch).
    @inline(__always) public static func nowMicros() -> Int64 { sluice_monotonic_ns() / 1000 }
}
