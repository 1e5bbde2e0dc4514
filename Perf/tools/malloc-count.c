// LD_PRELOAD allocation counter: counts malloc, calloc, realloc, posix_memalign,
// aligned_alloc and memalign calls in the whole process, and prints the totals to stderr
// on SIGRTMIN+2 (SIGUSR2 reopens Sluice's access log, on its control thread), followed by
// one `malloc-thread: tid=T n=N openssl=M` line per thread that allocated (so a loop thread's
// allocations can be told from a log writer's). Used by Perf/alloc-count.sh to show how many
// allocations the data path makes per connection, per request and per megabyte forwarded.
//
// Each count is also split by caller: an allocation whose immediate caller (the hook's
// return address) lies in libcrypto or libssl is OpenSSL's own (`openssl=` on both kinds of
// line), so TLS records' buffers can be told from Sluice's allocations. The code ranges are
// read once, in the constructor, from the loaded objects.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_ulong n_malloc, n_calloc, n_realloc, n_memalign, n_openssl;

// Executable segments of libcrypto and libssl: [start, end).
#define MAX_RANGES 16
static uintptr_t range_start[MAX_RANGES], range_end[MAX_RANGES];
static int n_ranges;

static int is_openssl(const void *caller) {
    uintptr_t a = (uintptr_t)caller;
    for (int i = 0; i < n_ranges; i++)
        if (a >= range_start[i] && a < range_end[i]) return 1;
    return 0;
}

// Per thread: a slot taken on the thread's first allocation (initial-exec TLS: reading it
// never allocates).
#define MAX_THREADS 256
static atomic_int n_threads;
static pid_t thread_ids[MAX_THREADS];
static atomic_ulong thread_counts[MAX_THREADS];
static atomic_ulong thread_openssl[MAX_THREADS];
static __thread int thread_slot __attribute__((tls_model("initial-exec"))) = -1;

// CALLER: the hook's return address (taken in the hook itself, not here).
static inline void count_thread(const void *caller) {
    int openssl = is_openssl(caller);
    if (openssl) atomic_fetch_add_explicit(&n_openssl, 1, memory_order_relaxed);
    if (thread_slot < 0) {
        int slot = atomic_fetch_add_explicit(&n_threads, 1, memory_order_relaxed);
        if (slot >= MAX_THREADS) {
            thread_slot = MAX_THREADS;
            return;
        }
        thread_ids[slot] = (pid_t)syscall(SYS_gettid);
        thread_slot = slot;
    }
    if (thread_slot < MAX_THREADS) {
        atomic_fetch_add_explicit(&thread_counts[thread_slot], 1, memory_order_relaxed);
        if (openssl) atomic_fetch_add_explicit(&thread_openssl[thread_slot], 1, memory_order_relaxed);
    }
}
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

// dlsym itself may call calloc before real_calloc is known: serve it from a static arena.
static char bootstrap[4096];
static size_t bootstrap_used;

static void resolve(void) {
    if (real_malloc) return;
    real_calloc = NULL;
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
}

void *malloc(size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_malloc, 1, memory_order_relaxed);
    count_thread(__builtin_return_address(0));
    return real_malloc(size);
}

void *calloc(size_t count, size_t size) {
    if (!real_calloc) {
        size_t need = (count * size + 15) & ~(size_t)15;
        if (bootstrap_used + need > sizeof bootstrap) return NULL;
        void *p = bootstrap + bootstrap_used;
        bootstrap_used += need;
        memset(p, 0, need);
        return p;
    }
    atomic_fetch_add_explicit(&n_calloc, 1, memory_order_relaxed);
    count_thread(__builtin_return_address(0));
    return real_calloc(count, size);
}

void *realloc(void *p, size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_realloc, 1, memory_order_relaxed);
    count_thread(__builtin_return_address(0));
    return real_realloc(p, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_memalign, 1, memory_order_relaxed);
    count_thread(__builtin_return_address(0));
    return real_posix_memalign(out, alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_memalign, 1, memory_order_relaxed);
    count_thread(__builtin_return_address(0));
    return real_aligned_alloc(alignment, size);
}

void free(void *p) {
    static void (*real_free)(void *);
    if ((char *)p >= bootstrap && (char *)p < bootstrap + sizeof bootstrap) return;
    if (!real_free) real_free = dlsym(RTLD_NEXT, "free");
    real_free(p);
}

static void put_number(char **cursor, unsigned long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value);
    while (n) *(*cursor)++ = digits[--n];
}

static void put_text(char **cursor, const char *text) {
    while (*text) *(*cursor)++ = *text++;
}

// Async-signal-safe: formats by hand and writes once.
static void report(int sig) {
    (void)sig;
    static char line[192 + MAX_THREADS * 72];
    char *c = line;
    put_text(&c, "malloc-count: malloc=");
    put_number(&c, atomic_load(&n_malloc));
    put_text(&c, " calloc=");
    put_number(&c, atomic_load(&n_calloc));
    put_text(&c, " realloc=");
    put_number(&c, atomic_load(&n_realloc));
    put_text(&c, " memalign=");
    put_number(&c, atomic_load(&n_memalign));
    put_text(&c, " openssl=");
    put_number(&c, atomic_load(&n_openssl));
    put_text(&c, "\n");
    int threads = atomic_load(&n_threads);
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    for (int i = 0; i < threads; i++) {
        if (thread_ids[i] == 0) continue;  // taken, not yet filled in
        put_text(&c, "malloc-thread: tid=");
        put_number(&c, (unsigned long)thread_ids[i]);
        put_text(&c, " n=");
        put_number(&c, atomic_load(&thread_counts[i]));
        put_text(&c, " openssl=");
        put_number(&c, atomic_load(&thread_openssl[i]));
        put_text(&c, "\n");
    }
    ssize_t ignored = write(2, line, (size_t)(c - line));
    (void)ignored;
}

static int add_ranges(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    const char *name = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    name = name ? name + 1 : info->dlpi_name;
    if (!name || (strncmp(name, "libcrypto.so", 12) != 0 && strncmp(name, "libssl.so", 9) != 0)) return 0;
    for (int i = 0; i < info->dlpi_phnum && n_ranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        range_start[n_ranges] = info->dlpi_addr + ph->p_vaddr;
        range_end[n_ranges] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        n_ranges++;
    }
    return 0;
}

__attribute__((constructor)) static void install(void) {
    dl_iterate_phdr(add_ranges, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = report;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN + 2, &sa, NULL);
}
