#!/usr/bin/env bash
# Kubernetes benchmark: `sluice kube` against the fake API server (Tests/Integration/fake_kube.py)
# holding SERVICES annotated Services × EPS endpoints. Measures event → serving latency, the
# table's resident memory, and a burst of endpoint updates under wrk load (Perf/kube_bench.py).
# Every parameter is an environment variable (defaults in kube_bench.py and below).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

export SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build-kperf/release/sluice}"
export ORIGIN_PORT="${ORIGIN_PORT:-17290}"
export EPS="${EPS:-10}"
# The origin's addresses, for the Services that answer (new ones and the burst target): at least 10.
export LIVE_EPS="${LIVE_EPS:-$(( EPS > 10 ? EPS : 10 ))}"
export PROXY_CPU="${PROXY_CPU:-1}"
export LOAD_CPU="${LOAD_CPU:-0}"
# PHASES: which parts run, of "memory latency" (both by default).
BUILD="${BUILD:-auto}"          # auto: build the release binary if SLUICE_BIN is missing; 1: always; 0: never
OUT_DIR="${OUT_DIR:-$HERE/out}"
export RUN_DIR="$OUT_DIR/kube-$(date +%Y%m%d-%H%M%S)"
RESULTS="$RUN_DIR/results.txt"

log() { printf '[kube-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need() { # need COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "$1 not found: apt-get install -y $2"
        apt-get install -y "$2" >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; } ||
            die "$1 is missing and 'apt-get install -y $2' failed"
    else
        die "$1 is missing: install the Debian package '$2'"
    fi
}
need python3 python3
need taskset util-linux
need wrk wrk
need nginx nginx-light
need openssl openssl

if [ "$BUILD" = 1 ] || { [ "$BUILD" = auto ] && [ ! -x "$SLUICE_BIN" ]; }; then
    log "building: swift build -c release --scratch-path .build-kperf --product sluice"
    (cd "$ROOT" && swift build -c release --scratch-path .build-kperf --product sluice) >&2
fi
[ -x "$SLUICE_BIN" ] || die "no sluice binary at $SLUICE_BIN"
"$SLUICE_BIN" --help 2>&1 | grep -qE '^\s+kube\b' || die "$SLUICE_BIN has no 'kube' subcommand"
ulimit -n "$(ulimit -Hn)"
mkdir -p "$RUN_DIR/origin/tmp"

# ------------------------------------------------------------------ origin: nginx on 127.0.0.1..EPS
PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

O="$RUN_DIR/origin"
listens=""
for i in $(seq 1 "$LIVE_EPS"); do listens+="        listen 127.0.0.$i:$ORIGIN_PORT backlog=4096;"$'\n'; done
cat >"$O/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $O/nginx.pid;
error_log $O/error.log warn;
events { worker_connections 8192; use epoll; }
http {
    access_log off;
    client_body_temp_path $O/tmp;
    proxy_temp_path $O/tmp;
    fastcgi_temp_path $O/tmp;
    uwsgi_temp_path $O/tmp;
    scgi_temp_path $O/tmp;
    keepalive_requests 1000000;
    server {
$listens
        location / { add_header X-Addr \$server_addr always; return 200 "ok\n"; }
    }
}
CONF
taskset -c "$LOAD_CPU" nginx -p "$O" -c "$O/nginx.conf" -e "$O/error.log" >"$O/stderr.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.$LIVE_EPS/$ORIGIN_PORT") 2>/dev/null && break; sleep 0.05; done
(exec 3<>"/dev/tcp/127.0.0.$LIVE_EPS/$ORIGIN_PORT") 2>/dev/null || die "origin nginx did not start ($O/error.log)"

# ------------------------------------------------------------------ versions
put() { python3 "$HERE/benchlib.py" put "$RESULTS" "$1" "$2"; }
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.sluice "$SLUICE_BIN ($(stat -c %y "$SLUICE_BIN" | cut -d. -f1), sha256 $(sha256sum "$SLUICE_BIN" | cut -c1-12))"
put meta.wrk "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
put meta.nginx "$(nginx -v 2>&1 | head -1 | sed 's/^nginx version: //')"
put meta.python "$(python3 --version)"
put meta.kernel "$(uname -r)"
put meta.loadavg "$(cut -d' ' -f1-3 /proc/loadavg)"

log "output: $RUN_DIR"
for phase in ${PHASES:-memory latency}; do python3 "$HERE/kube_bench.py" "$phase"; done
python3 "$HERE/kube_bench.py" report | tee "$RUN_DIR/report.md"
