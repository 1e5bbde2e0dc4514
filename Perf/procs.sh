# Sourced by the Perf scripts: logging, and the processes a script starts, all stopped when
# it exits (Ctrl-C and SIGTERM included). Set BENCH_NAME (the log prefix) before sourcing.
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
