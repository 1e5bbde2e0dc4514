# Sourced by the Perf scripts: logging, waiting for a port, and the processes a script starts,
# all stopped when it exits (Ctrl-C and SIGTERM included). Set BENCH_NAME (the log prefix)
# before sourcing.
# shellcheck shell=bash

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# need COMMAND-OR-FILE DEBIAN_PACKAGE: installs the package (as root) when the command or
# file is missing, or dies saying what to install.
need() { # need COMMAND-OR-FILE DEBIAN_PACKAGE
    { command -v "$1" >/dev/null 2>&1 || [ -e "$1" ]; } && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "$1 not found: apt-get install -y $2"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null 2>&1; } ||
            die "'apt-get install -y $2' failed"
        { command -v "$1" >/dev/null 2>&1 || [ -e "$1" ]; } || die "$1 still missing after installing $2"
    else
        die "$1 is missing: install the Debian package '$2' (apt-get install -y $2)"
    fi
}

PIDS=()
start_bg() { # start_bg LOGFILE CMD... ; sets BG_PID
    "${@:2}" >"$1" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}
sluice_ready() { # sluice_ready LOGFILE PID: waits up to 10 s for 'ready generation=1'; false if not
    for _ in $(seq 200); do
        grep -q 'ready generation=1' "$1" && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    grep -q 'ready generation=1' "$1"
}

wait_port() { # wait_port PORT [SECONDS]: true once 127.0.0.1:PORT accepts (default 10 s)
    local i
    for i in $(seq $((${2:-10} * 20))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

stop_pid() { # stop_pid PID: TERM, wait up to 3 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ the proxy's counters
# For http-bench.sh and tls-bench.sh: they set LIB, TLIB, PROXY_PID, LOAD_CPU, RUN_DIR, KEY,
# RESULTS, and SYSCOUNT=1 in their system-call round.
SYSCALL_NAMES="${SYSCALL_NAMES:-io_uring_enter read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl splice accept4 connect close shutdown socket setsockopt getsockopt ioctl clock_gettime futex}"
cpu_now() { # the proxy's (and its children's) "USER SYSTEM" CPU seconds
    "${LIB[@]}" cpu-tree "$PROXY_PID" 2>/dev/null || echo "0 0"
}
ctx_now() { # the proxy's (threads' and children's) context switches, voluntary + not
    "${LIB[@]}" ctx-tree "$PROXY_PID" 2>/dev/null || echo 0
}

PERF_PID=""
SYSCOUNT=0
SYSCALL_EVENTS="raw_syscalls:sys_enter"
for n in $SYSCALL_NAMES; do
    [ -e "/sys/kernel/tracing/events/syscalls/sys_enter_$n" ] || [ -e "/sys/kernel/debug/tracing/events/syscalls/sys_enter_$n" ] &&
        SYSCALL_EVENTS="$SYSCALL_EVENTS,syscalls:sys_enter_$n"
done
perf_start() { # perf_start LOAD: in the system-call round, count the proxy's calls during the load
    PERF_PID=""
    [ "$SYSCOUNT" = 1 ] || return 0
    taskset -c "$LOAD_CPU" perf stat -x, -e "$SYSCALL_EVENTS" -p "$("${TLIB[@]}" pids "$PROXY_PID")" \
        -o "$RUN_DIR/$KEY.$1.perf" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 0.3
}
perf_stop() { # perf_stop LOAD
    [ -n "$PERF_PID" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    "${TLIB[@]}" sys "$RESULTS" "$KEY.$1" "$RUN_DIR/$KEY.$1.perf" || true
    PERF_PID=""
}
syscall_round() { # one more round per mode with perf counting the proxy's calls (not in the CPU figures)
    log "system call round (perf stat on the proxy; figures not used for CPU)"
    SYSCOUNT=1
    ROUND=sys
    for m in $MODES; do run_mode "$m"; done
    SYSCOUNT=0
}
