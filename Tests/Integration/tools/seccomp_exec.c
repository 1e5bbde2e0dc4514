/*
 * seccomp_exec: run a program under a seccomp filter built with libseccomp.
 *
 *   seccomp_exec allow|deny ERRNO LIST -- PROGRAM [ARG...]
 *
 * "deny": every system call is denied with ERRNO except those named in LIST, which are
 * allowed: a Localhost profile's default action. LIST has one rule a line ('#' comments):
 * a name, or a name, an argument index and a value (the rule applies only when that argument
 * equals the value: SCMP_CMP_EQ, as a profile's "args" entry).
 * "allow": every system call is allowed except those named in LIST, denied with ERRNO: what
 * a runtime's default profile does to the calls it blocks.
 *
 * A name the native architecture does not know is an error (a typo in a profile must not
 * pass unnoticed). Built by Tests/Integration/test_seccomp.py with
 * `gcc -O2 -o seccomp_exec seccomp_exec.c -lseccomp`.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: seccomp_exec allow|deny ERRNO LIST -- PROGRAM [ARG...]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 6 || strcmp(argv[4], "--") != 0) return usage();
    int deny_by_default;
    if (strcmp(argv[1], "deny") == 0) {
        deny_by_default = 1;
    } else if (strcmp(argv[1], "allow") == 0) {
        deny_by_default = 0;
    } else {
        return usage();
    }
    char *end = NULL;
    long err = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || err <= 0 || err > 4095) return usage();
    FILE *list = fopen(argv[3], "r");
    if (!list) {
        fprintf(stderr, "seccomp_exec: %s: %s\n", argv[3], strerror(errno));
        return 2;
    }
    uint32_t deny = SCMP_ACT_ERRNO((uint32_t)err);
    scmp_filter_ctx ctx = seccomp_init(deny_by_default ? deny : SCMP_ACT_ALLOW);
    if (!ctx) {
        fprintf(stderr, "seccomp_exec: seccomp_init failed\n");
        return 2;
    }
    uint32_t listed = deny_by_default ? SCMP_ACT_ALLOW : deny;
    char line[256];
    int names = 0;
    while (fgets(line, sizeof line, list)) {
        line[strcspn(line, "#\r\n")] = '\0';
        char name[128];
        unsigned arg;
        unsigned long long value;
        int fields = sscanf(line, "%127s %u %llu", name, &arg, &value);
        if (fields <= 0) continue;
        if (fields == 2 || (fields == 3 && arg > 5)) {
            fprintf(stderr, "seccomp_exec: bad rule: %s\n", line);
            return 2;
        }
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) {
            fprintf(stderr, "seccomp_exec: unknown system call %s\n", name);
            return 2;
        }
        int r = fields == 3 ? seccomp_rule_add(ctx, listed, nr, 1, SCMP_CMP(arg, SCMP_CMP_EQ, value))
                            : seccomp_rule_add(ctx, listed, nr, 0);
        if (r < 0) {
            fprintf(stderr, "seccomp_exec: rule for %s: %s\n", name, strerror(-r));
            return 2;
        }
        names++;
    }
    fclose(list);
    int r = seccomp_load(ctx);
    if (r < 0) {
        fprintf(stderr, "seccomp_exec: seccomp_load: %s\n", strerror(-r));
        return 2;
    }
    seccomp_release(ctx);
    execv(argv[5], argv + 5);
    fprintf(stderr, "seccomp_exec: execv %s: %s (%d names listed)\n", argv[5], strerror(errno), names);
    return 127;
}
