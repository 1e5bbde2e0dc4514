#!/usr/bin/env bash
# HTTP/2 benchmark: Sluice vs HAProxy 2.6 vs nginx 1.22, on loopback, in one run.
# Each proxy terminates TLS with ALPN h2 (same certificate) and proxies HTTP/1.1 to one
# nginx origin over pooled keep-alive connections. Loads (h2load):
#   h2-ka    keep-alive: -c KA_C clients, -m KA_M streams each, KA_N requests
#   h2-conn  a new connection per request: h2load -n HS_C -c HS_C -m 1, HS_RUNS times (every
#            client one connection, one full TLS handshake, one stream)
# The proxy's CPU (user and system apart) comes from /proc/PID/stat before and after each
# load. Proxies on PROXY_CPU, h2load and the origin on LOAD_CPU. Every parameter is an
# environment variable.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build/release/sluice}"
MODES="${MODES:-sluice haproxy nginx}"
LOADS="${LOADS:-h2-ka h2-conn}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
ROUNDS="${ROUNDS:-3}"
KA_N="${KA_N:-200000}"               # keep-alive: requests per load
KA_C="${KA_C:-50}"                   # h2load -c
KA_M="${KA_M:-10}"                   # h2load -m
WARMUP_N="${WARMUP_N:-20000}"        # keep-alive warm-up requests (0: none)
HS_C="${HS_C:-50}"                   # new connections: clients (= requests) per h2load run
HS_RUNS="${HS_RUNS:-60}"             # h2load runs per load
UPSTREAM_KEEPALIVE="${UPSTREAM_KEEPALIVE:-32}"
BASE_PORT="${BASE_PORT:-17500}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

SNI=localhost                        # h2load sends the URL's host as SNI and :authority
SMALL=64
O_HTTP=$((BASE_PORT + 1))            # origin, plain HTTP/1.1
P_H2=$((BASE_PORT + 10))             # the proxy under test, TLS + h2

STAMP="$(date +%Y%m%d-%H%M%S)"
RUN_DIR="$OUT_DIR/h2-$STAMP"
RESULTS="$RUN_DIR/results.txt"
LIB=(python3 "$HERE/benchlib.py")
TLIB=(python3 "$HERE/tls_bench.py")
HLIB=(python3 "$HERE/h2_bench.py")

BENCH_NAME=h2-bench
# shellcheck source=Perf/procs.sh
source "$HERE/procs.sh"
# shellcheck source=Perf/benchlib.sh
source "$HERE/benchlib.sh"

need python3 python3
need taskset util-linux
need h2load nghttp2-client
need curl curl
need openssl openssl
need nginx nginx
case " $MODES " in *" haproxy "*) need haproxy haproxy ;; esac
curl --version | grep -qi 'nghttp2' || die "this curl has no HTTP/2 (the routing check needs it)"
bench_setup h2load

CERTS="$RUN_DIR/certs"
"${TLIB[@]}" certs "$CERTS" ec

put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.proxy_cpu "$PROXY_CPU"
put meta.load_cpu "$LOAD_CPU"
put meta.rounds "$ROUNDS"
put meta.ka_n "$KA_N"
put meta.ka_c "$KA_C"
put meta.ka_m "$KA_M"
put meta.hs_c "$HS_C"
put meta.hs_runs "$HS_RUNS"
put meta.haproxy "$(haproxy -v 2>/dev/null | head -1 || echo 'not installed')"
put meta.nginx "$(nginx -v 2>&1 | head -1)"
put meta.h2load "$(h2load --version 2>&1 | head -1)"
put meta.openssl "$(openssl version)"
put meta.kernel "$(uname -r)"
if [ -x "$SLUICE_BIN" ]; then
    put meta.sluice "$SLUICE_BIN (sha256 $(sha256sum "$SLUICE_BIN" | cut -c1-12), tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
else
    put meta.sluice "not found at $SLUICE_BIN"
fi
log "output: $RUN_DIR"

# ------------------------------------------------------------------ origin (LOAD_CPU)
ORIGIN="$RUN_DIR/origin"
mkdir -p "$ORIGIN/www" "$ORIGIN/tmp"
head -c "$SMALL" /dev/zero | tr '\0' 'x' >"$ORIGIN/www/small.bin"
origin_conf "$ORIGIN" "$O_HTTP"
log "nginx origin on CPU $LOAD_CPU: http :$O_HTTP"
start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nginx -p "$ORIGIN" -c "$ORIGIN/nginx.conf" -e "$ORIGIN/error.log"
wait_port "$O_HTTP" 10 || die "origin did not start (see $ORIGIN/error.log)"

# ------------------------------------------------------------------ proxies (PROXY_CPU)
haproxy_cfg() {
    cat >"$1" <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend h2
    bind 127.0.0.1:$P_H2 ssl crt $CERTS/haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    use_backend origin if { req.hdr(host),field(1,:) -m str -i $SNI }
backend origin
    http-reuse safe
    server o 127.0.0.1:$O_HTTP
EOF
}

nginx_cfg() {
    proxy_nginx_conf "$1" "127.0.0.1:$P_H2 ssl http2" "" "
    http2_max_requests 10000000;"
}

sluice_cfg() {
    cat >"$1" <<EOF
workers: 1
timeouts:
  connect: 5s
  client: 30s
  server: 30s
  drain: 1s
limits:
  maxConnections: 9000
  upstreamIdlePerEndpoint: $UPSTREAM_KEEPALIVE
  upstreamIdle: 30s
listeners:
  - name: h2
    address: 127.0.0.1:$P_H2
    protocol: tls
    http2: true
    certificates:
      - cert: $CERTS/bench.pem
        key: $CERTS/bench.key
    routes:
      - host: $SNI
        terminate: true
        service: origin
    default:
      terminate: true
      status: 404
services:
  - name: origin
    endpoints: [ "127.0.0.1:$O_HTTP" ]
EOF
}

start_proxy() { # start_proxy MODE -> PROXY_PID, LOGF; false (with $KEY.status) if it cannot run
    local mode=$1 cfg
    case "$mode" in
    haproxy)
        cfg="$RUN_DIR/$KEY.cfg"
        haproxy_cfg "$cfg"
        start_haproxy "$cfg" ||
            { put "$KEY.status" "haproxy -c refused the config: $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log" | cut -c1-300)"; return 1; }
        ;;
    nginx)
        cfg="$RUN_DIR/$KEY.nginx"
        nginx_cfg "$cfg"
        start_nginx "$cfg" ||
            { put "$KEY.status" "nginx -t refused the config: $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log" | cut -c1-300)"; return 1; }
        ;;
    sluice)
        cfg="$RUN_DIR/$KEY.yaml"
        sluice_cfg "$cfg"
        if ! "$SLUICE_BIN" check --config "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1; then
            put "$KEY.status" "SKIP: this sluice refuses the config (no HTTP/2 support yet?): $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log" | cut -c1-300)"
            log "$KEY: sluice check refused the config (see $RUN_DIR/$KEY.check.log): $(head -c 300 "$RUN_DIR/$KEY.check.log")"
            return 1
        fi
        LOGF="$RUN_DIR/$KEY.log"
        start_bg "$LOGF" taskset -c "$PROXY_CPU" "$SLUICE_BIN" run --config "$cfg" --workers 1 --log-level notice
        PROXY_PID=$BG_PID
        sluice_ready "$LOGF" "$PROXY_PID" || { put "$KEY.status" "sluice not ready (see $LOGF)"; return 1; }
        ;;
    *) put "$KEY.status" "unknown mode $mode"; return 1 ;;
    esac
    wait_port "$P_H2" 5 || { put "$KEY.status" "not listening on :$P_H2 (see $LOGF)"; return 1; }
}

check_h2() { # one request over h2, verified against the CA: "ok ..." or the problem
    local out
    out=$(curl -sS --noproxy '*' --http2 --cacert "$CERTS/ca.pem" -o /dev/null \
        -w '%{http_version} %{http_code} %{size_download}' "https://$SNI:$P_H2/small.bin" 2>&1) || true
    if [ "$out" = "2 200 $SMALL" ]; then echo "ok (HTTP/2, 200, $SMALL B)"; else echo "FAIL: curl says '$out' (want '2 200 $SMALL')"; fi
}

run_load() { # run_load LOAD
    local ld=$1 c0 c1 outs=() i summary url="https://$SNI:$P_H2/small.bin"
    case "$ld" in
    h2-ka)
        [ "$WARMUP_N" != 0 ] && taskset -c "$LOAD_CPU" h2load -n "$WARMUP_N" -c "$KA_C" -m "$KA_M" "$url" >/dev/null 2>&1 || true
        c0=$(cpu_now)
        taskset -c "$LOAD_CPU" h2load -n "$KA_N" -c "$KA_C" -m "$KA_M" "$url" >"$RUN_DIR/$KEY.$ld.out" 2>&1 || true
        c1=$(cpu_now)
        outs=("$RUN_DIR/$KEY.$ld.out")
        ;;
    h2-conn)
        taskset -c "$LOAD_CPU" h2load -n "$HS_C" -c "$HS_C" -m 1 "$url" >/dev/null 2>&1 || true
        c0=$(cpu_now)
        for i in $(seq "$HS_RUNS"); do
            taskset -c "$LOAD_CPU" h2load -n "$HS_C" -c "$HS_C" -m 1 "$url" >"$RUN_DIR/$KEY.$ld.$i.out" 2>&1 || true
            outs+=("$RUN_DIR/$KEY.$ld.$i.out")
        done
        c1=$(cpu_now)
        ;;
    *) put "$KEY.$ld.error" "unknown load"; return 0 ;;
    esac
    kill -0 "$PROXY_PID" 2>/dev/null || { put "$KEY.$ld.error" "proxy exited during the load"; log "$KEY $ld: proxy exited"; return 0; }
    summary=$("${HLIB[@]}" h2load "$RESULTS" "$KEY.$ld" "$c0" "$c1" "${outs[@]}" || true)
    log "$KEY $ld: $summary"
    sleep 0.3
}

run_mode() {
    local mode=$1 ld chk
    KEY="$mode@$ROUND"
    PROXY_PID=""
    if [ "$mode" = sluice ] && [ ! -x "$SLUICE_BIN" ]; then
        put "$KEY.status" "SKIP: no binary at $SLUICE_BIN"
        log "$KEY: no sluice binary at $SLUICE_BIN"
        return 0
    fi
    log "starting $mode on CPU $PROXY_CPU"
    if ! start_proxy "$mode"; then
        [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
        return 0
    fi
    chk=$(check_h2)
    put "$KEY.check" "$chk"
    log "$KEY check: $chk"
    case "$chk" in
    ok*)
        for ld in $LOADS; do
            kill -0 "$PROXY_PID" 2>/dev/null || break
            run_load "$ld"
        done
        if kill -0 "$PROXY_PID" 2>/dev/null; then put "$KEY.status" ok; else put "$KEY.status" "proxy exited during the run (see $LOGF)"; fi
        ;;
    *) put "$KEY.status" "not measured: the HTTP/2 check failed" ;;
    esac
    stop_pid "$PROXY_PID"
}

run_rounds
end_rounds

REPORT="$RUN_DIR/report.md"
"${HLIB[@]}" report "$RESULTS" >"$REPORT"
cp "$REPORT" "$OUT_DIR/h2-bench-latest.md"
cat "$REPORT"
log "report: $REPORT"
