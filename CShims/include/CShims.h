// Thin C wrappers for the syscalls Sluice uses. Every function returns the syscall's result,
// or -errno on failure, so Swift never reads the thread-local errno. Symbols carry the
// `sluice_` prefix; macros and constants Swift cannot import become functions or consts.
#ifndef SLUICE_CSHIMS_H
#define SLUICE_CSHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <netinet/in.h>

// epoll
int sluice_epoll_create(void);
int sluice_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int sluice_epoll_wait(int epfd, struct epoll_event *events, int max, int timeout_ms);
uint64_t sluice_epoll_event_data(const struct epoll_event *events, int index);
uint32_t sluice_epoll_event_mask(const struct epoll_event *events, int index);
size_t sluice_epoll_event_size(void);

extern const uint32_t SLUICE_EPOLLIN, SLUICE_EPOLLOUT, SLUICE_EPOLLRDHUP, SLUICE_EPOLLHUP,
    SLUICE_EPOLLERR, SLUICE_EPOLLET, SLUICE_EPOLLEXCLUSIVE;
extern const int SLUICE_EPOLL_CTL_ADD, SLUICE_EPOLL_CTL_MOD, SLUICE_EPOLL_CTL_DEL;

// eventfd
int sluice_eventfd(void);
int sluice_eventfd_write(int fd, uint64_t value);
int sluice_eventfd_read(int fd, uint64_t *value);

// sockets
int sluice_socket(int family);  // non-blocking, close-on-exec TCP stream socket
int sluice_bind(int fd, const struct sockaddr *addr, socklen_t len);
int sluice_listen(int fd, int backlog);
// Accepts a non-blocking, close-on-exec connection; fills addr/len when not NULL.
int sluice_accept(int fd, struct sockaddr_storage *addr, socklen_t *len);
int sluice_connect(int fd, const struct sockaddr *addr, socklen_t len);
int sluice_getsockname(int fd, struct sockaddr_storage *addr, socklen_t *len);
int sluice_setsockopt_int(int fd, int level, int name, int value);
int sluice_getsockopt_int(int fd, int level, int name, int *value);
int sluice_set_linger(int fd, int on, int seconds);
int sluice_socket_error(int fd);  // SO_ERROR as a positive errno, 0, or -errno of getsockopt
int sluice_shutdown(int fd, int how);
int sluice_close(int fd);

extern const int SLUICE_SOL_SOCKET, SLUICE_SO_REUSEADDR, SLUICE_SO_REUSEPORT, SLUICE_SO_KEEPALIVE,
    SLUICE_SO_RCVBUF, SLUICE_SO_SNDBUF, SLUICE_IPPROTO_TCP, SLUICE_TCP_NODELAY, SLUICE_IPPROTO_IPV6,
    SLUICE_IPV6_V6ONLY, SLUICE_SHUT_RD, SLUICE_SHUT_WR, SLUICE_SHUT_RDWR, SLUICE_AF_INET, SLUICE_AF_INET6;

// reads and writes
ssize_t sluice_read(int fd, void *buf, size_t len);
ssize_t sluice_write(int fd, const void *buf, size_t len);
ssize_t sluice_send(int fd, const void *buf, size_t len);  // MSG_NOSIGNAL

// pipes and splice
int sluice_pipe(int fds[2]);  // non-blocking, close-on-exec
int sluice_pipe_set_size(int fd, int size);  // F_SETPIPE_SZ; returns the size granted
int sluice_pipe_get_size(int fd);
ssize_t sluice_splice(int fd_in, int fd_out, size_t len, int more);  // SPLICE_F_MOVE|NONBLOCK[|MORE]

// threads, signals, time
int sluice_pin_thread(int cpu);  // pins the calling thread to one CPU
int sluice_affinity_cpus(int *cpus, int max);  // CPUs of the process's affinity mask, in order
int sluice_block_signals(void);  // blocks SIGHUP SIGINT SIGTERM SIGUSR1 SIGUSR2 in the calling thread
int sluice_wait_signal(void);  // waits for one of them; returns the signal number
int sluice_ignore_sigpipe(void);
int64_t sluice_monotonic_ms(void);
int64_t sluice_monotonic_ns(void);
extern const int SLUICE_SIGHUP, SLUICE_SIGINT, SLUICE_SIGTERM, SLUICE_SIGUSR1, SLUICE_SIGUSR2;

// process hardening (process.c)
// Installs, for SIGILL SIGTRAP SIGSEGV SIGBUS SIGFPE SIGABRT, a handler that writes one line
// and the raw backtrace to fd 2 and then re-raises the signal with the default action (the
// process ends of it; a core may be dumped). SA_ONSTACK|SA_RESETHAND; gives the calling
// thread an alternate stack. Call from main after the language runtime's start-up, so it
// replaces the runtime's own handlers. 0 or -errno.
int sluice_install_crash_handler(void);
// 1 when the crash handler is the action for `sig`, 0 when not, -errno.
int sluice_crash_handler_installed(int sig);
// An alternate signal stack (64 KiB, below it a guard page) for the calling thread, so the
// crash handler runs even after a stack overflow. 0 (also when it has one) or -errno.
int sluice_thread_altstack_install(void);
// Disables and frees the calling thread's alternate stack (before the thread exits).
void sluice_thread_altstack_release(void);
// Raises the RLIMIT_NOFILE soft limit to the hard limit; fills the soft limit before and
// after, and the hard limit. 0 or -errno (then `after` is the unchanged soft limit).
int sluice_raise_nofile_limit(uint64_t *before, uint64_t *after, uint64_t *hard);
// Makes stdout line-buffered (before its first write). 0 or -EINVAL.
int sluice_line_buffer_stdout(void);

// io_uring availability (the io_uring backend is built on this shim)
int sluice_io_uring_probe(void);  // 0 when an io_uring instance can be created, -errno otherwise

// OpenSSL: the library version string, proving the link (termination builds on it)
const char *sluice_openssl_version(void);

#include "sluice_tls_context.h"
#include "sluice_tls_io.h"
#include "sluice_uring.h"
#include "sluice_h2.h"


// listener takeover and systemd notification (fd_passing.c); every call returns -errno on failure
#define SLUICE_MAX_PASSED_FDS 64
// Removes what is at `path`, binds a Unix stream socket there (mode 0600) and listens. fd.
int sluice_unix_listen(const char *path);
// A blocking connection to the Unix stream socket at `path`. fd.
int sluice_unix_connect(const char *path);
// A blocking accept on a Unix listening socket. fd.
int sluice_unix_accept(int fd);
// The pid of the process at the other end of a Unix socket.
int sluice_unix_peer_pid(int fd);
// The user id of the process at the other end of a Unix socket, into `uid`. 0.
int sluice_unix_peer_uid(int fd, unsigned int *uid);
// SO_RCVTIMEO and SO_SNDTIMEO. 0.
int sluice_set_timeouts(int fd, int millis);
// One sendmsg of `len` (> 0) bytes with `nfds` (0 to SLUICE_MAX_PASSED_FDS) descriptors
// attached (SCM_RIGHTS). Bytes sent.
long sluice_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);
// One recvmsg: bytes into `buf`, received descriptors (close-on-exec) into `fds`, their
// count into `nfds`. Bytes received (0: end of stream); -EMSGSIZE when descriptors were cut.
long sluice_recv_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds);
// Sends `state` to systemd's $NOTIFY_SOCKET. 1 sent, 0 when the variable is unset.
int sluice_sd_notify(const char *state);


// Waits up to `millis` for one of the control signals (blocked by sluice_block_signals);
// the signal number, 0 when the time ran out (signal_wait.c).
int sluice_wait_signal_timeout(int millis);

#endif
