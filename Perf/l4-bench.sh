#!/usr/bin/env bash
# L4 benchmark: direct vs HAProxy 2.6 (default pipes, 1 MiB pipes) vs sluice, on loopback.
# See Perf/README.md. Every parameter is an environment variable (defaults below).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build/release/sluice}"
MODES="${MODES:-direct haproxy-default haproxy-tuned sluice}"
# sluice-base: another Sluice binary (SLUICE_BASE_BIN, e.g. a build of an earlier commit), same
# configuration, for before/after comparisons in one run
SLUICE_BASE_BIN="${SLUICE_BASE_BIN:-}"
# sluice-epoll / sluice-uring: SLUICE_BIN with --io-backend epoll / io_uring (the ready line
# must name the backend asked for, else the mode fails)
PROXY_CPU="${PROXY_CPU:-1}"          # the proxy runs here
LOAD_CPU="${LOAD_CPU:-0}"            # iperf3, wrk, nginx, python clients/servers run here
ROUNDS="${ROUNDS:-3}"                # every mode this many times, interleaved; median reported
BULK_SECS="${BULK_SECS:-5}"          # iperf3 -t, per direction
BULK_PARALLEL="${BULK_PARALLEL:-1}"  # iperf3 -P
SHORT_SECS="${SHORT_SECS:-5}"        # wrk -d
SHORT_WARMUP="${SHORT_WARMUP:-1}"    # seconds of wrk before the measured run
WRK_THREADS="${WRK_THREADS:-1}"
WRK_CONNS="${WRK_CONNS:-50}"
IDLE_CONNS="${IDLE_CONNS:-9000}"     # open-files limit is 20000 per process: keep < ~9500
IDLE_BATCH="${IDLE_BATCH:-100}"      # idle connections opened before waiting for the backend
IDLE_SETTLE="${IDLE_SETTLE:-1}"      # seconds between "all established" and reading RSS
SLUICE_PIPE_SIZE="${SLUICE_PIPE_SIZE:-1048576}"
HAPROXY_TUNED_PIPESIZE="${HAPROXY_TUNED_PIPESIZE:-1048576}"
BASE_PORT="${BASE_PORT:-17000}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

# backends (origins)
IPERF_PORT=$((BASE_PORT + 1))
HTTP_PORT=$((BASE_PORT + 2))
IDLE_PORT=$((BASE_PORT + 3))
# proxy listeners
P_IPERF=$((BASE_PORT + 11))
P_HTTP=$((BASE_PORT + 12))
P_IDLE=$((BASE_PORT + 13))

STAMP="$(date +%Y%m%d-%H%M%S)"
RUN_DIR="$OUT_DIR/l4-$STAMP"
RESULTS="$RUN_DIR/results.txt"
LIB=(python3 "$HERE/benchlib.py")

BENCH_NAME=l4-bench
# shellcheck source=Perf/procs.sh
source "$HERE/procs.sh"

# ------------------------------------------------------------------ tools
need python3 python3
need taskset util-linux
need iperf3 iperf3
need wrk wrk
need nginx nginx-light
case " $MODES " in *" haproxy-"*) need haproxy haproxy ;; esac

[ "$(nproc --all)" -gt "$PROXY_CPU" ] && [ "$(nproc --all)" -gt "$LOAD_CPU" ] ||
    die "needs CPUs $PROXY_CPU and $LOAD_CPU (this machine has $(nproc --all))"
[ "$(ulimit -Hn)" -ge $((2 * IDLE_CONNS + 200)) ] ||
    die "hard open-files limit $(ulimit -Hn) too low for IDLE_CONNS=$IDLE_CONNS"
ulimit -n "$(ulimit -Hn)"

mkdir -p "$RUN_DIR"
: >"$RESULTS"
put() { "${LIB[@]}" put "$RESULTS" "$1" "$2"; }

# ------------------------------------------------------------------ versions
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.proxy_cpu "$PROXY_CPU"
put meta.load_cpu "$LOAD_CPU"
put meta.bulk_secs "$BULK_SECS"
put meta.bulk_parallel "$BULK_PARALLEL"
put meta.short_secs "$SHORT_SECS"
put meta.wrk_threads "$WRK_THREADS"
put meta.wrk_conns "$WRK_CONNS"
put meta.idle_conns "$IDLE_CONNS"
put meta.rounds "$ROUNDS"
put meta.haproxy "$(haproxy -v 2>/dev/null | head -1 || echo 'not installed')"
put meta.nginx "$(nginx -v 2>&1 | head -1)"
put meta.iperf3 "$(iperf3 --version 2>&1 | head -1)"
put meta.wrk "$(wrk -v 2>&1 | head -1)"
put meta.kernel "$(uname -r)"
put meta.swift "$( (swift --version 2>&1 || echo 'swift not found') | grep -m1 -i 'swift' || echo '?')"
sluice_meta() {
    if [ -x "$SLUICE_BIN" ]; then
        put meta.sluice "$SLUICE_BIN ($(stat -c %y "$SLUICE_BIN" | cut -d. -f1), sha256 $(sha256sum "$SLUICE_BIN" | cut -c1-12))"
    else
        put meta.sluice "not found at $SLUICE_BIN"
    fi
}
sluice_meta

# ------------------------------------------------------------------ origins (CPU LOAD_CPU)

log "output: $RUN_DIR"
log "starting origins on CPU $LOAD_CPU: iperf3 :$IPERF_PORT, nginx :$HTTP_PORT, idle backend :$IDLE_PORT"
start_bg "$RUN_DIR/iperf3-server.log" taskset -c "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT"

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

IDLE_COUNT="$RUN_DIR/idle-backend.count"
start_bg "$RUN_DIR/idle-backend.log" taskset -c "$LOAD_CPU" "${LIB[@]}" idle-backend "$IDLE_PORT" "$IDLE_COUNT"

wait_port "$IPERF_PORT" 10 || die "iperf3 server did not start (see $RUN_DIR/iperf3-server.log)"
wait_port "$HTTP_PORT" 10 || die "nginx did not start (see $RUN_DIR/nginx/error.log)"
wait_port "$IDLE_PORT" 10 || die "idle backend did not start (see $RUN_DIR/idle-backend.log)"
"${LIB[@]}" wait-count "$IDLE_COUNT" le 0 10 >/dev/null || die "idle backend count file missing"

# ------------------------------------------------------------------ proxies (CPU PROXY_CPU)
PROXY_PID=""

haproxy_cfg() { # haproxy_cfg FILE PIPESIZE|""
    {
        echo "global"
        echo "    nbthread 1"
        # fds: 2 per connection + 2 per pipe must stay under the 20000 open-files limit
        echo "    maxconn $((IDLE_CONNS + 300))"
        echo "    maxpipes 256"
        [ -n "$2" ] && echo "    tune.pipesize $2"
        echo "defaults"
        echo "    mode tcp"
        echo "    option splice-request"
        echo "    option splice-response"
        echo "    timeout connect 5s"
        echo "    timeout client 1h"
        echo "    timeout server 1h"
        for l in "iperf $P_IPERF $IPERF_PORT" "http $P_HTTP $HTTP_PORT" "idle $P_IDLE $IDLE_PORT"; do
            set -- $l
            echo "listen $1"
            echo "    bind 127.0.0.1:$2"
            echo "    server s1 127.0.0.1:$3"
        done
    } >"$1"
}

sluice_cfg() { # sluice_cfg FILE
    cat >"$1" <<EOF
workers: 1
timeouts:
  connect: 5s
  client: 1h
  server: 1h
  tunnel: 1h
  drain: 1s
limits:
  maxConnections: $((2 * IDLE_CONNS + 1000))
  connectTries: 3
  endpointBackoff: 2s
tuning:
  pipeSize: $SLUICE_PIPE_SIZE
  pipePool: 64
  copyBuffer: 65536
  splice: true
listeners:
  - name: iperf
    address: 127.0.0.1:$P_IPERF
    protocol: tcp
    service: iperf
  - name: http
    address: 127.0.0.1:$P_HTTP
    protocol: tcp
    service: http
  - name: idle
    address: 127.0.0.1:$P_IDLE
    protocol: tcp
    service: idle
services:
  - name: iperf
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$IPERF_PORT" ]
  - name: http
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$HTTP_PORT" ]
  - name: idle
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$IDLE_PORT" ]
EOF
}

start_proxy() { # start_proxy MODE -> sets PROXY_PID; returns 1 on failure
    local mode=$1 cfg i
    case "$mode" in
    haproxy-default | haproxy-tuned)
        cfg="$RUN_DIR/$KEY.cfg"
        if [ "$mode" = haproxy-tuned ]; then haproxy_cfg "$cfg" "$HAPROXY_TUNED_PIPESIZE"; else haproxy_cfg "$cfg" ""; fi
        haproxy -c -f "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 || { log "haproxy -c failed: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        start_bg "$RUN_DIR/$KEY.log" taskset -c "$PROXY_CPU" haproxy -db -f "$cfg"
        PROXY_PID=$BG_PID
        ;;
    sluice | sluice-base | sluice-epoll | sluice-uring)
        local bin="$SLUICE_BIN" io=() want=""
        case "$mode" in sluice-epoll) want=epoll ;; sluice-uring) want=io_uring ;; esac
        [ -n "$want" ] && io=(--io-backend "$want")
        [ "$mode" = sluice-base ] && bin="$SLUICE_BASE_BIN"
        cfg="$RUN_DIR/$KEY.yaml"
        sluice_cfg "$cfg"
        "$bin" check --config "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 ||
            { log "sluice check failed: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        start_bg "$RUN_DIR/$KEY.log" taskset -c "$PROXY_CPU" "$bin" run --config "$cfg" --workers 1 --log-level notice "${io[@]}"
        PROXY_PID=$BG_PID
        sluice_ready "$RUN_DIR/$KEY.log" "$PROXY_PID" ||
            { log "sluice did not log 'ready generation=1' (see $RUN_DIR/$KEY.log)"; return 1; }
        if [ -n "$want" ]; then
            grep -m1 'ready generation=1' "$RUN_DIR/$KEY.log" | grep -qE "io=$want([^a-z_]|\$)" ||
                { log "$mode: the ready line does not say io=$want: $(grep -m1 'ready generation=1' "$RUN_DIR/$KEY.log")"; return 1; }
        fi
        ;;
    *) die "unknown mode $mode" ;;
    esac
    for i in $(seq 200); do
        kill -0 "$PROXY_PID" 2>/dev/null || break
        (exec 3<>"/dev/tcp/127.0.0.1/$P_IDLE") 2>/dev/null && break
        sleep 0.05
    done
    for p in "$P_IPERF" "$P_HTTP" "$P_IDLE"; do
        kill -0 "$PROXY_PID" 2>/dev/null || { log "$mode exited: $(tail -2 "$RUN_DIR/$KEY.log" | tr '\n' ' ')"; return 1; }
        wait_port "$p" 5 || { log "$mode is not listening on :$p (see $RUN_DIR/$KEY.log)"; return 1; }
    done
    kill -0 "$PROXY_PID" 2>/dev/null || { log "$mode exited (see $RUN_DIR/$KEY.log)"; return 1; }
}

ctx_now() { # the proxy's context switches (voluntary + not, all threads; 0 for direct)
    if [ -n "$PROXY_PID" ]; then "${LIB[@]}" ctx-tree "$PROXY_PID" 2>/dev/null || echo 0; else echo 0; fi
}

cpu_now() { # the proxy's "USER SYSTEM" CPU seconds ("0 0" for direct, or if it is gone)
    if [ -n "$PROXY_PID" ]; then "${LIB[@]}" cpu "$PROXY_PID" 2>/dev/null || echo "0 0"; else echo "0 0"; fi
}

# ------------------------------------------------------------------ measurements
run_idle() { # run_idle MODE PORT
    local mode=$1 port=$2 before after ready="$RUN_DIR/$mode.idle.ready" cpid
    "${LIB[@]}" wait-count "$IDLE_COUNT" le 0 30 >/dev/null || log "idle backend still holds connections"
    before=$("${LIB[@]}" rss "$PROXY_PID")
    log "$mode idle: opening $IDLE_CONNS connections (RSS before $((before / 1024)) KiB)"
    rm -f "$ready"
    start_bg "$RUN_DIR/$mode.idle-client.log" taskset -c "$LOAD_CPU" "${LIB[@]}" idle-client "$port" "$IDLE_CONNS" "$IDLE_COUNT" "$ready" "$IDLE_BATCH"
    cpid=$BG_PID
    while [ ! -s "$ready" ]; do
        kill -0 "$cpid" 2>/dev/null || { put "$mode.idle.error" "idle client failed: $(tail -1 "$RUN_DIR/$mode.idle-client.log")"; return 0; }
        sleep 0.1
    done
    sleep "$IDLE_SETTLE"
    after=$("${LIB[@]}" rss "$PROXY_PID")
    put "$mode.idle.requested" "$IDLE_CONNS"
    put "$mode.idle.connections" "$(cut -d' ' -f1 "$ready")"
    put "$mode.idle.open_seconds" "$(cut -d' ' -f2 "$ready")"
    put "$mode.idle.rss_before" "$before"
    put "$mode.idle.rss_after" "$after"
    log "$mode idle: $(cut -d' ' -f1 "$ready") open in $(cut -d' ' -f2 "$ready") s, RSS after $((after / 1024)) KiB"
    stop_pid "$cpid"
    "${LIB[@]}" wait-count "$IDLE_COUNT" le 0 30 >/dev/null || log "$mode idle: upstream connections not all closed after 30 s"
}

run_bulk() { # run_bulk MODE PORT DIR(fwd|rev)
    local mode=$1 port=$2 dir=$3 c0 c1 x0 x1 json="$RUN_DIR/$mode.iperf-$3.json" flag=""
    [ "$dir" = rev ] && flag="-R"
    log "$mode bulk $dir: iperf3 -t $BULK_SECS $flag"
    x0=$(ctx_now)
    c0=$(cpu_now)
    taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "$port" -t "$BULK_SECS" -P "$BULK_PARALLEL" $flag -J >"$json" 2>"$RUN_DIR/$mode.iperf-$dir.err" || true
    c1=$(cpu_now)
    x1=$(ctx_now)
    put "$mode.bulk_$dir.ctx" "$((x1 - x0))"
    "${LIB[@]}" bulk "$RESULTS" "$mode" "$dir" "$json" "$c0" "$c1"
    sleep 0.5
}

run_short() { # run_short MODE PORT
    local mode=$1 port=$2 c0 c1 x0 x1 out="$RUN_DIR/$mode.wrk.txt"
    local url="http://127.0.0.1:$port/"
    if [ "$SHORT_WARMUP" != 0 ]; then
        taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${SHORT_WARMUP}s" -H "Connection: close" "$url" >/dev/null 2>&1 || true
    fi
    log "$mode short: wrk -t$WRK_THREADS -c$WRK_CONNS -d${SHORT_SECS}s Connection: close"
    x0=$(ctx_now)
    c0=$(cpu_now)
    taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${SHORT_SECS}s" -H "Connection: close" "$url" >"$out" 2>&1 || true
    c1=$(cpu_now)
    x1=$(ctx_now)
    put "$mode.short.ctx" "$((x1 - x0))"
    "${LIB[@]}" short "$RESULTS" "$mode" "$out" "$c0" "$c1"
    sleep 0.5
}

run_mode() { # run_mode MODE (results go under the key MODE@ROUND)
    local mode=$1 pi ph pd
    KEY="$mode@$ROUND"
    PROXY_PID=""
    if [ "$mode" = direct ]; then
        pi=$IPERF_PORT ph=$HTTP_PORT pd=$IDLE_PORT
    else
        if [ "$mode" = sluice-base ] && [ ! -x "$SLUICE_BASE_BIN" ]; then
            log "SKIP sluice-base: SLUICE_BASE_BIN is not an executable"
            put "$KEY.status" "SKIP sluice-base: SLUICE_BASE_BIN is not an executable"
            return 0
        fi
        if { [ "$mode" = sluice ] || [ "$mode" = sluice-epoll ] || [ "$mode" = sluice-uring ]; } && [ ! -x "$SLUICE_BIN" ]; then
            log "SKIP sluice: binary not found ($SLUICE_BIN)"
            put "$KEY.status" "SKIP sluice: binary not found ($SLUICE_BIN)"
            return 0
        fi
        [ "$mode" = sluice ] && sluice_meta
        log "starting $mode on CPU $PROXY_CPU"
        if ! start_proxy "$mode"; then
            put "$KEY.status" "failed to start (see $RUN_DIR/$KEY.log)"
            [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
            return 0
        fi
        pi=$P_IPERF ph=$P_HTTP pd=$P_IDLE
        # fresh process: idle memory first, before bulk/short runs grow pools
        run_idle "$KEY" "$pd"
    fi
    run_bulk "$KEY" "$pi" fwd
    run_bulk "$KEY" "$pi" rev
    run_short "$KEY" "$ph"
    if [ -n "$PROXY_PID" ]; then
        if kill -0 "$PROXY_PID" 2>/dev/null; then
            put "$KEY.status" ok
        else
            put "$KEY.status" "proxy exited during the run (see $RUN_DIR/$KEY.log)"
        fi
        stop_pid "$PROXY_PID"
    else
        put "$KEY.status" ok
    fi
}

# CPU used by processes outside this script's tree (a build, ...), per column
NOISE="$RUN_DIR/noise.txt"
start_bg "$RUN_DIR/noise-monitor.log" taskset -c "$LOAD_CPU" "${LIB[@]}" monitor "$$" "$NOISE" 0.5
NOISE_PID=$BG_PID

T0=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && log "round $ROUND of $ROUNDS"
    for m in $MODES; do
        nb=$("${LIB[@]}" noise-begin "$NOISE")
        run_mode "$m"
        "${LIB[@]}" noise-end "$RESULTS" "$m@$ROUND" "$NOISE" "$nb"
    done
done
put meta.noise_top "$(cut -s -d' ' -f2 "$NOISE" 2>/dev/null || true)"
stop_pid "$NOISE_PID"
log "measurements done in $(($(date +%s) - T0)) s"

REPORT="$RUN_DIR/report.md"
if [ "${REPORT_KIND:-l4}" = backend ]; then
    python3 "$HERE/backend_report.py" "$RESULTS" >"$REPORT"
else
    "${LIB[@]}" report "$RESULTS" >"$REPORT"
    cp "$REPORT" "$OUT_DIR/l4-bench-latest.md"
fi
cat "$REPORT"
log "report: $REPORT (logs and raw results beside it)"
