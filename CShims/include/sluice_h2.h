// HTTP/2 framing through libnghttp2 (h2.c): the library's API, and a counting allocator so a
// session's memory use can be measured.
#ifndef SLUICE_H2_H
#define SLUICE_H2_H

#include <stdint.h>
#include <nghttp2/nghttp2.h>

// Free blocks of nghttp2's allocations, by size class (32 B to 64 KiB), kept for reuse by the
// sessions of one event loop: in a steady state a stream costs no call to malloc. Not
// thread-safe: one loop thread uses it. Each class keeps at most 1 MiB of free blocks.
typedef struct sluice_h2_pool sluice_h2_pool;
sluice_h2_pool *sluice_h2_pool_new(void);
// Frees the pool's free blocks and the pool; no session using it may be deleted afterwards.
void sluice_h2_pool_free(sluice_h2_pool *pool);

// Allocation counters of one nghttp2 session, updated by the allocator `sluice_h2_mem_init`
// fills in. Owned by the session's wrapper; lives as long as the nghttp2 session.
typedef struct sluice_h2_counts {
    int64_t allocations;  // blocks taken from malloc (the pool had none to give)
    int64_t frees;  // blocks given back to free (the pool kept enough of their class)
    int64_t requests;  // calls nghttp2 made to malloc, calloc and realloc (growing a block)
    sluice_h2_pool *pool;  // where blocks come from and go back to; NULL: malloc and free only
} sluice_h2_counts;

// Fills `mem` with an allocator over `counts->pool` (malloc/free underneath) that counts
// into `counts` and into the process-wide totals. nghttp2 copies `mem` at session creation;
// `counts` and the pool must outlive the session.
void sluice_h2_mem_init(nghttp2_mem *mem, sluice_h2_counts *counts);
// Process-wide totals over every session (relaxed atomics; any thread): blocks taken from
// malloc, given back to free, and nghttp2's calls.
int64_t sluice_h2_total_allocations(void);
int64_t sluice_h2_total_frees(void);
int64_t sluice_h2_total_requests(void);

#endif
