#!/usr/bin/env bash
# CPU flame graph of sluice (or, for reference, HAProxy) under wrk load. Builds nothing.
#   Perf/flamegraph.sh [SLUICE_BINARY]
# Environment (defaults in brackets):
#   SLUICE_BIN     binary to profile [.build/release/sluice]; the first argument overrides it
#   TARGET         sluice | haproxy [sluice]  (haproxy: same topology, mode tcp, nbthread 1, splice)
#   CONFIG         a sluice YAML config to use instead of the generated one; then set URL too
#   URL            what wrk requests [http://127.0.0.1:$PROXY_PORT/ via the generated config]
#   DURATION       seconds recorded by perf [15]
#   WRK_CONNS      wrk -c [50]     WRK_THREADS  wrk -t [1]
#   LOAD           close | keepalive [close]  (close: "Connection: close", a new connection per request)
#   FREQ           perf -F [999]
#   CALLGRAPH      fp | dwarf [fp]  (perf -g, or --call-graph dwarf when a caller is missing)
#   PROXY_CPU / LOAD_CPU  CPUs for the proxy / for wrk and nginx [1 / 0]
#   BASE_PORT      [17100]
#   OUT_DIR        [Perf/out]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SLUICE_BIN="${1:-${SLUICE_BIN:-$ROOT/.build/release/sluice}}"
TARGET="${TARGET:-sluice}"
CONFIG="${CONFIG:-}"
DURATION="${DURATION:-15}"
WRK_CONNS="${WRK_CONNS:-50}"
WRK_THREADS="${WRK_THREADS:-1}"
LOAD="${LOAD:-close}"
FREQ="${FREQ:-999}"
CALLGRAPH="${CALLGRAPH:-fp}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
BASE_PORT="${BASE_PORT:-17100}"
OUT_DIR="${OUT_DIR:-$HERE/out}"
HTTP_PORT=$((BASE_PORT + 1))
PROXY_PORT=$((BASE_PORT + 2))
[ -z "$CONFIG" ] || [ -n "${URL:-}" ] || { echo "flamegraph: with CONFIG, set URL to what wrk should request" >&2; exit 1; }
URL="${URL:-http://127.0.0.1:$PROXY_PORT/}"

STAMP="$(date +%Y%m%d-%H%M%S)"
RUN_DIR="$OUT_DIR/flame-$TARGET-$STAMP"

BENCH_NAME=flamegraph
# shellcheck source=Perf/procs.sh
source "$HERE/procs.sh"

need python3 python3
need taskset util-linux
need wrk wrk
need perf linux-perf
[ -n "$CONFIG" ] || need nginx nginx-light
[ "$TARGET" = haproxy ] && need haproxy haproxy
DEMANGLE=(cat)
if command -v swift >/dev/null 2>&1 && swift demangle --simplified </dev/null >/dev/null 2>&1; then
    DEMANGLE=(swift demangle --simplified)
else
    log "warning: 'swift demangle' not available, Swift names stay mangled"
fi
case "$TARGET" in
sluice) [ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN (build it first; this script builds nothing)" ;;
haproxy) ;;
*) die "TARGET must be sluice or haproxy" ;;
esac
[ -z "$CONFIG" ] || [ -f "$CONFIG" ] || die "config not found: $CONFIG"
[ -z "$CONFIG" ] || [ "$TARGET" = sluice ] || die "CONFIG is only for TARGET=sluice"

mkdir -p "$RUN_DIR"
ulimit -n "$(ulimit -Hn)"
log "output: $RUN_DIR"


# origin: nginx, one worker, small static body (unless a config of one's own is given)
if [ -z "$CONFIG" ]; then
    mkdir -p "$RUN_DIR/nginx"
    printf 'hello from the origin\n' >"$RUN_DIR/nginx/index.html"
    cat >"$RUN_DIR/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $RUN_DIR/nginx/nginx.pid;
error_log $RUN_DIR/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; use epoll; }
http {
    access_log off;
    client_body_temp_path $RUN_DIR/nginx/tmp;
    proxy_temp_path $RUN_DIR/nginx/tmp;
    fastcgi_temp_path $RUN_DIR/nginx/tmp;
    uwsgi_temp_path $RUN_DIR/nginx/tmp;
    scgi_temp_path $RUN_DIR/nginx/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$HTTP_PORT backlog=4096;
        root $RUN_DIR/nginx;
        location / { index index.html; }
    }
}
EOF
    start_bg "$RUN_DIR/nginx/stderr.log" taskset -c "$LOAD_CPU" nginx -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" -e "$RUN_DIR/nginx/error.log"
    wait_port "$HTTP_PORT" 10 || die "nginx did not start (see $RUN_DIR/nginx/error.log)"
fi

# the proxy, on its own CPU
if [ "$TARGET" = sluice ]; then
    cfg="$CONFIG"
    if [ -z "$cfg" ]; then
        cfg="$RUN_DIR/sluice.yaml"
        cat >"$cfg" <<EOF
workers: 1
timeouts:
  connect: 5s
  client: 1m
  server: 1m
  tunnel: 1h
  drain: 1s
tuning:
  pipeSize: 1048576
  splice: true
listeners:
  - name: web
    address: 127.0.0.1:$PROXY_PORT
    protocol: tcp
    service: web
services:
  - name: web
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$HTTP_PORT" ]
EOF
    fi
    "$SLUICE_BIN" check --config "$cfg" >"$RUN_DIR/check.log" 2>&1 || die "sluice check failed: $(cat "$RUN_DIR/check.log")"
    workers=()
    [ -z "$CONFIG" ] && workers=(--workers 1)
    start_bg "$RUN_DIR/proxy.log" taskset -c "$PROXY_CPU" "$SLUICE_BIN" run --config "$cfg" "${workers[@]+"${workers[@]}"}" --log-level notice
    PROXY_PID=$BG_PID
    sluice_ready "$RUN_DIR/proxy.log" "$PROXY_PID" || die "sluice did not get ready (see $RUN_DIR/proxy.log)"
else
    cfg="$RUN_DIR/haproxy.cfg"
    cat >"$cfg" <<EOF
global
    nbthread 1
    tune.pipesize 1048576
defaults
    mode tcp
    option splice-request
    option splice-response
    timeout connect 5s
    timeout client 1m
    timeout server 1m
listen web
    bind 127.0.0.1:$PROXY_PORT
    server s1 127.0.0.1:$HTTP_PORT
EOF
    start_bg "$RUN_DIR/proxy.log" taskset -c "$PROXY_CPU" haproxy -db -f "$cfg"
    PROXY_PID=$BG_PID
fi
[ -n "$CONFIG" ] || wait_port "$PROXY_PORT" 10 || die "proxy not listening on :$PROXY_PORT (see $RUN_DIR/proxy.log)"
log "$TARGET pid $PROXY_PID on CPU $PROXY_CPU"

# load: wrk runs 2 s longer than the recording on both ends
hdr=()
[ "$LOAD" = close ] && hdr=(-H "Connection: close")
start_bg "$RUN_DIR/wrk.txt" taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$((DURATION + 3))s" "${hdr[@]+"${hdr[@]}"}" "$URL"
WRK_PID=$BG_PID
sleep 1
cg=(-g)
[ "$CALLGRAPH" = dwarf ] && cg=(--call-graph dwarf)
log "recording: perf record -F $FREQ ${cg[*]} -e cpu-clock -p $PROXY_PID for $DURATION s (load: $LOAD, wrk -c$WRK_CONNS)"
perf record -F "$FREQ" "${cg[@]}" -e cpu-clock -p "$PROXY_PID" -o "$RUN_DIR/perf.data" -- sleep "$DURATION" >"$RUN_DIR/perf-record.log" 2>&1 ||
    die "perf record failed: $(tail -3 "$RUN_DIR/perf-record.log")"
wait "$WRK_PID" 2>/dev/null || true

log "perf script | collapse | demangle | svg"
perf script -i "$RUN_DIR/perf.data" >"$RUN_DIR/perf.script" 2>"$RUN_DIR/perf-script.log" ||
    die "perf script failed: $(tail -3 "$RUN_DIR/perf-script.log")"
python3 "$HERE/flamegraph.py" collapse <"$RUN_DIR/perf.script" | "${DEMANGLE[@]}" >"$RUN_DIR/stacks.folded"
[ -s "$RUN_DIR/stacks.folded" ] || die "no samples recorded"
rps=$(sed -n 's/^Requests\/sec:[[:space:]]*//p' "$RUN_DIR/wrk.txt")
PROFILED="$(basename "$SLUICE_BIN")"
[ "$TARGET" = haproxy ] && PROFILED="$(haproxy -v | head -1 | cut -d' ' -f1-3)"
python3 "$HERE/flamegraph.py" svg \
    --title "$TARGET under wrk ($LOAD, -c$WRK_CONNS): perf cpu-clock -F $FREQ, ${DURATION}s" \
    --subtitle "$PROFILED on CPU $PROXY_CPU, ${rps:-?} req/s, $(date -u +%Y-%m-%dT%H:%MZ)" \
    <"$RUN_DIR/stacks.folded" >"$RUN_DIR/flamegraph.svg"
python3 "$HERE/flamegraph.py" top --n 30 <"$RUN_DIR/stacks.folded" >"$RUN_DIR/top.txt"
rm -f "$RUN_DIR/perf.script"   # large; perf.data stays for `perf report -i`
head -12 "$RUN_DIR/top.txt" >&2
cp "$RUN_DIR/flamegraph.svg" "$OUT_DIR/flamegraph-$TARGET-latest.svg"
log "wrk: ${rps:-?} req/s; folded stacks: $RUN_DIR/stacks.folded; top frames: $RUN_DIR/top.txt"
echo "$RUN_DIR/flamegraph.svg"
