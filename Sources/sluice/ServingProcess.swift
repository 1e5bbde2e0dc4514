import ArgumentParser
import Logging
import SluiceSystem

/// What every command that serves (`run`, `kube`, `demo`) does to the process before it
/// makes loops: the crash handler first, then the open-files limit and the debug-only fault
/// switches once logging is up. Main thread only.
enum ServingProcess {
    /// The first statement of a serving command: a fatal signal (a Swift trap included) then
    /// prints a backtrace and ends the process at once, rather than parking in the Swift
    /// runtime's backtracer with the listening ports held. Installed from `main`, after the
    /// runtime's own start-up, so it takes precedence over the runtime's handler.
    static func installCrashHandler() {
        do {
            try CrashHandler.install()
        } catch {
            printError("sluice: cannot install the crash handler: \(error)")
        }
    }

    /// Raises the open-files soft limit (logged once) and, in debug builds, arms the fault
    /// switches of the environment. Call after `LogOptions.bootstrap`, before the loops.
    /// Throws `ExitCode(1)` for a fault switch with a value it does not know.
    static func prepare(logger: Logger) throws {
        do {
            let change = try OpenFilesLimit.raiseToHard()
            logger.info("\(change.description)")
        } catch {
            logger.warning("open files: cannot raise the soft limit to the hard limit: \(error)")
        }
        #if DEBUG
            try armFaults(logger: logger)
        #endif
    }

    /// The loop count: `explicit` (`--workers`) or `file` (the configuration's `workers`)
    /// when given, else `WorkerDefault` (affinity mask and cgroup CPU quota). Logs one line
    /// with the number and why.
    static func workers(explicit: Int?, file: Int?, logger: Logger) -> Int {
        if let explicit {
            logger.info("workers=\(explicit) (--workers)")
            return explicit
        }
        if let file {
            logger.info("workers=\(file) (the configuration's workers)")
            return file
        }
        var root = "/sys/fs/cgroup"
        #if DEBUG
            if let override = Environment.value("SLUICE_CGROUP_ROOT") { root = override }
        #endif
        let chosen = WorkerDefault.current(cgroupRoot: root)
        logger.info("workers=\(chosen.count) (\(chosen.reason))")
        return chosen.count
    }

    #if DEBUG
        /// `SLUICE_FAULT_SPLICE=EINVAL|ENOSYS`: every splice fails so. `SLUICE_FAULT_PIPE_SIZE=EPERM`:
        /// every F_SETPIPE_SZ fails so. `SLUICE_FAULT_CRASH_AFTER_MS=N`: a thread of its own
        /// (made like a loop's, with `Threads.spawn`) traps with an index out of range N ms from
        /// now, to test that a trap ends the process.
        private static func armFaults(logger: Logger) throws {
            if let fault = Environment.value("SLUICE_FAULT_SPLICE") {
                guard fault == "EINVAL" || fault == "ENOSYS" else {
                    printError("SLUICE_FAULT_SPLICE must be EINVAL or ENOSYS")
                    throw ExitCode(1)
                }
                FaultInjection.spliceErrno = fault == "EINVAL" ? 22 : 38
                logger.warning("fault injection: every splice fails with \(fault)")
            }
            if let fault = Environment.value("SLUICE_FAULT_PIPE_SIZE") {
                guard fault == "EPERM" else {
                    printError("SLUICE_FAULT_PIPE_SIZE must be EPERM")
                    throw ExitCode(1)
                }
                FaultInjection.pipeSetSizeErrno = 1
                logger.warning("fault injection: every F_SETPIPE_SZ fails with \(fault)")
            }
            if let text = Environment.value("SLUICE_FAULT_CRASH_AFTER_MS") {
                guard let millis = Int(text), millis >= 0 else {
                    printError("SLUICE_FAULT_CRASH_AFTER_MS must be a number of milliseconds")
                    throw ExitCode(1)
                }
                logger.warning("fault injection: a thread traps (index out of range) in \(millis) ms")
                _ = Threads.spawn {
                    let start = MonotonicClock.nowMillis()
                    while MonotonicClock.nowMillis() - start < Int64(millis) {
                        Threads.sleep(millis: Int(Int64(millis) - (MonotonicClock.nowMillis() - start)))
                    }
                    let empty: [Int] = []
                    _ = empty[millis - millis + empty.count]
                }
            }
        }
    #endif
}
