// LD_PRELOAD allocation counter: counts malloc, calloc, realloc, posix_memalign,
// aligned_alloc and memalign calls in the whole process, and prints the totals to stderr
// on SIGRTMIN+2 (SIGUSR2 reopens Sluice's access log, on its control thread). Used by
// Perf/alloc-count.sh to show how many allocations the data path makes per connection and
// per megabyte forwarded.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong n_malloc, n_calloc, n_realloc, n_memalign;
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
    return real_calloc(count, size);
}

void *realloc(void *p, size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_realloc, 1, memory_order_relaxed);
    return real_realloc(p, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_memalign, 1, memory_order_relaxed);
    return real_posix_memalign(out, alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    resolve();
    atomic_fetch_add_explicit(&n_memalign, 1, memory_order_relaxed);
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
    char line[160];
    char *c = line;
    put_text(&c, "malloc-count: malloc=");
    put_number(&c, atomic_load(&n_malloc));
    put_text(&c, " calloc=");
    put_number(&c, atomic_load(&n_calloc));
    put_text(&c, " realloc=");
    put_number(&c, atomic_load(&n_realloc));
    put_text(&c, " memalign=");
    put_number(&c, atomic_load(&n_memalign));
    put_text(&c, "\n");
    ssize_t ignored = write(2, line, (size_t)(c - line));
    (void)ignored;
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = report;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN + 2, &sa, NULL);
}
