#!/usr/bin/env bash
# HTTP/2 benchmark: Sluice vs HAProxy 2.6 vs nginx 1.22, on loopback, in one run.
# Each proxy terminates TLS with ALPN h2 (same certificate) and also listens for h2c (HTTP/2
# with prior knowledge, plain TCP), and proxies to one origin:
#   UPSTREAM=http1 (default)  HTTP/1.1 to an nginx origin over pooled keep-alive connections
#   UPSTREAM=h2c              HTTP/2 with prior knowledge to an nghttpd origin (--no-tls):
#                             Sluice with `protocol: h2c` on the service, HAProxy with
#                             `server ... proto h2` (mode haproxy: http-reuse safe, its
#                             default; mode haproxy-always: http-reuse always), nginx with
#                             grpc_pass (one stream per upstream connection: nginx does not
#                             multiplex to upstreams)
#   UPSTREAM=h2               HTTP/2 over TLS (ALPN h2, the certificate verified with SNI
#                             localhost against the bench CA) to an nghttpd TLS origin:
#                             Sluice `protocol: h2` with a `tls` section, HAProxy `server ...
#                             ssl verify required ca-file ... sni ... alpn h2 proto h2`,
#                             nginx grpc_pass grpcs:// with grpc_ssl_verify
# Loads (h2load):
#   h2-ka    keep-alive: -c KA_C clients, -m KA_M streams each, KA_N requests
#   h2c-ka   the same over h2c with prior knowledge (no TLS on the client side)
#   h2-conn  a new connection per request: h2load -n HS_C -c HS_C -m 1, HS_RUNS times (every
#            client one connection, one full TLS handshake, one stream)
# The proxy's CPU (user and system apart) comes from /proc/PID/stat before and after each
# load. During keep-alive loads the proxy's connections to the origin are sampled with ss
# every 0.2 s (the most at once, and how many distinct ones were seen); Sluice's admin
# /metrics gives the HTTP/2 connections it opened (sluice_http2_upstream_connections_total).
# Proxies on PROXY_CPU, h2load and the origin on LOAD_CPU. Every parameter is an
# environment variable.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build/release/sluice}"
UPSTREAM="${UPSTREAM:-http1}"
case "$UPSTREAM" in
http1) MODES="${MODES:-sluice haproxy nginx}"; LOADS="${LOADS:-h2-ka h2-conn}" ;;
h2c | h2) MODES="${MODES:-sluice haproxy haproxy-always nginx}"; LOADS="${LOADS:-h2-ka h2c-ka}" ;;
*) echo "UPSTREAM is http1 (default), h2c or h2" >&2; exit 2 ;;
esac
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
O_HTTP=$((BASE_PORT + 1))            # origin, plain HTTP/1.1 (UPSTREAM=http1)
O_H2C=$((BASE_PORT + 2))             # origin, h2c (UPSTREAM=h2c)
O_H2=$((BASE_PORT + 3))              # origin, h2 over TLS (UPSTREAM=h2)
P_H2=$((BASE_PORT + 10))             # the proxy under test, TLS + h2
P_H2C=$((BASE_PORT + 11))            # the proxy under test, h2c with prior knowledge
P_ADMIN=$((BASE_PORT + 12))          # Sluice's admin listener (/metrics)
case "$UPSTREAM" in h2c) O_PORT=$O_H2C ;; h2) O_PORT=$O_H2 ;; *) O_PORT=$O_HTTP ;; esac

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
need ss iproute2
case " $MODES " in *" haproxy"*) need haproxy haproxy ;; esac
[ "$UPSTREAM" != http1 ] && need nghttpd nghttp2-server
curl --version | grep -qi 'nghttp2' || die "this curl has no HTTP/2 (the routing check needs it)"
bench_setup h2load

CERTS="$RUN_DIR/certs"
"${TLIB[@]}" certs "$CERTS" ec

put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.upstream "$UPSTREAM"
put meta.modes "$MODES"
put meta.loads "$LOADS"
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
[ "$UPSTREAM" != http1 ] && put meta.nghttpd "$(nghttpd --version 2>&1 | head -1)"
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
if [ "$UPSTREAM" = h2c ]; then
    log "nghttpd origin on CPU $LOAD_CPU: h2c :$O_H2C"
    start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nghttpd -a 127.0.0.1 -d "$ORIGIN/www" -n 1 --no-tls "$O_H2C"
    wait_port "$O_H2C" 10 || die "origin did not start (see $ORIGIN/stderr.log)"
    out=$(curl -sS --noproxy '*' --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code} %{size_download}' "http://127.0.0.1:$O_H2C/small.bin" 2>&1) || true
    [ "$out" = "2 200 $SMALL" ] || die "the h2c origin does not answer: curl says '$out'"
elif [ "$UPSTREAM" = h2 ]; then
    log "nghttpd origin on CPU $LOAD_CPU: h2 over TLS :$O_H2"
    start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nghttpd -a 127.0.0.1 -d "$ORIGIN/www" -n 1 "$O_H2" "$CERTS/bench.key" "$CERTS/bench.pem"
    wait_port "$O_H2" 10 || die "origin did not start (see $ORIGIN/stderr.log)"
    out=$(curl -sS --noproxy '*' --http2 --cacert "$CERTS/ca.pem" --resolve "$SNI:$O_H2:127.0.0.1" -o /dev/null -w '%{http_version} %{http_code} %{size_download}' "https://$SNI:$O_H2/small.bin" 2>&1) || true
    [ "$out" = "2 200 $SMALL" ] || die "the h2 origin does not answer: curl says '$out'"
else
    origin_conf "$ORIGIN" "$O_HTTP"
    log "nginx origin on CPU $LOAD_CPU: http :$O_HTTP"
    start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nginx -p "$ORIGIN" -c "$ORIGIN/nginx.conf" -e "$ORIGIN/error.log"
    wait_port "$O_HTTP" 10 || die "origin did not start (see $ORIGIN/error.log)"
fi

# ------------------------------------------------------------------ proxies (PROXY_CPU)
haproxy_cfg() { # haproxy_cfg FILE [REUSE]
    local proto="" reuse=${2:-safe}
    [ "$UPSTREAM" = h2c ] && proto=" proto h2"
    [ "$UPSTREAM" = h2 ] && proto=" ssl verify required ca-file $CERTS/ca.pem sni str($SNI) verifyhost $SNI alpn h2 proto h2"
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
frontend h2c
    bind 127.0.0.1:$P_H2C proto h2
    option forwardfor
    use_backend origin if { req.hdr(host),field(1,:) -m str -i $SNI }
backend origin
    http-reuse $reuse
    server o 127.0.0.1:$O_PORT$proto
EOF
}

nginx_cfg() { # nginx_cfg DIR
    if [ "$UPSTREAM" != http1 ]; then
        nginx_grpc_conf "$1"
    else
        # The second listen directive rides on proxy_nginx_conf's "listen LISTEN backlog=...;".
        proxy_nginx_conf "$1" "127.0.0.1:$P_H2 ssl http2 backlog=4096; listen 127.0.0.1:$P_H2C http2" "" "
    http2_max_requests 10000000;"
    fi
}

nginx_grpc_conf() { # DIR/nginx.conf for nginx as the proxy under test to the h2c/h2 origin: grpc_pass
    local d=$1 scheme=grpc tls=""
    if [ "$UPSTREAM" = h2 ]; then
        scheme=grpcs
        tls="grpc_ssl_verify on; grpc_ssl_trusted_certificate $CERTS/ca.pem; grpc_ssl_name $SNI; grpc_ssl_server_name on; grpc_ssl_session_reuse on;"
    fi
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 9000; use epoll; }
http {
    access_log off;
    $(temps "$d")
    keepalive_requests 10000000;
    http2_max_requests 10000000;
    upstream origin {
        server 127.0.0.1:$O_PORT;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$P_H2 ssl http2 backlog=4096;
        listen 127.0.0.1:$P_H2C http2 backlog=4096;
        server_name $SNI;
        ssl_certificate $CERTS/bench.pem;
        ssl_certificate_key $CERTS/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            grpc_pass $scheme://origin;
            $tls
            grpc_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            grpc_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
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
  - name: h2c
    address: 127.0.0.1:$P_H2C
    protocol: http
    http2: true
    routes:
      - host: $SNI
        service: origin
services:
  - name: origin
$([ "$UPSTREAM" = h2c ] && echo "    protocol: h2c")
$([ "$UPSTREAM" = h2 ] && printf '    protocol: h2\n    tls:\n      serverName: %s\n      ca: %s\n' "$SNI" "$CERTS/ca.pem")
    endpoints: [ "127.0.0.1:$O_PORT" ]
EOF
}

start_proxy() { # start_proxy MODE -> PROXY_PID, LOGF; false (with $KEY.status) if it cannot run
    local mode=$1 cfg
    case "$mode" in
    haproxy | haproxy-always)
        cfg="$RUN_DIR/$KEY.cfg"
        haproxy_cfg "$cfg" "$([ "$mode" = haproxy-always ] && echo always || echo safe)"
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
        start_bg "$LOGF" taskset -c "$PROXY_CPU" "$SLUICE_BIN" run --config "$cfg" --workers 1 --log-level notice \
            --admin-address "127.0.0.1:$P_ADMIN"
        PROXY_PID=$BG_PID
        sluice_ready "$LOGF" "$PROXY_PID" || { put "$KEY.status" "sluice not ready (see $LOGF)"; return 1; }
        wait_port "$P_ADMIN" 5 || { put "$KEY.status" "no admin listener on :$P_ADMIN (see $LOGF)"; return 1; }
        ;;
    *) put "$KEY.status" "unknown mode $mode"; return 1 ;;
    esac
    wait_port "$P_H2" 5 || { put "$KEY.status" "not listening on :$P_H2 (see $LOGF)"; return 1; }
    wait_port "$P_H2C" 5 || { put "$KEY.status" "not listening on :$P_H2C (see $LOGF)"; return 1; }
}

check_h2() { # one request over h2, verified against the CA: "ok ..." or the problem
    local out
    out=$(curl -sS --noproxy '*' --http2 --cacert "$CERTS/ca.pem" -o /dev/null \
        -w '%{http_version} %{http_code} %{size_download}' "https://$SNI:$P_H2/small.bin" 2>&1) || true
    if [ "$out" != "2 200 $SMALL" ]; then echo "FAIL: curl says '$out' (want '2 200 $SMALL')"; return; fi
    out=$(curl -sS --noproxy '*' --http2-prior-knowledge -o /dev/null \
        -w '%{http_version} %{http_code} %{size_download}' "http://$SNI:$P_H2C/small.bin" 2>&1) || true
    if [ "$out" = "2 200 $SMALL" ]; then echo "ok (HTTP/2 over TLS and h2c, 200, $SMALL B)"; else echo "FAIL: h2c: curl says '$out' (want '2 200 $SMALL')"; fi
}

# The proxy's connections to the origin: ss_start samples them every 0.2 s into FILE (one
# line per sample: the local ports), ss_stop FILE KEY records the most at once and how many
# distinct ones were seen.
SS_PID=""
ss_start() {
    : >"$1"
    (while :; do ss -tnH state established dst "127.0.0.1:$O_PORT" | awk '{ n = split($3, a, ":"); printf "%s ", a[n] } END { print "" }' >>"$1"; sleep 0.2; done) &
    SS_PID=$!
}
ss_stop() {
    kill "$SS_PID" 2>/dev/null || true
    wait "$SS_PID" 2>/dev/null || true
    SS_PID=""
    put "$2.up_conns_max" "$(awk '{ if (NF > m) m = NF } END { print m + 0 }' "$1")"
    put "$2.up_conns_seen" "$(tr ' ' '\n' <"$1" | grep . | sort -u | wc -l)"
}
# Sluice's sluice_http2_upstream_connections_total (all labels), or nothing for the others.
up_opened() {
    case "$UPSTREAM:$KEY" in h2c:sluice@* | h2:sluice@*) ;; *) return 0 ;; esac
    curl -s --noproxy '*' "http://127.0.0.1:$P_ADMIN/metrics" |
        awk '/^sluice_http2_upstream_connections_total/ { n += $NF } END { print n + 0 }'
}

run_load() { # run_load LOAD
    local ld=$1 c0 c1 outs=() i summary url="https://$SNI:$P_H2/small.bin" o0 o1
    case "$ld" in
    h2-ka | h2c-ka)
        [ "$ld" = h2c-ka ] && url="http://$SNI:$P_H2C/small.bin"
        [ "$WARMUP_N" != 0 ] && taskset -c "$LOAD_CPU" h2load -n "$WARMUP_N" -c "$KA_C" -m "$KA_M" "$url" >/dev/null 2>&1 || true
        o0=$(up_opened)
        ss_start "$RUN_DIR/$KEY.$ld.ss"
        c0=$(cpu_now)
        taskset -c "$LOAD_CPU" h2load -n "$KA_N" -c "$KA_C" -m "$KA_M" "$url" >"$RUN_DIR/$KEY.$ld.out" 2>&1 || true
        c1=$(cpu_now)
        ss_stop "$RUN_DIR/$KEY.$ld.ss" "$KEY.$ld"
        o1=$(up_opened)
        [ -n "$o0" ] && [ -n "$o1" ] && put "$KEY.$ld.up_opened" "$((o1 - o0))"
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
