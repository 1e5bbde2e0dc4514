import CShims

extension Threads {
    /// Like `waitForSignal`, but for at most `millis`: nil when none arrived in that time.
    public static func waitForSignal(timeoutMillis millis: Int) -> ControlSignal? {
        let start = MonotonicClock.nowMillis()
        while true {
            let left = Int64(millis) - (MonotonicClock.nowMillis() - start)
            guard left > 0 else { return nil }
            let sig = sluice_wait_signal_timeout(Int32(left))
            switch sig {
            case 0: return nil
            case SLUICE_SIGHUP: return .reload
            case SLUICE_SIGINT, SLUICE_SIGTERM: return .stop
            case SLUICE_SIGUSR1: return .report
            case SLUICE_SIGUSR2: return .reopenLogs
            default: continue
            }
        }
    }
}
