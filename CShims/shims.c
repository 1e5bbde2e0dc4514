#define _GNU_SOURCE
#include "CShims.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>
#include <openssl/crypto.h>

#define RET(expr)                  \
    do {                           \
        long _r = (long)(expr);    \
        return _r < 0 ? -errno : _r; \
    } while (0)

const uint32_t SLUICE_EPOLLIN = EPOLLIN, SLUICE_EPOLLOUT = EPOLLOUT, SLUICE_EPOLLRDHUP = EPOLLRDHUP,
               SLUICE_EPOLLHUP = EPOLLHUP, SLUICE_EPOLLERR = EPOLLERR, SLUICE_EPOLLET = EPOLLET,
               SLUICE_EPOLLEXCLUSIVE = EPOLLEXCLUSIVE;
const int SLUICE_EPOLL_CTL_ADD = EPOLL_CTL_ADD, SLUICE_EPOLL_CTL_MOD = EPOLL_CTL_MOD,
          SLUICE_EPOLL_CTL_DEL = EPOLL_CTL_DEL;
const int SLUICE_SOL_SOCKET = SOL_SOCKET, SLUICE_SO_REUSEADDR = SO_REUSEADDR, SLUICE_SO_REUSEPORT = SO_REUSEPORT,
          SLUICE_SO_KEEPALIVE = SO_KEEPALIVE, SLUICE_SO_RCVBUF = SO_RCVBUF, SLUICE_SO_SNDBUF = SO_SNDBUF,
          SLUICE_IPPROTO_TCP = IPPROTO_TCP, SLUICE_TCP_NODELAY = TCP_NODELAY, SLUICE_IPPROTO_IPV6 = IPPROTO_IPV6,
          SLUICE_IPV6_V6ONLY = IPV6_V6ONLY, SLUICE_SHUT_RD = SHUT_RD, SLUICE_SHUT_WR = SHUT_WR,
          SLUICE_SHUT_RDWR = SHUT_RDWR, SLUICE_AF_INET = AF_INET, SLUICE_AF_INET6 = AF_INET6;
const int SLUICE_SIGHUP = SIGHUP, SLUICE_SIGINT = SIGINT, SLUICE_SIGTERM = SIGTERM, SLUICE_SIGUSR1 = SIGUSR1;
const int SLUICE_SIGUSR2 = SIGUSR2;

int sluice_epoll_create(void) { RET(epoll_create1(EPOLL_CLOEXEC)); }

int sluice_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    RET(epoll_ctl(epfd, op, fd, &ev));
}

int sluice_epoll_wait(int epfd, struct epoll_event *events, int max, int timeout_ms) {
    RET(epoll_wait(epfd, events, max, timeout_ms));
}

uint64_t sluice_epoll_event_data(const struct epoll_event *events, int index) { return events[index].data.u64; }
uint32_t sluice_epoll_event_mask(const struct epoll_event *events, int index) { return events[index].events; }
size_t sluice_epoll_event_size(void) { return sizeof(struct epoll_event); }

int sluice_eventfd(void) { RET(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }
int sluice_eventfd_write(int fd, uint64_t value) { RET(write(fd, &value, sizeof value)); }
int sluice_eventfd_read(int fd, uint64_t *value) { RET(read(fd, value, sizeof *value)); }

int sluice_socket(int family) { RET(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP)); }
int sluice_bind(int fd, const struct sockaddr *addr, socklen_t len) { RET(bind(fd, addr, len)); }
int sluice_listen(int fd, int backlog) { RET(listen(fd, backlog)); }

int sluice_accept(int fd, struct sockaddr_storage *addr, socklen_t *len) {
    RET(accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

int sluice_connect(int fd, const struct sockaddr *addr, socklen_t len) { RET(connect(fd, addr, len)); }

int sluice_getsockname(int fd, struct sockaddr_storage *addr, socklen_t *len) {
    RET(getsockname(fd, (struct sockaddr *)addr, len));
}

int sluice_setsockopt_int(int fd, int level, int name, int value) {
    RET(setsockopt(fd, level, name, &value, sizeof value));
}

int sluice_getsockopt_int(int fd, int level, int name, int *value) {
    socklen_t len = sizeof *value;
    RET(getsockopt(fd, level, name, value, &len));
}

int sluice_set_linger(int fd, int on, int seconds) {
    struct linger l = {.l_onoff = on, .l_linger = seconds};
    RET(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l));
}

int sluice_socket_error(int fd) {
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &len) < 0) return -errno;
    return value;
}

int sluice_shutdown(int fd, int how) { RET(shutdown(fd, how)); }

int sluice_close(int fd) {
    // Linux releases the descriptor even when close reports EINTR: never retry.
    int r = close(fd);
    return r < 0 && errno != EINTR ? -errno : 0;
}

ssize_t sluice_read(int fd, void *buf, size_t len) { RET(read(fd, buf, len)); }
ssize_t sluice_write(int fd, const void *buf, size_t len) { RET(write(fd, buf, len)); }
ssize_t sluice_send(int fd, const void *buf, size_t len) { RET(send(fd, buf, len, MSG_NOSIGNAL)); }

int sluice_pipe(int fds[2]) { RET(pipe2(fds, O_NONBLOCK | O_CLOEXEC)); }
int sluice_pipe_set_size(int fd, int size) { RET(fcntl(fd, F_SETPIPE_SZ, size)); }
int sluice_pipe_get_size(int fd) { RET(fcntl(fd, F_GETPIPE_SZ)); }

ssize_t sluice_splice(int fd_in, int fd_out, size_t len, int more) {
    unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0);
    RET(splice(fd_in, NULL, fd_out, NULL, len, flags));
}

int sluice_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return r == 0 ? 0 : -r;
}

int sluice_affinity_cpus(int *cpus, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) < 0) return -errno;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    return n;
}

static void control_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
}

int sluice_block_signals(void) {
    sigset_t set;
    control_signals(&set);
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    return r == 0 ? 0 : -r;
}

int sluice_wait_signal(void) {
    sigset_t set;
    control_signals(&set);
    int sig = 0;
    int r = sigwait(&set, &sig);
    return r == 0 ? sig : -r;
}

int sluice_ignore_sigpipe(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    RET(sigaction(SIGPIPE, &sa, NULL));
}

int64_t sluice_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sluice_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int sluice_io_uring_probe(void) {
    struct io_uring ring;
    int r = io_uring_queue_init(8, &ring, 0);
    if (r < 0) return r;
    io_uring_queue_exit(&ring);
    return 0;
}

const char *sluice_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }
