// Process hardening: the crash handler, per-thread alternate signal stacks, the open-files
// limit (see CShims.h for the contracts).
//
// Why a handler of our own: the Swift runtime's backtracer, on a trap, parks the crashing
// thread for tens of seconds while it symbolicates, and the process keeps its listening
// ports without serving. A supervisor restarts a process only once it is gone, so a fatal
// signal here prints a short line and the raw frames and then dies of the same signal at
// once (exit status and core dump as without a handler).
//
// Async-signal safety: the handler calls write(2), backtrace(3), backtrace_symbols_fd(3),
// sigaction, pthread_sigmask and raise. backtrace is not on POSIX's list: its first call
// loads libgcc_s (dlopen, malloc). `sluice_install_crash_handler` makes that first call, so
// in the handler it only walks the stack; backtrace_symbols_fd writes each frame with
// write(2) and does not allocate. In practice this is what glibc-based servers rely on; a
// heap corrupted badly enough to break it is caught by the re-raise, which runs regardless
// of what the stack walk did.
#define _GNU_SOURCE
#include "CShims.h"

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static const int fatal_signals[] = {SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT};
#define FATAL_SIGNAL_COUNT (sizeof fatal_signals / sizeof fatal_signals[0])
#define BACKTRACE_FRAMES 64

// Enough for the handler, backtrace's unwinder and the dynamic linker's first lookups;
// MINSIGSTKSZ is far too small for the unwinder.
#define ALT_STACK_SIZE (64 * 1024)

static __thread void *alt_stack_mapping;  // guard page + stack, or NULL

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    default: return "signal";
    }
}

static void write_all(const char *text, size_t len) {
    while (len > 0) {
        ssize_t n = write(2, text, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        text += n;
        len -= (size_t)n;
    }
}

static void write_text(const char *text) { write_all(text, strlen(text)); }

// Decimal digits of `value` into `out` (at least 21 bytes), NUL-terminated; no stdio in a handler.
static void decimal(long value, char *out) {
    char digits[24];
    int n = 0;
    unsigned long v = value < 0 ? (unsigned long)(-value) : (unsigned long)value;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    int i = 0;
    if (value < 0) out[i++] = '-';
    while (n > 0) out[i++] = digits[--n];
    out[i] = 0;
}

// Hex digits of `value` into `out` (at least 17 bytes), NUL-terminated.
static void hexadecimal(uintptr_t value, char *out) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[value & 15];
        value >>= 4;
    } while (value > 0);
    int i = 0;
    while (n > 0) out[i++] = digits[--n];
    out[i] = 0;
}

static void on_fatal_signal(int sig, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    char number[24];
    write_text("sluice: fatal signal ");
    write_text(signal_name(sig));
    write_text(" (");
    decimal(sig, number);
    write_text(number);
    write_text(") on thread ");
    decimal((long)syscall(SYS_gettid), number);
    write_text(number);
    if (sig == SIGSEGV || sig == SIGBUS) {
        write_text(", address 0x");
        hexadecimal((uintptr_t)info->si_addr, number);
        write_text(number);
    }
    write_text("; backtrace:\n");
    void *frames[BACKTRACE_FRAMES];
    int count = backtrace(frames, BACKTRACE_FRAMES);
    backtrace_symbols_fd(frames, count, 2);
    write_text("sluice: exiting on ");
    write_text(signal_name(sig));
    write_text("\n");
    // SA_RESETHAND already restored the default action; make sure, then deliver the signal
    // again, unblocked, so the process ends of it (core dump and exit status as usual).
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    pthread_sigmask(SIG_UNBLOCK, &only, NULL);
    raise(sig);
    // Not reached for these signals; if it were, a synchronous fault would repeat on return.
    errno = saved;
    _exit(128 + sig);
}

int sluice_thread_altstack_install(void) {
    if (alt_stack_mapping != NULL) return 0;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    size_t total = (size_t)page + ALT_STACK_SIZE;
    void *mapping = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mapping == MAP_FAILED) return -errno;
    // The lowest page is a guard: an overflow of the signal stack faults instead of writing
    // into whatever lies below.
    if (mprotect(mapping, (size_t)page, PROT_NONE) < 0) {
        int e = errno;
        munmap(mapping, total);
        return -e;
    }
    stack_t stack;
    memset(&stack, 0, sizeof stack);
    stack.ss_sp = (char *)mapping + page;
    stack.ss_size = ALT_STACK_SIZE;
    stack.ss_flags = 0;
    if (sigaltstack(&stack, NULL) < 0) {
        int e = errno;
        munmap(mapping, total);
        return -e;
    }
    alt_stack_mapping = mapping;
    return 0;
}

void sluice_thread_altstack_release(void) {
    if (alt_stack_mapping == NULL) return;
    stack_t off;
    memset(&off, 0, sizeof off);
    off.ss_flags = SS_DISABLE;
    if (sigaltstack(&off, NULL) < 0) return;  // EPERM: running on it; keep the mapping
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    munmap(alt_stack_mapping, (size_t)page + ALT_STACK_SIZE);
    alt_stack_mapping = NULL;
}

int sluice_install_crash_handler(void) {
    // The first backtrace loads the unwinder (dlopen, malloc): do it now, not in a handler.
    void *warm[4];
    (void)backtrace(warm, 4);
    int r = sluice_thread_altstack_install();
    if (r < 0) return r;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    // A fault inside the handler (a stack walk gone wrong) is then forced with the default
    // action by the kernel: the process ends either way. SA_RESETHAND is process-wide, so a
    // second thread faulting meanwhile ends it too, without a second report.
    for (size_t i = 0; i < FATAL_SIGNAL_COUNT; i++) sigaddset(&sa.sa_mask, fatal_signals[i]);
    for (size_t i = 0; i < FATAL_SIGNAL_COUNT; i++) {
        if (sigaction(fatal_signals[i], &sa, NULL) < 0) return -errno;
    }
    return 0;
}

int sluice_crash_handler_installed(int sig) {
    struct sigaction current;
    if (sigaction(sig, NULL, &current) < 0) return -errno;
    return (current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_fatal_signal ? 1 : 0;
}

int sluice_raise_nofile_limit(uint64_t *before, uint64_t *after, uint64_t *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) return -errno;
    *before = (uint64_t)limit.rlim_cur;
    *hard = (uint64_t)limit.rlim_max;
    *after = *before;
    if (limit.rlim_cur == limit.rlim_max) return 0;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0) return -errno;
    *after = (uint64_t)limit.rlim_cur;
    return 0;
}

int sluice_line_buffer_stdout(void) { return setvbuf(stdout, NULL, _IOLBF, 0) == 0 ? 0 : -EINVAL; }
