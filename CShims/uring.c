#define _GNU_SOURCE
#include "sluice_uring.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

const uint32_t SLUICE_CQE_F_BUFFER = IORING_CQE_F_BUFFER, SLUICE_CQE_F_MORE = IORING_CQE_F_MORE,
               SLUICE_CQE_BUFFER_SHIFT = IORING_CQE_BUFFER_SHIFT;
const uint32_t SLUICE_POLLIN = POLLIN, SLUICE_POLLOUT = POLLOUT, SLUICE_POLLRDHUP = POLLRDHUP;

struct sluice_uring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    unsigned char *buffers;
    size_t buffers_bytes;
    uint32_t buffer_count;
    uint32_t buffer_size;
    uint32_t mask;
    int added;  // recycled buffers not yet published
};

static const int needed_ops[] = {
    IORING_OP_RECV, IORING_OP_SEND, IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_POLL_ADD,
    IORING_OP_ASYNC_CANCEL, IORING_OP_CLOSE,
};
static const char *needed_names[] = {"RECV", "SEND", "ACCEPT", "CONNECT", "POLL_ADD", "ASYNC_CANCEL", "CLOSE"};

static int setup_ring(struct io_uring *ring, unsigned entries, int *setup) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
    p.cq_entries = entries * 4;
    p.flags |= IORING_SETUP_CQSIZE;
    int r = io_uring_queue_init_params(entries, ring, &p);
    *setup = 2;
    if (r == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        r = io_uring_queue_init_params(entries, ring, &p);
        *setup = 1;
    }
    if (r == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        r = io_uring_queue_init_params(entries, ring, &p);
        *setup = 0;
    }
    return r;
}

sluice_uring *sluice_uring_create(unsigned entries, unsigned buffers, unsigned buffer_size, int *err,
                                  const char **why, int *setup) {
    sluice_uring *u = calloc(1, sizeof *u);
    if (!u) {
        *err = -ENOMEM;
        *why = "allocation";
        return NULL;
    }
    int r = setup_ring(&u->ring, entries, setup);
    if (r < 0) {
        free(u);
        *err = r;
        *why = "io_uring_setup";
        return NULL;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
    if (!probe) {
        io_uring_queue_exit(&u->ring);
        free(u);
        *err = -ENOSYS;
        *why = "opcode probe";
        return NULL;
    }
    for (size_t i = 0; i < sizeof needed_ops / sizeof needed_ops[0]; i++) {
        if (!io_uring_opcode_supported(probe, needed_ops[i])) {
            io_uring_free_probe(probe);
            io_uring_queue_exit(&u->ring);
            free(u);
            *err = -ENOSYS;
            *why = needed_names[i];
            return NULL;
        }
    }
    io_uring_free_probe(probe);
    u->buffer_count = buffers;
    u->buffer_size = buffer_size;
    u->mask = io_uring_buf_ring_mask(buffers);
    u->br_bytes = buffers * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    u->buffers_bytes = (size_t)buffers * buffer_size;
    void *mem = mmap(NULL, u->buffers_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED || mem == MAP_FAILED) {
        if (br != MAP_FAILED) munmap(br, u->br_bytes);
        if (mem != MAP_FAILED) munmap(mem, u->buffers_bytes);
        io_uring_queue_exit(&u->ring);
        free(u);
        *err = -ENOMEM;
        *why = "buffer memory";
        return NULL;
    }
    u->br = br;
    u->buffers = mem;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)u->br;
    reg.ring_entries = buffers;
    reg.bgid = 0;
    r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r < 0) {
        munmap(u->br, u->br_bytes);
        munmap(u->buffers, u->buffers_bytes);
        io_uring_queue_exit(&u->ring);
        free(u);
        *err = r;
        *why = "provided buffer ring";
        return NULL;
    }
    for (uint32_t i = 0; i < buffers; i++) {
        io_uring_buf_ring_add(u->br, u->buffers + (size_t)i * buffer_size, buffer_size, (unsigned short)i, u->mask,
                              (int)i);
    }
    io_uring_buf_ring_advance(u->br, (int)buffers);
    return u;
}

int sluice_uring_start(sluice_uring *u) {
    // liburing 2.3 declares io_uring_enable_rings but does not export it.
    long e = syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (e < 0) return -errno;
    int r;
    r = io_uring_register_ring_fd(&u->ring);
    return r < 0 ? r : 0;
}

void sluice_uring_destroy(sluice_uring *u) {
    if (!u) return;
    io_uring_queue_exit(&u->ring);
    munmap(u->br, u->br_bytes);
    munmap(u->buffers, u->buffers_bytes);
    free(u);
}

int sluice_uring_probe(const char **why, int *setup) {
    int err = 0;
    sluice_uring *u = sluice_uring_create(8, 8, 4096, &err, why, setup);
    if (!u) return err;
    int r = sluice_uring_start(u);
    if (r < 0) *why = "enabling the ring";
    sluice_uring_destroy(u);
    return r;
}

void *sluice_uring_buffer(sluice_uring *u, uint32_t bid) { return u->buffers + (size_t)bid * u->buffer_size; }

uint32_t sluice_uring_buffer_size(const sluice_uring *u) { return u->buffer_size; }

void sluice_uring_recycle(sluice_uring *u, uint32_t bid) {
    io_uring_buf_ring_add(u->br, u->buffers + (size_t)bid * u->buffer_size, u->buffer_size, (unsigned short)bid,
                          u->mask, u->added);
    u->added++;
}

static inline void publish(sluice_uring *u) {
    if (u->added) {
        io_uring_buf_ring_advance(u->br, u->added);
        u->added = 0;
    }
}

static struct io_uring_sqe *entry(sluice_uring *u) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe) return sqe;
    publish(u);
    io_uring_submit(&u->ring);
    return io_uring_get_sqe(&u->ring);
}

int sluice_uring_recv_multishot(sluice_uring *u, int fd, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_accept_multishot(sluice_uring *u, int fd, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_send(sluice_uring *u, int fd, const void *buf, uint32_t len, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_connect(sluice_uring *u, int fd, const struct sockaddr *addr, socklen_t len, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    io_uring_prep_connect(sqe, fd, addr, len);
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_poll(sluice_uring *u, int fd, uint32_t mask, int multishot, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    if (multishot) {
        io_uring_prep_poll_multishot(sqe, fd, mask);
    } else {
        io_uring_prep_poll_add(sqe, fd, mask);
    }
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_close(sluice_uring *u, int fd, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_cancel(sluice_uring *u, uint64_t target, uint64_t data) {
    struct io_uring_sqe *sqe = entry(u);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, data);
    return 0;
}

int sluice_uring_submit_wait(sluice_uring *u, int timeout_ms, sluice_cqe *out, int capacity) {
    publish(u);
    int r;
    if (timeout_ms < 0) {
        r = io_uring_submit_and_wait(&u->ring, 1);
    } else if (timeout_ms == 0) {
        r = io_uring_submit_and_get_events(&u->ring);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        struct io_uring_cqe *first = NULL;
        r = io_uring_submit_and_wait_timeout(&u->ring, &first, 1, &ts, NULL);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) return r;
    int n = 0;
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        if (n == capacity) break;
        out[n].data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
    }
    io_uring_cq_advance(&u->ring, (unsigned)n);
    return n;
}

int sluice_getpeername(int fd, struct sockaddr_storage *addr, socklen_t *len) {
    int r = getpeername(fd, (struct sockaddr *)addr, len);
    return r < 0 ? -errno : r;
}
