// A counting allocator for nghttp2 sessions (see sluice_h2.h).
#include "include/sluice_h2.h"

#include <stdlib.h>

static int64_t total_allocations;
static int64_t total_frees;

static void count_allocation(void *user) {
    sluice_h2_counts *counts = user;
    counts->allocations += 1;
    __atomic_fetch_add(&total_allocations, 1, __ATOMIC_RELAXED);
}

static void *counting_malloc(size_t size, void *user) {
    count_allocation(user);
    return malloc(size);
}

static void counting_free(void *ptr, void *user) {
    if (ptr == NULL) return;
    sluice_h2_counts *counts = user;
    counts->frees += 1;
    __atomic_fetch_add(&total_frees, 1, __ATOMIC_RELAXED);
    free(ptr);
}

static void *counting_calloc(size_t nmemb, size_t size, void *user) {
    count_allocation(user);
    return calloc(nmemb, size);
}

static void *counting_realloc(void *ptr, size_t size, void *user) {
    count_allocation(user);
    return realloc(ptr, size);
}

void sluice_h2_mem_init(nghttp2_mem *mem, sluice_h2_counts *counts) {
    mem->mem_user_data = counts;
    mem->malloc = counting_malloc;
    mem->free = counting_free;
    mem->calloc = counting_calloc;
    mem->realloc = counting_realloc;
}

int64_t sluice_h2_total_allocations(void) { return __atomic_load_n(&total_allocations, __ATOMIC_RELAXED); }

int64_t sluice_h2_total_frees(void) { return __atomic_load_n(&total_frees, __ATOMIC_RELAXED); }
