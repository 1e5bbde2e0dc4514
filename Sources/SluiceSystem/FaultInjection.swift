/// Syscall failures on purpose, for tests: debug builds only, so release builds pay nothing.
/// Set before any loop starts (from `SLUICE_FAULT_SPLICE=EINVAL` or
/// `SLUICE_FAULT_PIPE_SIZE=EPERM` by the executable), read by the syscall wrappers.
#if DEBUG
    public enum FaultInjection {
        /// When non-zero, every splice fails with this errno (EINVAL: "cannot splice this pair").
        nonisolated(unsafe) public static var spliceErrno: Int32 = 0
        /// When non-zero, every F_SETPIPE_SZ of `PipePool` fails with this errno (EPERM: the
        /// user's pipe budget, /proc/sys/fs/pipe-user-pages-soft, is spent).
        nonisolated(unsafe) public static var pipeSetSizeErrno: Int32 = 0
    }
#endif
