import CShims

/// The process's handler for fatal signals (SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT):
/// a line and a backtrace on standard error, then the same signal with its default action, so
/// the process ends at once and a supervisor restarts it. A Swift trap ("Index out of range")
/// is a SIGILL (x86-64) or SIGTRAP (arm64) and goes the same way.
///
/// The handler is C (`CShims/process.c`), async-signal-safe apart from glibc's `backtrace`,
/// whose first call is made at install time (see there).
public enum CrashHandler {
    /// Installs the handler for the whole process and an alternate signal stack for the
    /// calling thread (threads from `Threads.spawn` get their own). Call first thing in a
    /// serving command, from the main thread: after the Swift runtime has started, so that
    /// this handler replaces the runtime's backtracer. Idempotent.
    public static func install() throws(Errno) {
        let result = sluice_install_crash_handler()
        if result < 0 { throw Errno(rawValue: -result) }
    }

    /// Whether the handler is the action for `signal` now (a test and `sluice check` aid).
    public static func isInstalled(signal: Int32) -> Bool {
        sluice_crash_handler_installed(signal) == 1
    }
}
