// A bounded wait for the control signals (the drain delay ends early on a second SIGTERM).
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "CShims.h"

int sluice_wait_signal_timeout(int millis) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    long long end = (long long)deadline.tv_sec * 1000 + deadline.tv_nsec / 1000000 + millis;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left = end - ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
        if (left <= 0) return 0;
        struct timespec wait = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000};
        int sig = sigtimedwait(&set, NULL, &wait);
        if (sig > 0) return sig;
        if (errno == EAGAIN) return 0;
        if (errno != EINTR) return -errno;
    }
}
