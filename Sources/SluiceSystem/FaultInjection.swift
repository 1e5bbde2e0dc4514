/// Syscall failures on purpose, for tests: debug builds only, so release builds pay nothing.
/// Set before any loop starts (from `SLUICE_FAULT_SPLICE=EINVAL` by the executable), read
/// by the syscall wrappers.
#if DEBUG
    public enum FaultInjection {
        /// When non-zero, every splice fails with this errno (EINVAL: "cannot splice this pair").
        nonisolated(unsafe) public static var spliceErrno: Int32 = 0
    }
#endif
