// Unix-domain sockets for a listener takeover: listening sockets pass from one process to
// another with SCM_RIGHTS; and the systemd readiness notification.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "CShims.h"

static int unix_address(const char *path, struct sockaddr_un *addr, socklen_t *len) {
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(addr->sun_path)) return -ENAMETOOLONG;
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    memcpy(addr->sun_path, path, n);
    // A leading '@' names an abstract socket (systemd's NOTIFY_SOCKET may be one).
    if (path[0] == '@') addr->sun_path[0] = 0;
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
    return 0;
}

// A close-on-exec Unix socket of `type` and the address of `path`: the descriptor, or -errno.
static int unix_socket(const char *path, int type, struct sockaddr_un *addr, socklen_t *len) {
    int r = unix_address(path, addr, len);
    if (r < 0) return r;
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int sluice_unix_listen(const char *path) {
    struct sockaddr_un addr;
    socklen_t len;
    int r;
    int fd = unix_socket(path, SOCK_STREAM, &addr, &len);
    if (fd < 0) return fd;
    if (unlink(path) < 0 && errno != ENOENT) {
        int e = errno;
        close(fd);
        return -e;
    }
    mode_t old = umask(0077);
    r = bind(fd, (struct sockaddr *)&addr, len);
    umask(old);
    if (r < 0 || listen(fd, 8) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int sluice_unix_connect(const char *path) {
    struct sockaddr_un addr;
    socklen_t len;
    int r;
    int fd = unix_socket(path, SOCK_STREAM, &addr, &len);
    if (fd < 0) return fd;
    do {
        r = connect(fd, (struct sockaddr *)&addr, len);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int sluice_unix_accept(int fd) {
    int r;
    do {
        r = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int sluice_unix_peer_pid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    return (int)cred.pid;
}

int sluice_unix_peer_uid(int fd, unsigned int *uid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    *uid = (unsigned int)cred.uid;
    return 0;
}

int sluice_set_timeouts(int fd, int millis) {
    struct timeval tv = {.tv_sec = millis / 1000, .tv_usec = (millis % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) return -errno;
    return 0;
}

long sluice_send_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > SLUICE_MAX_PASSED_FDS || len == 0) return -EINVAL;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char bytes[CMSG_SPACE(sizeof(int) * SLUICE_MAX_PASSED_FDS)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    }
    long r;
    do {
        r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

long sluice_recv_fds(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds) {
    *nfds = 0;
    if (maxfds < 0 || maxfds > SLUICE_MAX_PASSED_FDS) return -EINVAL;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char bytes[CMSG_SPACE(sizeof(int) * SLUICE_MAX_PASSED_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.bytes, .msg_controllen = sizeof(control.bytes)};
    long r;
    do {
        r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(cmsg);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) {
                fds[(*nfds)++] = data[i];
            } else {
                close(data[i]);
            }
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        for (int i = 0; i < *nfds; i++) close(fds[i]);
        *nfds = 0;
        return -EMSGSIZE;
    }
    return r;
}

int sluice_sd_notify(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == 0) return 0;
    struct sockaddr_un addr;
    socklen_t len;
    int fd = unix_socket(path, SOCK_DGRAM, &addr, &len);
    if (fd < 0) return fd;
    int r = (int)sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
    int e = errno;
    close(fd);
    return r < 0 ? -e : 1;
}
