#!/usr/bin/env bash
# HTTP (L7) benchmark: Sluice vs HAProxy 2.6 vs nginx as reverse proxies, on loopback, with
# the same Host-based routing (two virtual hosts, two origins each, round robin).
# See Perf/README.md. Every parameter is an environment variable (defaults below).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build/release/sluice}"
# sluice-base: another Sluice binary (SLUICE_BASE_BIN, e.g. a build of an earlier commit) for
# before/after comparisons in one run
SLUICE_BASE_BIN="${SLUICE_BASE_BIN:-}"
# MODES: sluice haproxy nginx, and for the observability costs (Perf/observe-bench.sh):
#   sluice-base     SLUICE_BASE_BIN, same configuration as sluice
#   sluice-metrics  sluice with its admin listener scraped (GET /metrics) once a second
#   sluice-log      sluice-metrics plus a JSON access log to a file
#   haproxy-log     HAProxy with `option httplog` to a file (log stdout, redirected)
#   nginx-log       nginx with its default `combined` access log to a file
#   sluice-epoll    sluice with --io-backend epoll (the ready line must say io=epoll)
#   sluice-uring    sluice with --io-backend io_uring (the ready line must say io=io_uring)
#   haproxy-reuse   HAProxy with `http-reuse always` instead of `safe`
MODES="${MODES:-sluice haproxy nginx}"
# LOADS: {ka|close}-{64|4k|16k|1m}[-ab]; ka = keep-alive, close = "Connection: close" on every
# request; -ab alternates Host a.example.com / b.example.com per request (Host a otherwise)
LOADS="${LOADS:-ka-64 ka-16k ka-1m close-64 close-16k close-1m ka-64-ab}"
PROXY_CPU="${PROXY_CPU:-1}"          # the proxy runs here
LOAD_CPU="${LOAD_CPU:-0}"            # wrk and the nginx origin run here
ROUNDS="${ROUNDS:-3}"                # every proxy this many times, interleaved; median reported
SECS="${SECS:-4}"                    # wrk -d per load
WARMUP="${WARMUP:-1}"                # seconds of unmeasured wrk before each load (0: none)
WRK_THREADS="${WRK_THREADS:-1}"
WRK_CONNS="${WRK_CONNS:-50}"
UPSTREAM_KEEPALIVE="${UPSTREAM_KEEPALIVE:-32}"   # nginx `keepalive`, sluice upstreamIdlePerEndpoint
NGINX_MAX_TEMP_FILE="${NGINX_MAX_TEMP_FILE-0}"  # nginx proxy_max_temp_file_size ("" = nginx default 1024m)
SYSCALLS="${SYSCALLS:-0}"            # 1: one more round per proxy counting system calls (perf stat; not in the CPU figures)
# the system call round counts raw_syscalls:sys_enter (the total) and these calls by name
BASE_PORT="${BASE_PORT:-17200}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

HOST_A=a.example.com
HOST_B=b.example.com
# origins: A on +1,+2, B on +3,+4; every proxy listens on +10
O1=$((BASE_PORT + 1)) O2=$((BASE_PORT + 2)) O3=$((BASE_PORT + 3)) O4=$((BASE_PORT + 4))
P_HTTP=$((BASE_PORT + 10))
P_ADMIN=$((BASE_PORT + 11))

STAMP="$(date +%Y%m%d-%H%M%S)"
RUN_DIR="$OUT_DIR/http-$STAMP"
RESULTS="$RUN_DIR/results.txt"
LIB=(python3 "$HERE/benchlib.py")
TLIB=(python3 "$HERE/tls_bench.py")

BENCH_NAME=http-bench
# shellcheck source=Perf/procs.sh
source "$HERE/procs.sh"

# ------------------------------------------------------------------ tools
need python3 python3
need taskset util-linux
need wrk wrk
need nginx nginx-light
case " $MODES " in *" haproxy"*) need haproxy haproxy ;; esac
case " $MODES " in *" sluice-metrics "* | *" sluice-log "*) need curl curl ;; esac

[ "$(nproc --all)" -gt "$PROXY_CPU" ] && [ "$(nproc --all)" -gt "$LOAD_CPU" ] ||
    die "needs CPUs $PROXY_CPU and $LOAD_CPU (this machine has $(nproc --all))"
ulimit -n "$(ulimit -Hn)"

for ld in $LOADS; do
    [[ "$ld" =~ ^(ka|close)-(64|4k|16k|1m)(-ab)?$ ]] || die "bad load '$ld' (expected {ka|close}-{64|4k|16k|1m}[-ab])"
done
for m in $MODES; do
    case "$m" in
    sluice | haproxy | nginx | sluice-metrics | sluice-log | haproxy-log | nginx-log | sluice-epoll | sluice-uring | haproxy-reuse) ;;
    sluice-base) [ -x "$SLUICE_BASE_BIN" ] || die "mode sluice-base needs SLUICE_BASE_BIN (an executable)" ;;
    *) die "bad mode '$m' (sluice, haproxy, nginx, sluice-base, sluice-metrics, sluice-log, haproxy-log, nginx-log, sluice-epoll, sluice-uring, haproxy-reuse)" ;;
    esac
done

if [ "$SYSCALLS" = 1 ] && ! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    log "perf cannot count syscall tracepoints here: SYSCALLS=0"
    SYSCALLS=0
fi

mkdir -p "$RUN_DIR"
: >"$RESULTS"
put() { "${LIB[@]}" put "$RESULTS" "$1" "$2"; }

# ------------------------------------------------------------------ versions
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.proxy_cpu "$PROXY_CPU"
put meta.load_cpu "$LOAD_CPU"
put meta.secs "$SECS"
put meta.warmup "$WARMUP"
put meta.wrk_threads "$WRK_THREADS"
put meta.wrk_conns "$WRK_CONNS"
put meta.rounds "$ROUNDS"
put meta.loads "$LOADS"
put meta.modes "$MODES"
put meta.syscalls "$SYSCALLS"
put meta.haproxy "$(haproxy -v 2>/dev/null | head -1 || echo 'not installed')"
put meta.nginx "$(nginx -v 2>&1 | head -1)"
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
[ -n "$SLUICE_BASE_BIN" ] && put meta.sluice_base "$SLUICE_BASE_BIN ($(stat -c %y "$SLUICE_BASE_BIN" | cut -d. -f1), sha256 $(sha256sum "$SLUICE_BASE_BIN" | cut -c1-12))"

nloads=$(wc -w <<<"$LOADS")
nmodes=$(wc -w <<<"$MODES")
log "output: $RUN_DIR"
log "$ROUNDS round(s) × $nmodes proxies × $nloads loads × (${WARMUP}+${SECS} s): about $((ROUNDS * nmodes * (nloads * (WARMUP + SECS + 1) + 3) / 60 + 1)) min"

# ------------------------------------------------------------------ origin (CPU LOAD_CPU)

size_path() { # size_path 64|16k|1m -> URL path of the static file
    echo "/$1.bin"
}
size_bytes() {
    case "$1" in 64) echo 64 ;; 4k) echo 4096 ;; 16k) echo 16384 ;; 1m) echo 1048576 ;; esac
}

ORIGIN="$RUN_DIR/origin"
mkdir -p "$ORIGIN/www" "$ORIGIN/tmp"
for s in 64 4k 16k 1m; do
    head -c "$(size_bytes "$s")" /dev/zero | tr '\0' 'x' >"$ORIGIN/www/$s.bin"
done
cat >"$ORIGIN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $ORIGIN/nginx.pid;
error_log $ORIGIN/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; use epoll; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path $ORIGIN/tmp;
    proxy_temp_path $ORIGIN/tmp;
    fastcgi_temp_path $ORIGIN/tmp;
    uwsgi_temp_path $ORIGIN/tmp;
    scgi_temp_path $ORIGIN/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$O1 backlog=4096;
        listen 127.0.0.1:$O2 backlog=4096;
        listen 127.0.0.1:$O3 backlog=4096;
        listen 127.0.0.1:$O4 backlog=4096;
        root $ORIGIN/www;
        add_header X-Origin \$server_port always;
    }
}
EOF
log "starting the nginx origin on CPU $LOAD_CPU: :$O1 :$O2 ($HOST_A), :$O3 :$O4 ($HOST_B)"
start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nginx -p "$ORIGIN" -c "$ORIGIN/nginx.conf" -e "$ORIGIN/error.log"
for p in $O1 $O2 $O3 $O4; do
    wait_port "$p" 10 || die "origin nginx did not start (see $ORIGIN/error.log)"
done

# wrk scripts: Host a/b alternating per request, and a status tally for diagnosis
cat >"$RUN_DIR/ab.lua" <<'EOF'
-- alternates the Host header per request (other -H headers kept)
local reqs = {}
local n = 0
function init(args)
  for i, h in ipairs({"a.example.com", "b.example.com"}) do
    local hd = {}
    for k, v in pairs(wrk.headers) do hd[k] = v end
    hd["Host"] = h
    reqs[i] = wrk.format(nil, nil, hd)
  end
end
function request()
  n = n + 1
  return reqs[(n % 2) + 1]
end
EOF
cat >"$RUN_DIR/tally.lua" <<'EOF'
-- counts response statuses (slow: only for diagnosing non-2xx); AB=1 alternates the Host
local threads = {}
local reqs = {}
local n = 0
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  sample = ""
  for i, h in ipairs({"a.example.com", "b.example.com"}) do
    local hd = {}
    for k, v in pairs(wrk.headers) do hd[k] = v end
    if args[1] == "ab" then hd["Host"] = h end
    reqs[i] = wrk.format(nil, nil, hd)
  end
end
function request()
  n = n + 1
  return reqs[(n % 2) + 1]
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status < 200 or status >= 300) and sample == "" then
    local hs = {}
    for k, v in pairs(headers) do table.insert(hs, k .. ": " .. v) end
    sample = status .. " {" .. table.concat(hs, "; ") .. "} body=" .. string.sub(body or "", 1, 120)
  end
end
function done(summary, latency, requests)
  local tot, smp = {}, ""
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do tot[k] = (tot[k] or 0) + v end
    local s = t:get("sample")
    if smp == "" and s then smp = s end
  end
  local parts = {}
  for k, v in pairs(tot) do table.insert(parts, k .. "×" .. v) end
  local e = summary.errors
  local line = "statuses " .. table.concat(parts, ", ") ..
    string.format("; socket errors connect %d read %d write %d timeout %d", e.connect, e.read, e.write, e.timeout)
  if smp ~= "" then line = line .. "; first non-2xx: " .. smp end
  io.write("STATUS-TALLY " .. string.gsub(line, "[\r\n]", " ") .. "\n")
end
EOF

# ------------------------------------------------------------------ proxies (CPU PROXY_CPU)
PROXY_PID=""

haproxy_cfg() { # haproxy_cfg FILE [log|reuse]
    local glog="" dlog="" reuse=safe
    [ "${2:-}" = reuse ] && reuse=always
    if [ "${2:-}" = log ]; then
        glog="    log stdout format raw local0 info"
        dlog=$'    log global\n    option httplog'
    fi
    cat >"$1" <<EOF
global
    nbthread 1
    maxconn 9000
$glog
defaults
    mode http
$dlog
    http-reuse $reuse
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend web
    bind 127.0.0.1:$P_HTTP
    acl host_a hdr(host) -i $HOST_A
    acl host_b hdr(host) -i $HOST_B
    use_backend be_a if host_a
    use_backend be_b if host_b
backend be_a
    balance roundrobin
    server a1 127.0.0.1:$O1
    server a2 127.0.0.1:$O2
backend be_b
    balance roundrobin
    server b1 127.0.0.1:$O3
    server b2 127.0.0.1:$O4
EOF
}

nginx_cfg() { # nginx_cfg DIR [log] (writes DIR/nginx.conf)
    local d=$1 tmpline="" access="access_log off;"
    [ "${2:-}" = log ] && access="access_log $d/access.log combined;"
    mkdir -p "$d/tmp"
    [ -n "$NGINX_MAX_TEMP_FILE" ] && tmpline="proxy_max_temp_file_size $NGINX_MAX_TEMP_FILE;"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; use epoll; }
http {
    $access
    client_body_temp_path $d/tmp;
    proxy_temp_path $d/tmp;
    fastcgi_temp_path $d/tmp;
    uwsgi_temp_path $d/tmp;
    scgi_temp_path $d/tmp;
    keepalive_requests 1000000;
    upstream be_a {
        server 127.0.0.1:$O1;
        server 127.0.0.1:$O2;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
    }
    upstream be_b {
        server 127.0.0.1:$O3;
        server 127.0.0.1:$O4;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    $tmpline
    server {
        listen 127.0.0.1:$P_HTTP backlog=4096;
        server_name $HOST_A;
        location / { proxy_pass http://be_a; }
    }
    server {
        listen 127.0.0.1:$P_HTTP;
        server_name $HOST_B;
        location / { proxy_pass http://be_b; }
    }
}
EOF
}

sluice_cfg() { # sluice_cfg FILE [ACCESS_LOG_PATH]
    local access=""
    [ -n "${2:-}" ] && access=$'accessLog:\n  path: '"$2"$'\n  format: json'
    cat >"$1" <<EOF
workers: 1
$access
timeouts:
  connect: 5s
  client: 30s
  server: 30s
  drain: 1s
  requestHead: 5s
limits:
  maxConnections: 20000
  upstreamIdlePerEndpoint: $UPSTREAM_KEEPALIVE
  upstreamIdle: 30s
listeners:
  - name: web
    address: 127.0.0.1:$P_HTTP
    protocol: http
    routes:
      - host: $HOST_A
        service: a
      - host: $HOST_B
        service: b
services:
  - name: a
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$O1", "127.0.0.1:$O2" ]
  - name: b
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$O3", "127.0.0.1:$O4" ]
EOF
}

LOGF=""
SCRAPER_PID=""
start_scraper() { # GET /metrics once a second on the load CPU while the loads run
    start_bg "$RUN_DIR/$KEY.scrape.log" taskset -c "$LOAD_CPU" bash -c \
        "while sleep 1; do curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' http://127.0.0.1:$P_ADMIN/metrics; done"
    SCRAPER_PID=$BG_PID
}
start_proxy() { # start_proxy MODE -> sets PROXY_PID and LOGF; returns 1 on failure
    local mode=$1 cfg i bin="$SLUICE_BIN" admin=() access=""
    case "$mode" in
    haproxy | haproxy-log | haproxy-reuse)
        cfg="$RUN_DIR/$KEY.cfg"
        haproxy_cfg "$cfg" "${mode#haproxy-}"
        haproxy -c -f "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 || { log "haproxy -c failed: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        LOGF="$RUN_DIR/$KEY.log"
        start_bg "$LOGF" taskset -c "$PROXY_CPU" haproxy -db -f "$cfg"
        PROXY_PID=$BG_PID
        ;;
    nginx | nginx-log)
        cfg="$RUN_DIR/$KEY.nginx"
        nginx_cfg "$cfg" "${mode#nginx-}"
        nginx -t -p "$cfg" -c "$cfg/nginx.conf" -e "$cfg/error.log" >"$RUN_DIR/$KEY.check.log" 2>&1 ||
            { log "nginx -t failed: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        LOGF="$cfg/error.log"
        start_bg "$RUN_DIR/$KEY.log" taskset -c "$PROXY_CPU" nginx -p "$cfg" -c "$cfg/nginx.conf" -e "$cfg/error.log"
        PROXY_PID=$BG_PID
        ;;
    sluice | sluice-base | sluice-metrics | sluice-log | sluice-epoll | sluice-uring)
        cfg="$RUN_DIR/$KEY.yaml"
        local io=() want=""
        case "$mode" in sluice-epoll) want=epoll ;; sluice-uring) want=io_uring ;; esac
        [ -n "$want" ] && io=(--io-backend "$want")
        [ "$mode" = sluice-base ] && bin="$SLUICE_BASE_BIN"
        case "$mode" in sluice-metrics | sluice-log) admin=(--admin-address "127.0.0.1:$P_ADMIN") ;; esac
        [ "$mode" = sluice-log ] && access="$RUN_DIR/$KEY.access.log"
        sluice_cfg "$cfg" "$access"
        "$bin" check --config "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 ||
            { log "sluice check failed: $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log")"; return 1; }
        LOGF="$RUN_DIR/$KEY.log"
        start_bg "$LOGF" taskset -c "$PROXY_CPU" "$bin" run --config "$cfg" --workers 1 --log-level notice "${admin[@]}" "${io[@]}"
        PROXY_PID=$BG_PID
        sluice_ready "$LOGF" "$PROXY_PID" ||
            { log "sluice did not log 'ready generation=1' (see $LOGF)"; return 1; }
        if [ -n "$want" ]; then
            grep -m1 'ready generation=1' "$LOGF" | grep -qE "io=$want([^a-z_]|\$)" ||
                { log "$mode: the ready line does not say io=$want: $(grep -m1 'ready generation=1' "$LOGF")"; return 1; }
        fi
        ;;
    esac
    wait_port "$P_HTTP" 5 || { log "$mode is not listening on :$P_HTTP (see $LOGF)"; return 1; }
    kill -0 "$PROXY_PID" 2>/dev/null || { log "$mode exited (see $LOGF)"; return 1; }
    if [ ${#admin[@]} -gt 0 ]; then
        wait_port "$P_ADMIN" 5 || { log "$mode: no admin listener on :$P_ADMIN (see $LOGF)"; return 1; }
        start_scraper
    fi
}


# ------------------------------------------------------------------ measurements
wrk_args() { # wrk_args LOAD -> sets WRK_ARGS (without the URL)
    local ld=$1
    WRK_ARGS=(-t"$WRK_THREADS" -c"$WRK_CONNS" -H "Host: $HOST_A")
    case "$ld" in close-*) WRK_ARGS+=(-H "Connection: close") ;; esac
    case "$ld" in *-ab) WRK_ARGS+=(-s "$RUN_DIR/ab.lua") ;; esac
    return 0
}

run_load() { # run_load LOAD
    local ld=$1 size c0 c1 x0 x1 url out="$RUN_DIR/$KEY.$1.wrk.txt" summary errs
    size=${ld#*-}
    size=${size%-ab}
    url="http://127.0.0.1:$P_HTTP$(size_path "$size")"
    wrk_args "$ld"
    if [ "$WARMUP" != 0 ]; then
        taskset -c "$LOAD_CPU" wrk "${WRK_ARGS[@]}" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
    fi
    perf_start "$ld"
    x0=$(ctx_now)
    c0=$(cpu_now)
    taskset -c "$LOAD_CPU" wrk "${WRK_ARGS[@]}" -d"${SECS}s" --latency "$url" >"$out" 2>&1 || true
    c1=$(cpu_now)
    x1=$(ctx_now)
    perf_stop "$ld"
    put "$KEY.$ld.ctx" "$((x1 - x0))"
    summary=$("${LIB[@]}" http-wrk "$RESULTS" "$KEY.$ld" "$out" "$c0" "$c1" || true)
    log "$KEY $ld: ${summary:-see $out}"
    errs=0
    for v in $(grep -hE "^$KEY\.$ld\.(sock_errors|non2xx)=" "$RESULTS" | cut -d= -f2); do errs=$((errs + v)); done
    if [ "$errs" != 0 ]; then
        # rerun the same load for 2 s with a per-status tally, to say what the errors were
        local tally="$RUN_DIR/$KEY.$ld.tally.txt" ab=""
        case "$ld" in *-ab) ab=ab ;; esac
        local targs=()
        for a in "${WRK_ARGS[@]}"; do [ "$a" = "-s" ] && break; targs+=("$a"); done
        taskset -c "$LOAD_CPU" wrk "${targs[@]}" -d2s -s "$RUN_DIR/tally.lua" "$url" -- $ab >"$tally" 2>&1 || true
        put "$KEY.$ld.diag" "$(grep -m1 STATUS-TALLY "$tally" | cut -d' ' -f2- || echo "no tally (see $tally)")"
        log "$KEY $ld: $(grep -m1 STATUS-TALLY "$tally" || echo "no tally, see $tally")"
    fi
    sleep 0.3
}

run_mode() { # run_mode MODE (results go under the key MODE@ROUND)
    local mode=$1 ld
    KEY="$mode@$ROUND"
    PROXY_PID=""
    SCRAPER_PID=""
    if [ "${mode%%-*}" = sluice ] && [ "$mode" != sluice-base ]; then
        if [ ! -x "$SLUICE_BIN" ]; then
            log "SKIP sluice: binary not found ($SLUICE_BIN)"
            put "$KEY.status" "SKIP sluice: binary not found ($SLUICE_BIN)"
            return 0
        fi
        sluice_meta
    fi
    log "starting $mode on CPU $PROXY_CPU"
    if ! start_proxy "$mode"; then
        put "$KEY.status" "failed to start (see $RUN_DIR/$KEY.*)"
        [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
        return 0
    fi
    put "$KEY.check" "$("${LIB[@]}" http-check "$P_HTTP" "$(size_path 64)" 64 \
        "$HOST_A=$O1,$O2" "$HOST_B=$O3,$O4" 2>&1 | tail -1)"
    for ld in $LOADS; do
        kill -0 "$PROXY_PID" 2>/dev/null || break
        run_load "$ld"
    done
    if kill -0 "$PROXY_PID" 2>/dev/null; then
        put "$KEY.status" ok
    else
        put "$KEY.status" "proxy exited during the run (see $LOGF)"
    fi
    [ -n "$SCRAPER_PID" ] && stop_pid "$SCRAPER_PID"
    stop_pid "$PROXY_PID"
    access_lines
}

access_lines() { # records what the logging modes wrote (a check that they logged at all)
    local f=""
    case "$KEY" in
    sluice-log@*) f="$RUN_DIR/$KEY.access.log" ;;
    haproxy-log@*) f="$RUN_DIR/$KEY.log" ;;
    nginx-log@*) f="$RUN_DIR/$KEY.nginx/access.log" ;;
    esac
    if [ -n "$f" ]; then
        put "$KEY.access_lines" "$(wc -l <"$f" 2>/dev/null || echo 0)"
        rm -f "$f"
    fi
    if [ -f "$RUN_DIR/$KEY.scrape.log" ]; then
        put "$KEY.scrapes" "$(grep -c '^200 ' "$RUN_DIR/$KEY.scrape.log" || true)"
    fi
}

# CPU used by processes outside this script's tree (a build, ...), per proxy and round
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
[ "$SYSCALLS" = 1 ] && syscall_round
put meta.noise_top "$(cut -s -d' ' -f2 "$NOISE" 2>/dev/null || true)"
put meta.load_avg "$(cut -d' ' -f1-3 /proc/loadavg)"
stop_pid "$NOISE_PID"
log "measurements done in $(($(date +%s) - T0)) s"

REPORT="$RUN_DIR/report.md"
if [ "${REPORT_KIND:-http}" = observe ]; then
    python3 "$HERE/observe_report.py" "$RESULTS" >"$REPORT"
    cp "$REPORT" "$OUT_DIR/observe-bench-latest.md"
elif [ "${REPORT_KIND:-http}" = backend ]; then
    # MODES="sluice-epoll sluice-uring haproxy ...": per load CPU (user, sys), syscalls and
    # context switches per request, io_uring / epoll and io_uring / the better peer.
    python3 "$HERE/backend_report.py" "$RESULTS" >"$REPORT"
elif [ "${REPORT_KIND:-http}" = compare ]; then
    # MODES="sluice-base sluice": before/after CPU per request of two builds.
    python3 "$HERE/compare_report.py" "$RESULTS" >"$REPORT"
else
    "${LIB[@]}" http-report "$RESULTS" >"$REPORT"
    cp "$REPORT" "$OUT_DIR/http-bench-latest.md"
fi
cat "$REPORT"
log "report: $REPORT (logs and raw results beside it)"
