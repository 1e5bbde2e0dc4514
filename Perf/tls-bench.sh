#!/usr/bin/env bash
# TLS benchmark: Sluice vs HAProxy 2.6 vs nginx, on loopback, in one run.
#   termination: TLS ends in the proxy, HTTP/1.1 to a plain nginx origin (keep-alive upstream)
#   passthrough: the proxy reads the SNI and tunnels the bytes to an nginx TLS origin
# For each: keep-alive requests (wrk), full handshakes (a new connection per request,
# `Connection: close`, no session resumption: a small C client built here, because wrk and
# h2load both resume sessions), bulk (1 MiB responses over keep-alive). The proxy's CPU
# comes from /proc/PID/stat deltas. Every parameter is an environment variable.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build-tlsbench/release/sluice}"
MODES="${MODES:-sluice haproxy nginx}"
# sluice-base: another Sluice binary (SLUICE_BASE_BIN, e.g. a build of an earlier commit), same
# configuration, for before/after comparisons in one run
SLUICE_BASE_BIN="${SLUICE_BASE_BIN:-}"
# sluice-epoll / sluice-uring: SLUICE_BIN with --io-backend epoll / io_uring (the ready line
# must name the backend asked for, else the mode fails)
LOADS="${LOADS:-term-ka term-hs term-bulk pass-ka pass-hs pass-bulk}"
CERT_KIND="${CERT_KIND:-ec}"         # ec (ECDSA P-256) or rsa (RSA 2048), same for every server
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
ROUNDS="${ROUNDS:-3}"
SECS="${SECS:-4}"
WARMUP="${WARMUP:-1}"
KA_CONNS="${KA_CONNS:-50}"           # wrk -c for keep-alive requests
BULK_CONNS="${BULK_CONNS:-4}"        # wrk -c for bulk
HS_CONNS="${HS_CONNS:-32}"           # concurrent connections of the handshake client
HS_TLS="${HS_TLS:-0}"                # handshake client: 0 = newest both sides offer, 12, 13
UPSTREAM_KEEPALIVE="${UPSTREAM_KEEPALIVE:-32}"
SYSCALLS="${SYSCALLS:-1}"            # 1: one more round per proxy counting system calls (perf stat; not in the CPU figures)
# the system call round counts raw_syscalls:sys_enter (the total) and these calls by name
BASE_PORT="${BASE_PORT:-17300}"
OUT_DIR="${OUT_DIR:-$HERE/out}"
SLUICE_SRC_REV="${SLUICE_SRC_REV:-}"  # the commit the binary was built from (default: this tree's HEAD)

SNI=localhost                        # wrk sends the URL's host as SNI and Host
SMALL=64
BULK=1048576
O_HTTP=$((BASE_PORT + 1))            # origin, plain HTTP (termination upstream)
O_TLS=$((BASE_PORT + 2))             # origin, HTTPS (passthrough target)
P_TERM=$((BASE_PORT + 10))
P_PASS=$((BASE_PORT + 11))

STAMP="$(date +%Y%m%d-%H%M%S)"
RUN_DIR="$OUT_DIR/tls-$STAMP"
RESULTS="$RUN_DIR/results.txt"
LIB=(python3 "$HERE/benchlib.py")
TLIB=(python3 "$HERE/tls_bench.py")

BENCH_NAME=tls-bench
# shellcheck source=Perf/procs.sh
source "$HERE/procs.sh"
# shellcheck source=Perf/benchlib.sh
source "$HERE/benchlib.sh"

need python3 python3
need taskset util-linux
need wrk wrk
need openssl openssl
need cc gcc
need /usr/include/openssl/ssl.h libssl-dev
need nginx nginx
need /usr/lib/nginx/modules/ngx_stream_module.so libnginx-mod-stream   # ssl_preread for passthrough
case " $MODES " in *" haproxy "*) need haproxy haproxy ;; esac
if [ "$SYSCALLS" = 1 ] && ! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    log "perf cannot count syscall tracepoints here: SYSCALLS=0"
    SYSCALLS=0
fi
bench_setup wrk

# ------------------------------------------------------------------ certificates, client
CERTS="$RUN_DIR/certs"
"${TLIB[@]}" certs "$CERTS" "$CERT_KIND"
case "$CERT_KIND" in ec) CERT_DESC="ECDSA P-256 leaf (CN/SAN localhost) signed by a throw-away CA" ;;
    rsa) CERT_DESC="RSA 2048 leaf (CN/SAN localhost) signed by a throw-away CA" ;;
    *) die "CERT_KIND: ec or rsa" ;; esac

cat >"$RUN_DIR/tls-hs.c" <<'EOF'
/* A new TLS connection per request: connect, full handshake (fresh SSL object, no session
 * offered, tickets off), GET with Connection: close, read to EOF, close; CONC at a time.
 * usage: tls-hs PORT SNI PATH SECONDS CONC TLSVER(0|12|13) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, CONNECTING, HANDSHAKE, WRITING, READING };
typedef struct { int fd, state; SSL *ssl; size_t off; char head[12]; int headlen; } conn;
static SSL_CTX *ctx;
static struct sockaddr_in addr;
static const char *sni;
static char req[512];
static size_t reqlen;
static int ep;
static long ok, errors, resumed, nbytes;
static double deadline;
static const char *version = "?";

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void start(conn *c) {
    c->state = IDLE; c->ssl = NULL; c->off = 0; c->headlen = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { errors++; return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        errors++; close(c->fd); c->fd = -1; return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = CONNECTING;
}

static void finish(conn *c, int good) {
    if (good) ok++; else errors++;
    if (c->ssl) {
        if (SSL_session_reused(c->ssl)) resumed++;
        SSL_free(c->ssl);
    }
    close(c->fd);
    c->fd = -1; c->state = IDLE; c->ssl = NULL;
    if (now() < deadline) start(c);
}

static int want(conn *c, int r) {
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static void drive(conn *c, unsigned events) {
    char buf[65536];
    for (;;) {
        switch (c->state) {
        case CONNECTING: {
            int err = 0; socklen_t l = sizeof err;
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) { finish(c, 0); return; }
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_tlsext_host_name(c->ssl, sni);
            c->state = HANDSHAKE;
            break;
        }
        case HANDSHAKE: {
            int r = SSL_connect(c->ssl);
            if (r == 1) { version = SSL_get_version(c->ssl); c->state = WRITING; break; }
            if (want(c, r)) return;
            finish(c, 0); return;
        }
        case WRITING: {
            int r = SSL_write(c->ssl, req + c->off, (int)(reqlen - c->off));
            if (r > 0) { c->off += r; if (c->off == reqlen) c->state = READING; break; }
            if (want(c, r)) return;
            finish(c, 0); return;
        }
        case READING: {
            int r = SSL_read(c->ssl, buf, sizeof buf);
            if (r > 0) {
                if (c->headlen < 12) {
                    int n = r < 12 - c->headlen ? r : 12 - c->headlen;
                    memcpy(c->head + c->headlen, buf, n); c->headlen += n;
                }
                nbytes += r;
                break;
            }
            if (want(c, r)) return;
            int e = SSL_get_error(c->ssl, r);
            finish(c, (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) && c->headlen == 12 &&
                          memcmp(c->head, "HTTP/1.1 200", 12) == 0);
            return;
        }
        default: return;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: tls-hs PORT SNI PATH SECONDS CONC TLSVER\n"); return 2; }
    int port = atoi(argv[1]), conc = atoi(argv[5]), ver = atoi(argv[6]);
    double secs = atof(argv[4]);
    sni = argv[2];
    reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", argv[3], sni);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET; addr.sin_port = htons(port); addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (ver == 12) { SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION); }
    if (ver == 13) { SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION); SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION); }
    ep = epoll_create1(EPOLL_CLOEXEC);
    conn *cs = calloc(conc, sizeof *cs);
    double t0 = now();
    deadline = t0 + secs;
    for (int i = 0; i < conc; i++) start(&cs[i]);
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        int active = 0;
        for (int i = 0; i < conc; i++) {
            if (cs[i].state == IDLE && t < deadline) start(&cs[i]);
            if (cs[i].state != IDLE) active++;
        }
        if (!active || t > deadline + 10) break;
        int n = epoll_wait(ep, evs, 256, 20);
        for (int i = 0; i < n; i++) drive(evs[i].data.ptr, evs[i].events);
    }
    printf("connections=%ld errors=%ld resumed=%ld bytes=%ld seconds=%.3f version=%s\n",
           ok, errors, resumed, nbytes, now() - t0, version);
    return 0;
}
EOF
cc -O2 -o "$RUN_DIR/tls-hs" "$RUN_DIR/tls-hs.c" -lssl -lcrypto || die "cannot build the handshake client"

# ------------------------------------------------------------------ meta
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.proxy_cpu "$PROXY_CPU"
put meta.load_cpu "$LOAD_CPU"
put meta.secs "$SECS"
put meta.warmup "$WARMUP"
put meta.rounds "$ROUNDS"
put meta.ka_conns "$KA_CONNS"
put meta.bulk_conns "$BULK_CONNS"
put meta.hs_conns "$HS_CONNS"
put meta.small "$SMALL"
put meta.cert "$CERT_DESC"
put meta.haproxy "$(haproxy -v 2>/dev/null | head -1 || echo 'not installed')"
put meta.nginx "$(nginx -V 2>&1 | grep -E 'nginx version|built with' | tr '\n' ' ')"
put meta.openssl "$(openssl version)"
put meta.wrk "$(wrk -v 2>&1 | head -1)"
put meta.kernel "$(uname -r)"
sluice_meta() {
    if [ -x "$SLUICE_BIN" ]; then
        put meta.sluice "$SLUICE_BIN ($(stat -c %y "$SLUICE_BIN" | cut -d. -f1), sha256 $(sha256sum "$SLUICE_BIN" | cut -c1-12), built from ${SLUICE_SRC_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')})"
    else
        put meta.sluice "not found at $SLUICE_BIN"
    fi
}
sluice_meta
# what wrk negotiates (it is not configurable): one connection to a probe server
PROBE_PORT=$((BASE_PORT + 20))
"${TLIB[@]}" tls-probe "$PROBE_PORT" "$CERTS/bench.pem" "$CERTS/bench.key" >"$RUN_DIR/wrk-probe.txt" 2>&1 &
PROBE_PID=$!
wait_port "$PROBE_PORT" 5 || true
wrk -t1 -c1 -d1s "https://$SNI:$PROBE_PORT/" >/dev/null 2>&1 || true
wait "$PROBE_PID" 2>/dev/null || true
put meta.wrk_tls "wrk negotiates $(head -1 "$RUN_DIR/wrk-probe.txt")"
log "output: $RUN_DIR"

# ------------------------------------------------------------------ origin (LOAD_CPU)
ORIGIN="$RUN_DIR/origin"
mkdir -p "$ORIGIN/www" "$ORIGIN/tmp"
head -c "$SMALL" /dev/zero | tr '\0' 'x' >"$ORIGIN/www/small.bin"
head -c "$BULK" /dev/zero | tr '\0' 'x' >"$ORIGIN/www/bulk.bin"
origin_conf "$ORIGIN" "$O_HTTP" "
    server {
        listen 127.0.0.1:$O_TLS ssl backlog=4096;
        ssl_certificate $CERTS/bench.pem;
        ssl_certificate_key $CERTS/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;   # nginx 1.22's default stops at TLS 1.2
        root $ORIGIN/www;
    }"
log "nginx origin on CPU $LOAD_CPU: http :$O_HTTP, https :$O_TLS"
start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nginx -p "$ORIGIN" -c "$ORIGIN/nginx.conf" -e "$ORIGIN/error.log"
wait_port "$O_HTTP" 10 && wait_port "$O_TLS" 10 || die "origin did not start (see $ORIGIN/error.log)"

# ------------------------------------------------------------------ proxies (PROXY_CPU)
haproxy_cfg() {
    cat >"$1" <<EOF
global
    nbthread 1
    maxconn 4000
    tune.pipesize 1048576
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    timeout tunnel 1h
frontend term
    mode http
    bind 127.0.0.1:$P_TERM ssl crt $CERTS/haproxy.pem alpn http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    use_backend origin if { req.hdr(host),field(1,:) -m str -i $SNI }
backend origin
    mode http
    http-reuse safe
    server o 127.0.0.1:$O_HTTP
frontend pass
    mode tcp
    bind 127.0.0.1:$P_PASS
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend tlsorigin if { req_ssl_sni -i $SNI }
backend tlsorigin
    mode tcp
    option splice-request
    option splice-response
    server t 127.0.0.1:$O_TLS
EOF
}

nginx_cfg() {
    proxy_nginx_conf "$1" "127.0.0.1:$P_TERM ssl" "load_module /usr/lib/nginx/modules/ngx_stream_module.so;
" "" "stream {
    upstream tlsorigin { server 127.0.0.1:$O_TLS; }
    map \$ssl_preread_server_name \$be { $SNI tlsorigin; default tlsorigin; }
    server {
        listen 127.0.0.1:$P_PASS backlog=4096;
        ssl_preread on;
        proxy_pass \$be;
    }
}
"
}

sluice_cfg() { # sluice_cfg FILE WITH_TERMINATION(1|0)
    {
        cat <<EOF
workers: 1
timeouts:
  connect: 5s
  client: 30s
  server: 30s
  drain: 1s
  tlsHello: 5s
limits:
  maxConnections: 9000
  upstreamIdlePerEndpoint: $UPSTREAM_KEEPALIVE
  upstreamIdle: 30s
tuning:
  pipeSize: 1048576
listeners:
  - name: pass
    address: 127.0.0.1:$P_PASS
    protocol: tls
    routes:
      - host: $SNI
        service: tlsorigin
EOF
        [ "$2" = 1 ] && cat <<EOF
  - name: term
    address: 127.0.0.1:$P_TERM
    protocol: tls
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
EOF
        cat <<EOF
services:
  - name: origin
    endpoints: [ "127.0.0.1:$O_HTTP" ]
  - name: tlsorigin
    endpoints: [ "127.0.0.1:$O_TLS" ]
EOF
    } >"$1"
}

TERM_OK=1
start_proxy() { # start_proxy MODE -> PROXY_PID, LOGF
    local mode=$1 cfg i
    TERM_OK=1
    case "$mode" in
    haproxy)
        cfg="$RUN_DIR/$KEY.cfg"
        haproxy_cfg "$cfg"
        start_haproxy "$cfg" || { log "haproxy -c: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        ;;
    nginx)
        cfg="$RUN_DIR/$KEY.nginx"
        nginx_cfg "$cfg"
        start_nginx "$cfg" || { log "nginx -t: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        ;;
    sluice | sluice-base | sluice-epoll | sluice-uring)
        local bin="$SLUICE_BIN" io=() want=""
        case "$mode" in sluice-epoll) want=epoll ;; sluice-uring) want=io_uring ;; esac
        [ -n "$want" ] && io=(--io-backend "$want")
        [ "$mode" = sluice-base ] && bin="$SLUICE_BASE_BIN"
        cfg="$RUN_DIR/$KEY.yaml"
        sluice_cfg "$cfg" 1
        if ! "$bin" check --config "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1; then
            put "$KEY.term" "termination config refused: $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log" | cut -c1-300)"
            log "$KEY: termination config refused by this binary; passthrough only"
            TERM_OK=0
            sluice_cfg "$cfg" 0
            "$bin" check --config "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 ||
                { log "sluice check: $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log")"; return 1; }
        fi
        LOGF="$RUN_DIR/$KEY.log"
        start_bg "$LOGF" taskset -c "$PROXY_CPU" "$bin" run --config "$cfg" --workers 1 --log-level notice "${io[@]}"
        PROXY_PID=$BG_PID
        sluice_ready "$LOGF" "$PROXY_PID" || { log "sluice not ready (see $LOGF)"; return 1; }
        if [ -n "$want" ]; then
            grep -m1 'ready generation=1' "$LOGF" | grep -qE "io=$want([^a-z_]|\$)" ||
                { log "$mode: the ready line does not say io=$want: $(grep -m1 'ready generation=1' "$LOGF")"; return 1; }
        fi
        ;;
    esac
    wait_port "$P_PASS" 5 || { log "$mode not listening on :$P_PASS"; return 1; }
    if [ "$TERM_OK" = 1 ]; then wait_port "$P_TERM" 5 || { log "$mode not listening on :$P_TERM"; return 1; }; fi
}


run_load() { # run_load LOAD
    local ld=$1 port path size out c0 c1 x0 x1 summary
    case "$ld" in term-*) port=$P_TERM ;; pass-*) port=$P_PASS ;; esac
    case "$ld" in *-bulk) path=/bulk.bin size=$BULK ;; *) path=/small.bin size=$SMALL ;; esac
    out="$RUN_DIR/$KEY.$ld.out"
    case "$ld" in
    *-hs)
        [ "$WARMUP" != 0 ] && taskset -c "$LOAD_CPU" "$RUN_DIR/tls-hs" "$port" "$SNI" "$path" "$WARMUP" "$HS_CONNS" "$HS_TLS" >/dev/null 2>&1 || true
        perf_start "$ld"
        x0=$(ctx_now)
        c0=$(cpu_now)
        taskset -c "$LOAD_CPU" "$RUN_DIR/tls-hs" "$port" "$SNI" "$path" "$SECS" "$HS_CONNS" "$HS_TLS" >"$out" 2>&1 || true
        c1=$(cpu_now)
        x1=$(ctx_now)
        kill -0 "$PROXY_PID" 2>/dev/null || { put "$KEY.$ld.error" "proxy exited during the load"; log "$KEY $ld: proxy exited"; return 0; }
        summary=$("${TLIB[@]}" hs "$RESULTS" "$KEY.$ld" "$out" "$c0" "$c1" || true)
        ;;
    *)
        local conns=$KA_CONNS
        [ "$ld" = "${ld%-bulk}" ] || conns=$BULK_CONNS
        local url="https://$SNI:$port$path"
        [ "$WARMUP" != 0 ] && taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
        perf_start "$ld"
        x0=$(ctx_now)
        c0=$(cpu_now)
        taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${SECS}s" --latency "$url" >"$out" 2>&1 || true
        c1=$(cpu_now)
        x1=$(ctx_now)
        kill -0 "$PROXY_PID" 2>/dev/null || { put "$KEY.$ld.error" "proxy exited during the load"; log "$KEY $ld: proxy exited"; return 0; }
        summary=$("${TLIB[@]}" wrk "$RESULTS" "$KEY.$ld" "$out" "$c0" "$c1" "$size" || true)
        ;;
    esac
    put "$KEY.$ld.ctx" "$((x1 - x0))"
    log "$KEY $ld: $summary"
    perf_stop "$ld"
    sleep 0.3
}

run_mode() {
    local mode=$1 ld
    KEY="$mode@$ROUND"
    PROXY_PID=""
    if { [ "$mode" = sluice ] || [ "$mode" = sluice-epoll ] || [ "$mode" = sluice-uring ]; } && [ ! -x "$SLUICE_BIN" ]; then
        put "$KEY.status" "SKIP: no binary at $SLUICE_BIN"
        return 0
    fi
    if [ "$mode" = sluice-base ] && [ ! -x "$SLUICE_BASE_BIN" ]; then
        put "$KEY.status" "SKIP: SLUICE_BASE_BIN is not an executable"
        return 0
    fi
    log "starting $mode on CPU $PROXY_CPU"
    if ! start_proxy "$mode"; then
        put "$KEY.status" "failed to start (see $RUN_DIR/$KEY.*)"
        [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
        return 0
    fi
    put "$KEY.check_pass" "$("${TLIB[@]}" check "$P_PASS" "$SNI" /small.bin "$SMALL" "$CERTS/ca.pem" "$RUN_DIR/$KEY.pass.fp" 2>&1 | tail -1)"
    [ "$TERM_OK" = 1 ] && put "$KEY.check_term" "$("${TLIB[@]}" check "$P_TERM" "$SNI" /small.bin "$SMALL" "$CERTS/ca.pem" "$RUN_DIR/$KEY.term.fp" http 2>&1 | tail -1)"
    for ld in $LOADS; do
        kill -0 "$PROXY_PID" 2>/dev/null || break
        case "$ld" in term-*) [ "$TERM_OK" = 1 ] || continue ;; esac
        run_load "$ld"
    done
    if kill -0 "$PROXY_PID" 2>/dev/null; then put "$KEY.status" ok; else put "$KEY.status" "proxy exited during the run (see $LOGF)"; fi
    stop_pid "$PROXY_PID"
}

run_rounds
[ "$SYSCALLS" = 1 ] && syscall_round
end_rounds

REPORT="$RUN_DIR/report.md"
if [ "${REPORT_KIND:-tls}" = backend ]; then
    python3 "$HERE/backend_report.py" "$RESULTS" >"$REPORT"
else
    "${TLIB[@]}" report "$RESULTS" >"$REPORT"
    cp "$REPORT" "$OUT_DIR/tls-bench-latest.md"
fi
cat "$REPORT"
log "report: $REPORT"
