#ifndef SLUICE_URING_H
#define SLUICE_URING_H

#include <stdint.h>
#include <sys/socket.h>

// One io_uring per event loop, with a ring of provided receive buffers (group 0). Every
// function is called from the loop's thread only, except create/destroy/probe, which the
// control thread may call before the loop starts. Preparing an operation only fills a
// submission entry: nothing reaches the kernel before `sluice_uring_submit_wait`.

typedef struct sluice_uring sluice_uring;

// One completion, copied out of the ring.
typedef struct {
    uint64_t data;
    int32_t res;
    uint32_t flags;
} sluice_cqe;

extern const uint32_t SLUICE_CQE_F_BUFFER, SLUICE_CQE_F_MORE, SLUICE_CQE_BUFFER_SHIFT;
extern const uint32_t SLUICE_POLLIN, SLUICE_POLLOUT, SLUICE_POLLRDHUP;

// A disabled ring of `entries` submission entries with `buffers` provided buffers of
// `buffer_size` bytes (a power of two count). On failure NULL, `*err` the negative errno and
// `*why` the step that failed. `*setup` tells which task-running mode the kernel took:
// 2 single issuer with deferred task work, 1 cooperative, 0 neither.
sluice_uring *sluice_uring_create(unsigned entries, unsigned buffers, unsigned buffer_size, int *err,
                                  const char **why, int *setup);
// On the loop thread, before the first submission: enables the ring for this thread and
// registers its descriptor. 0 or -errno.
int sluice_uring_start(sluice_uring *u);
void sluice_uring_destroy(sluice_uring *u);
// Whether this process may use io_uring as the loops would: 0, or -errno with `*why` naming
// the missing part (setup, the buffer ring, an opcode).
int sluice_uring_probe(const char **why, int *setup);

// The provided buffer `bid` (buffer_size bytes) and its return to the ring.
void *sluice_uring_buffer(sluice_uring *u, uint32_t bid);
void sluice_uring_recycle(sluice_uring *u, uint32_t bid);
uint32_t sluice_uring_buffer_size(const sluice_uring *u);

// Operations; 0, or -EBUSY when no submission entry is free even after submitting.
int sluice_uring_recv_multishot(sluice_uring *u, int fd, uint64_t data);
int sluice_uring_accept_multishot(sluice_uring *u, int fd, uint64_t data);
int sluice_uring_send(sluice_uring *u, int fd, const void *buf, uint32_t len, uint64_t data);
int sluice_uring_connect(sluice_uring *u, int fd, const struct sockaddr *addr, socklen_t len,
                         uint64_t data);
int sluice_uring_poll(sluice_uring *u, int fd, uint32_t mask, int multishot, uint64_t data);
// Closes `fd` after every operation prepared before it has taken its file: a socket with a
// send still unsubmitted is not cut short, and the number is not reused before that.
int sluice_uring_close(sluice_uring *u, int fd, uint64_t data);
// Cancels the operation whose user data is `target`; its own completion carries `data`.
int sluice_uring_cancel(sluice_uring *u, uint64_t target, uint64_t data);

// Submits what is prepared, waits up to `timeout_ms` (-1: no bound, 0: not at all) for a
// completion, and copies up to `capacity` completions out. Their count, or -errno.
int sluice_uring_submit_wait(sluice_uring *u, int timeout_ms, sluice_cqe *out, int capacity);

// The peer of an accepted socket (multishot accept gives no address). 0 or -errno.
int sluice_getpeername(int fd, struct sockaddr_storage *addr, socklen_t *len);

#endif
