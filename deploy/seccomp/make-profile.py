#!/usr/bin/env python3
"""Writes deploy/seccomp/sluice-io-uring.json from the system calls trace.sh recorded.

    deploy/seccomp/trace.sh BINARY > traced.txt
    python3 deploy/seccomp/make-profile.py traced.txt
    python3 deploy/seccomp/make-profile.py --rules   # the profile as seccomp_exec's rules

The allowlist is what the trace saw, plus RUNTIME below: calls a container start and a
process's life make that a test run does not show (the runtime's own steps between loading
the filter and execve, exit, signal return, restarts after a signal, clock fallbacks when the
vDSO is not used, allocator paths). Everything else is denied with EPERM.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "sluice-io-uring.json"

RUNTIME = {
    # the runtime (runc, crun) after loading the filter, and the exec itself
    "execve", "capget", "capset", "prctl", "setgroups", "setresuid", "setresgid", "setuid",
    "setgid", "getuid", "geteuid", "getgid", "getegid", "getppid", "chdir", "fchdir", "getcwd",
    "close_range", "dup3", "fcntl", "fstat", "epoll_pwait", "nanosleep", "sched_yield",
    # process and thread life
    "exit", "exit_group", "rt_sigreturn", "restart_syscall", "tgkill", "getpid", "gettid",
    "set_robust_list", "rseq", "uname",
    # clocks (normally the vDSO) and memory
    "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "mremap",
    # io_uring itself, whichever step the probe stops at
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # SwiftNIO's gathering write (admin listener, API client) when several buffers wait
    "writev",
    # `kubectl exec POD -- kill -HUP 1` (a reload) runs under the pod's profile too
    "kill",
}

# Calls allowed only with these argument values (index, value): a log handler's terminal
# test is the only ioctl.
TCGETS = 0x5401
CONDITIONAL = {"ioctl": [(1, TCGETS)]}


def loader_rules(profile: dict) -> list:
    """The lines Tests/Integration/tools/seccomp_exec.c reads: NAME, or NAME INDEX VALUE."""
    out = []
    for rule in profile["syscalls"]:
        args = rule.get("args") or []
        cond = "".join(f" {a['index']} {a['value']}" for a in args)
        out += [name + cond for name in rule["names"]]
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "--rules":
        print("\n".join(loader_rules(json.loads(OUT.read_text()))))
        return 0
    traced = {l.strip() for l in Path(sys.argv[1]).read_text().splitlines() if l.strip()}
    names = sorted((traced | RUNTIME) - set(CONDITIONAL))
    rules = [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    for name, conditions in sorted(CONDITIONAL.items()):
        for index, value in conditions:
            rules.append({"names": [name], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": index, "value": value, "valueTwo": 0,
                                    "op": "SCMP_CMP_EQ"}]})
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    }
    OUT.write_text(json.dumps(profile, indent=2) + "\n")
    print(f"{OUT.name}: {len(names)} calls allowed, {len(CONDITIONAL)} with conditions "
          f"({len(traced)} traced, the rest added)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
