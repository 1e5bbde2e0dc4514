// HTTP/2 framing through libnghttp2 (h2.c): the library's API, and a counting allocator so a
// session's memory use can be measured.
#ifndef SLUICE_H2_H
#define SLUICE_H2_H

#include <stdint.h>
#include <nghttp2/nghttp2.h>

// Allocation counters of one nghttp2 session, updated by the allocator `sluice_h2_mem_init`
// fills in. Owned by the session's wrapper; lives as long as the nghttp2 session.
typedef struct sluice_h2_counts {
    int64_t allocations;  // calls to malloc, calloc and realloc made by nghttp2
    int64_t frees;  // calls to free with a non-NULL pointer
} sluice_h2_counts;

// Fills `mem` with an allocator (malloc/free underneath) that counts into `counts` and into
// the process-wide totals. nghttp2 copies `mem` at session creation; `counts` must outlive
// the session.
void sluice_h2_mem_init(nghttp2_mem *mem, sluice_h2_counts *counts);
// Process-wide totals over every session (relaxed atomics; any thread).
int64_t sluice_h2_total_allocations(void);
int64_t sluice_h2_total_frees(void);

#endif
