import Glibc

/// Lets the control thread wait until every loop has done something (taken a new routing
/// table), so that "reloaded" is logged only once it is true on every loop.
public final class CountdownLatch: @unchecked Sendable {
    // SAFETY (@unchecked Sendable): `remaining` is read and written only under `mutex`.
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var remaining: Int

    public init(count: Int) {
        remaining = count
        pthread_mutex_init(&mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(&condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    public func countDown() {
        pthread_mutex_lock(&mutex)
        remaining -= 1
        if remaining <= 0 { pthread_cond_broadcast(&condition) }
        pthread_mutex_unlock(&mutex)
    }

    /// Waits until the count reaches zero or `timeoutMillis` pass; true when it reached zero.
    public func wait(timeoutMillis: Int64) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = Int64(now.tv_nsec) + (timeoutMillis % 1000) * 1_000_000
        var deadline = timespec(
            tv_sec: now.tv_sec + Int(timeoutMillis / 1000) + Int(total / 1_000_000_000),
            tv_nsec: Int(total % 1_000_000_000))
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while remaining > 0 {
            if pthread_cond_timedwait(&condition, &mutex, &deadline) == ETIMEDOUT { return remaining <= 0 }
        }
        return true
    }
}
