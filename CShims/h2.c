// nghttp2's allocator (see sluice_h2.h): counting, and recycling blocks through a per-loop
// pool of size classes.
#include "include/sluice_h2.h"

#include <stdlib.h>
#include <string.h>

static int64_t total_allocations;
static int64_t total_frees;
static int64_t total_requests;

// Size classes: 32 B << k for k in 0..<SLUICE_H2_CLASSES (32 B ... 64 KiB). Larger blocks
// go straight to malloc.
#define SLUICE_H2_CLASSES 12
// Bytes of free blocks a pool keeps per class; frees beyond it go back to free().
#define SLUICE_H2_KEEP_BYTES (1 << 20)
// Every block starts with this header; the caller's bytes follow it (16-byte aligned).
typedef struct block_header {
    uint32_t size_class;  // 0..<SLUICE_H2_CLASSES, or LARGE
    uint32_t magic;
    uint64_t usable;  // bytes the caller may use
} block_header;
#define LARGE 0xFFFFFFFFu
#define MAGIC 0x5a1c3e2bu

typedef struct free_block { struct free_block *next; } free_block;

struct sluice_h2_pool {
    free_block *free_lists[SLUICE_H2_CLASSES];
    uint32_t free_counts[SLUICE_H2_CLASSES];
};

sluice_h2_pool *sluice_h2_pool_new(void) { return calloc(1, sizeof(sluice_h2_pool)); }

void sluice_h2_pool_free(sluice_h2_pool *pool) {
    if (pool == NULL) return;
    for (int k = 0; k < SLUICE_H2_CLASSES; k++) {
        free_block *b = pool->free_lists[k];
        while (b != NULL) {
            free_block *next = b->next;
            free((block_header *)b - 1);
            b = next;
        }
    }
    free(pool);
}

static inline size_t class_size(uint32_t k) { return (size_t)32 << k; }

static inline uint32_t class_of(size_t size) {
    uint32_t k = 0;
    while (k < SLUICE_H2_CLASSES && class_size(k) < size) k++;
    return k < SLUICE_H2_CLASSES ? k : LARGE;
}

// A block of at least `size` bytes for the caller; counts a call to malloc when the pool
// has none to give.
static void *take(sluice_h2_counts *counts, size_t size) {
    counts->requests += 1;
    __atomic_fetch_add(&total_requests, 1, __ATOMIC_RELAXED);
    sluice_h2_pool *pool = counts->pool;
    uint32_t k = class_of(size);
    if (pool != NULL && k != LARGE && pool->free_lists[k] != NULL) {
        free_block *b = pool->free_lists[k];
        pool->free_lists[k] = b->next;
        pool->free_counts[k] -= 1;
        return b;
    }
    counts->allocations += 1;
    __atomic_fetch_add(&total_allocations, 1, __ATOMIC_RELAXED);
    size_t bytes = (pool != NULL && k != LARGE) ? class_size(k) : size;
    block_header *h = malloc(sizeof(block_header) + bytes);
    if (h == NULL) return NULL;
    h->size_class = (pool != NULL && k != LARGE) ? k : LARGE;
    h->magic = MAGIC;
    h->usable = bytes;
    return h + 1;
}

static void give_back(sluice_h2_counts *counts, void *ptr) {
    if (ptr == NULL) return;
    block_header *h = (block_header *)ptr - 1;
    sluice_h2_pool *pool = counts->pool;
    uint32_t k = h->size_class;
    if (pool != NULL && k != LARGE && (size_t)pool->free_counts[k] * class_size(k) < SLUICE_H2_KEEP_BYTES) {
        free_block *b = ptr;
        b->next = pool->free_lists[k];
        pool->free_lists[k] = b;
        pool->free_counts[k] += 1;
        return;
    }
    counts->frees += 1;
    __atomic_fetch_add(&total_frees, 1, __ATOMIC_RELAXED);
    free(h);
}

static void *pooled_malloc(size_t size, void *user) { return take(user, size); }

static void pooled_free(void *ptr, void *user) { give_back(user, ptr); }

static void *pooled_calloc(size_t nmemb, size_t size, void *user) {
    if (size != 0 && nmemb > SIZE_MAX / size) return NULL;
    void *p = take(user, nmemb * size);
    if (p != NULL) memset(p, 0, nmemb * size);
    return p;
}

static void *pooled_realloc(void *ptr, size_t size, void *user) {
    if (ptr == NULL) return take(user, size);
    block_header *h = (block_header *)ptr - 1;
    if (h->usable >= size) return ptr;
    void *p = take(user, size);
    if (p == NULL) return NULL;
    memcpy(p, ptr, h->usable);
    give_back(user, ptr);
    return p;
}

void sluice_h2_mem_init(nghttp2_mem *mem, sluice_h2_counts *counts) {
    mem->mem_user_data = counts;
    mem->malloc = pooled_malloc;
    mem->free = pooled_free;
    mem->calloc = pooled_calloc;
    mem->realloc = pooled_realloc;
}

int64_t sluice_h2_total_allocations(void) { return __atomic_load_n(&total_allocations, __ATOMIC_RELAXED); }

int64_t sluice_h2_total_frees(void) { return __atomic_load_n(&total_frees, __ATOMIC_RELAXED); }

int64_t sluice_h2_total_requests(void) { return __atomic_load_n(&total_requests, __ATOMIC_RELAXED); }
