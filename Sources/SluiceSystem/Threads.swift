import CShims
import Glibc

/// Threads, CPU affinity and the control signals.
public enum Threads {
    private final class Box: @unchecked Sendable {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts a thread running `body`; `join` waits for it. The thread has an alternate
    /// signal stack while `body` runs, so the crash handler (`CrashHandler`) can report even
    /// a stack overflow on it; without one (out of memory) the thread runs all the same.
    public static func spawn(_ body: @escaping @Sendable () -> Void) -> ThreadHandle {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                _ = sluice_thread_altstack_install()
                box.body()
                sluice_thread_altstack_release()
                return nil
            }, box)
        precondition(result == 0, "pthread_create failed: \(Errno(rawValue: result))")
        return ThreadHandle(thread: thread)
    }

    /// Blocks the calling thread for about `millis` milliseconds (less when a signal arrives).
    /// Never on a loop thread.
    public static func sleep(millis: Int) {
        guard millis > 0 else { return }
        var request = timespec(tv_sec: millis / 1000, tv_nsec: (millis % 1000) * 1_000_000)
        _ = nanosleep(&request, nil)
    }

    /// The CPUs of this process's affinity mask, in order.
    public static func affinityCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let n = sluice_affinity_cpus(&cpus, 1024)
        return n > 0 ? cpus[0..<Int(n)].map(Int.init) : [0]
    }

    /// Pins the calling thread to `cpu`.
    @discardableResult
    public static func pinCurrent(to cpu: Int) -> Bool { sluice_pin_thread(Int32(cpu)) == 0 }

    /// Blocks SIGHUP, SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 in the calling thread (and the
    /// threads it starts afterwards), so that only `waitForSignal` sees them. SIGPIPE is ignored:
    /// writes report EPIPE instead.
    public static func takeOverSignals() {
        _ = sluice_block_signals()
        _ = sluice_ignore_sigpipe()
    }

    public static func waitForSignal() -> ControlSignal {
        while true {
            let sig = sluice_wait_signal()
            switch sig {
            case SLUICE_SIGHUP: return .reload
            case SLUICE_SIGINT, SLUICE_SIGTERM: return .stop
            case SLUICE_SIGUSR1: return .report
            case SLUICE_SIGUSR2: return .reopenLogs
            default: continue
            }
        }
    }
}

public enum ControlSignal: Sendable {
    /// SIGHUP: read the configuration (or the cluster) again.
    case reload
    /// SIGINT, SIGTERM: drain and exit.
    case stop
    /// SIGUSR1: log the loops' counters.
    case report
    /// SIGUSR2: reopen the access-log file (after logrotate moved it).
    case reopenLogs
}

public struct ThreadHandle: @unchecked Sendable {
    let thread: pthread_t
    public func join() { pthread_join(thread, nil) }
}

/// Facts about the platform, for logs and `sluice check`.
public enum Platform {
    /// Whether an io_uring instance can be created here (kernel support, not seccomp-blocked).
    public static var ioUringAvailable: Bool { sluice_io_uring_probe() == 0 }
    public static var openSSLVersion: String { String(cString: sluice_openssl_version()) }
    public static var pipeMaxSize: Int? {
        guard let file = fopen("/proc/sys/fs/pipe-max-size", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, 32, file) != nil else { return nil }
        let value = atoi(line)
        return value > 0 ? Int(value) : nil
    }
}

/// Unbuffered writes to the standard streams, for messages that must not wait in a buffer.
public enum FileOutput {
    /// Makes standard output line-buffered, also when it is a pipe or a file (stdio buffers
    /// whole blocks then, so `sluice demo | cat` would show nothing until exit). Call before
    /// the first write to standard output.
    public static func lineBufferStandardOutput() {
        _ = sluice_line_buffer_stdout()
    }

    public static func standardError(_ text: String) {
        var copy = text
        copy.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }
}

/// The process environment (for test switches such as fault injection).
public enum Environment {
    public static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}
