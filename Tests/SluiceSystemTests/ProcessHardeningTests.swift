import CShims
import Glibc
import Testing

@testable import SluiceSystem

@Suite struct ProcessHardeningTests {
    @Test func crashHandlerTakesEveryFatalSignal() throws {
        try CrashHandler.install()
        for signal in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT] {
            #expect(CrashHandler.isInstalled(signal: signal), "signal \(signal)")
            var action = sigaction()
            sigaction(signal, nil, &action)
            #expect(action.sa_flags & Int32(SA_ONSTACK) != 0)
            #expect(action.sa_flags & Int32(bitPattern: UInt32(SA_RESETHAND)) != 0)
        }
        #expect(!CrashHandler.isInstalled(signal: SIGTERM))
    }

    @Test func spawnedThreadsRunWithAnAlternateSignalStack() {
        final class Seen: @unchecked Sendable { var stack = stack_t() }
        let seen = Seen()
        Threads.spawn { sigaltstack(nil, &seen.stack) }.join()
        #expect(seen.stack.ss_flags & Int32(SS_DISABLE) == 0)
        #expect(seen.stack.ss_size >= 64 * 1024)
    }

    @Test func openFilesSoftLimitGoesToTheHardLimit() throws {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let change = try OpenFilesLimit.raiseToHard()
        #expect(change.after == change.hard)
        #expect(change.hard == UInt64(limit.rlim_max))
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #expect(UInt64(limit.rlim_cur) == change.hard)
        #expect(
            OpenFilesLimit.Change(before: 1024, after: 4096, hard: 4096).description
                == "open files: soft limit 1024 -> 4096 (the hard limit)")
        #expect(
            OpenFilesLimit.Change(before: 4096, after: 4096, hard: 4096).description
                == "open files: soft limit 4096 (the hard limit)")
    }
}
