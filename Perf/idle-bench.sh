#!/usr/bin/env bash
# Idle benchmark: what idle and half-open connections cost, Sluice vs HAProxy 2.6 vs nginx,
# on loopback, in one run (each proxy alone, one worker/thread, the same origins):
#   1. an HTTP listener routing to two origins: IDLE_CLIENTS keep-alive clients each send one
#      request, read the response and stay open, idle; after IDLE_WAIT seconds: the proxy's
#      file descriptors per idle client and the upstream connections still held; then a wrk
#      keep-alive load (the idle clients still open): requests per upstream connection opened.
#   2. a TLS (SNI passthrough) listener: TLS_CONNS connections that send nothing, then (a
#      fresh proxy) TLS_CONNS that send the first HELLO_BYTES bytes of a real ClientHello,
#      held open: the proxy's RSS per connection.
# See Perf/README.md. Every parameter is an environment variable (defaults below).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

SLUICE_BIN="${SLUICE_BIN:-$ROOT/.build/release/sluice}"
SLUICE_SRC_REV="${SLUICE_SRC_REV:-}"  # the commit the binary was built from (default: this tree's HEAD)
MODES="${MODES:-sluice haproxy nginx}"
TESTS="${TESTS:-http tls-none tls-hello}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
ROUNDS="${ROUNDS:-3}"
IDLE_CLIENTS="${IDLE_CLIENTS:-5000}"  # idle keep-alive HTTP clients
IDLE_BATCH="${IDLE_BATCH:-100}"      # of them with a request in flight at a time
IDLE_WAIT="${IDLE_WAIT:-3}"          # seconds between the last response and counting
UPSTREAM_KEEPALIVE="${UPSTREAM_KEEPALIVE:-32}"  # sluice upstreamIdlePerEndpoint (per endpoint)
NGINX_KEEPALIVE="${NGINX_KEEPALIVE:-$UPSTREAM_KEEPALIVE}"  # nginx keepalive (per upstream block: both origins)
WRK_THREADS="${WRK_THREADS:-1}"
WRK_CONNS="${WRK_CONNS:-50}"
WRK_SECS="${WRK_SECS:-5}"
TLS_CONNS="${TLS_CONNS:-10000}"      # half-open TLS connections
TLS_CLIENTS="${TLS_CLIENTS:-2}"      # client processes holding them (each stays under its fd limit)
HAPROXY_GLOBAL="${HAPROXY_GLOBAL:-}"  # extra lines for HAProxy's global section (\n-separated), e.g. tune.pool-low-fd-ratio 80
HELLO_BYTES="${HELLO_BYTES:-100}"    # how much of the ClientHello tls-hello sends
TLS_HELLO_TIMEOUT="${TLS_HELLO_TIMEOUT:-120}"  # seconds: sluice tlsHello, HAProxy inspect-delay, nginx preread_timeout
TLS_SETTLE="${TLS_SETTLE:-2}"        # seconds between "all accepted" and reading RSS
BASE_PORT="${BASE_PORT:-17400}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

HOST=a.example.com
SNI=localhost
O1=$((BASE_PORT + 1)) O2=$((BASE_PORT + 2))  # origin, plain HTTP (two "servers")
O_TLS=$((BASE_PORT + 3))                      # origin, HTTPS (the passthrough target)
O_STATUS=$((BASE_PORT + 4))                   # origin stub_status (accept counter)
P_HTTP=$((BASE_PORT + 10))
P_TLS=$((BASE_PORT + 11))

STAMP="$(date +%Y%m%d-%H%M%S)"
RUN_DIR="$OUT_DIR/idle-$STAMP"
RESULTS="$RUN_DIR/results.txt"
LIB=(python3 "$HERE/benchlib.py")
ILIB=(python3 "$HERE/idle_bench.py")
TLIB=(python3 "$HERE/tls_bench.py")

BENCH_NAME=idle-bench
# shellcheck source=Perf/procs.sh
source "$HERE/procs.sh"

# ------------------------------------------------------------------ tools
need python3 python3
need taskset util-linux
need wrk wrk
need openssl openssl
need nginx nginx
need /usr/lib/nginx/modules/ngx_stream_module.so libnginx-mod-stream   # ssl_preread
case " $MODES " in *" haproxy "*) need haproxy haproxy ;; esac
[ "$(nproc --all)" -gt "$PROXY_CPU" ] && [ "$(nproc --all)" -gt "$LOAD_CPU" ] ||
    die "needs CPUs $PROXY_CPU and $LOAD_CPU (this machine has $(nproc --all))"
ulimit -n "$(ulimit -Hn)"   # inherited by every process started here, the proxies included
NOFILE=$(ulimit -n)
for m in $MODES; do
    case "$m" in sluice | haproxy | nginx) ;; *) die "bad mode '$m' (sluice, haproxy, nginx)" ;; esac
done
for t in $TESTS; do
    case "$t" in http | tls-none | tls-hello) ;; *) die "bad test '$t' (http, tls-none, tls-hello)" ;; esac
done
# the proxy holds one fd per client, plus upstreams; a client process holds its share
[ $((IDLE_CLIENTS * 2 + WRK_CONNS * 2 + 200)) -le "$NOFILE" ] ||
    die "IDLE_CLIENTS=$IDLE_CLIENTS may need up to $((IDLE_CLIENTS * 2 + WRK_CONNS * 2 + 200)) fds in the proxy; the limit is $NOFILE"
[ $((TLS_CONNS + 200)) -le "$NOFILE" ] || die "TLS_CONNS=$TLS_CONNS does not fit the proxy's open-files limit ($NOFILE)"
# HAProxy's maxsock (2 × maxconn + 14 here) must fit ulimit-n: it gets fewer connections
HAPROXY_TLS_CONNS=$TLS_CONNS
[ $(((TLS_CONNS + 50) * 2 + 14)) -le "$NOFILE" ] || HAPROXY_TLS_CONNS=$(((NOFILE - 14) / 2 - 50 - 50))
[ $((TLS_CONNS / TLS_CLIENTS + 100)) -le "$NOFILE" ] || die "raise TLS_CLIENTS: $((TLS_CONNS / TLS_CLIENTS)) per client process"
[ "$(getent ahostsv4 localhost | awk 'NR==1{print $1}')" = 127.0.0.1 ] || die "localhost must resolve to 127.0.0.1"

mkdir -p "$RUN_DIR"
: >"$RESULTS"
put() { "${LIB[@]}" put "$RESULTS" "$1" "$2"; }

# ------------------------------------------------------------------ meta
put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put meta.proxy_cpu "$PROXY_CPU"
put meta.load_cpu "$LOAD_CPU"
put meta.rounds "$ROUNDS"
put meta.modes "$MODES"
put meta.idle_clients "$IDLE_CLIENTS"
put meta.idle_wait "$IDLE_WAIT"
put meta.keepalive "$UPSTREAM_KEEPALIVE"
put meta.nginx_keepalive "$NGINX_KEEPALIVE"
put meta.wrk "wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s, keep-alive, 64 B"
put meta.tls_conns "$TLS_CONNS"
put meta.haproxy_tls_conns "$HAPROXY_TLS_CONNS"
put meta.haproxy_global "$(printf '%b' "$HAPROXY_GLOBAL" | tr '\n' ';')"
put meta.tls_hello "${TLS_HELLO_TIMEOUT}s"
put meta.host "$HOST"
put meta.nofile "$NOFILE"
put meta.haproxy "$(haproxy -v 2>/dev/null | head -1 || echo 'not installed')"
put meta.nginx "$(nginx -v 2>&1 | head -1)"
put meta.wrk_version "$(wrk -v 2>&1 | head -1)"
put meta.python "$(python3 -V 2>&1), $(python3 -c 'import ssl; print(ssl.OPENSSL_VERSION)')"
put meta.kernel "$(uname -r)"
sluice_meta() {
    if [ -x "$SLUICE_BIN" ]; then
        put meta.sluice "$SLUICE_BIN ($(stat -c %y "$SLUICE_BIN" | cut -d. -f1), sha256 $(sha256sum "$SLUICE_BIN" | cut -c1-12), built from ${SLUICE_SRC_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')})"
    else
        put meta.sluice "not found at $SLUICE_BIN"
    fi
}
sluice_meta
log "output: $RUN_DIR"


# ------------------------------------------------------------------ certificates, ClientHello
CERTS="$RUN_DIR/certs"
"${TLIB[@]}" certs "$CERTS" ec
HELLO="$RUN_DIR/clienthello.bin"
put meta.hello "$("${ILIB[@]}" hello "$HELLO" "$SNI") bytes (Python ssl, SNI $SNI); tls-hello sends the first $HELLO_BYTES"

# ------------------------------------------------------------------ origin (LOAD_CPU)
ORIGIN="$RUN_DIR/origin"
mkdir -p "$ORIGIN/www" "$ORIGIN/tmp"
head -c 64 /dev/zero | tr '\0' 'x' >"$ORIGIN/www/64.bin"
temps() { local d=$1; echo "client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;"; }
cat >"$ORIGIN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $ORIGIN/nginx.pid;
error_log $ORIGIN/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $((NOFILE - 100)); use epoll; }
http {
    access_log off;
    sendfile on;
    $(temps "$ORIGIN")
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    server {
        listen 127.0.0.1:$O1 backlog=4096;
        listen 127.0.0.1:$O2 backlog=4096;
        root $ORIGIN/www;
        add_header X-Origin \$server_port always;
    }
    server {
        listen 127.0.0.1:$O_TLS ssl backlog=4096;
        ssl_certificate $CERTS/bench.pem;
        ssl_certificate_key $CERTS/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $ORIGIN/www;
    }
    server {
        listen 127.0.0.1:$O_STATUS;
        location = /status { stub_status; }
    }
}
EOF
log "nginx origin on CPU $LOAD_CPU: http :$O1 :$O2, https :$O_TLS, stub_status :$O_STATUS"
start_bg "$ORIGIN/stderr.log" taskset -c "$LOAD_CPU" nginx -p "$ORIGIN" -c "$ORIGIN/nginx.conf" -e "$ORIGIN/error.log"
for p in $O1 $O2 $O_TLS $O_STATUS; do wait_port "$p" 10 || die "origin did not start (see $ORIGIN/error.log)"; done

# ------------------------------------------------------------------ proxy configs
# kind: http (listener :P_HTTP → O1, O2) or tls (SNI passthrough :P_TLS → O_TLS)
haproxy_cfg() { # haproxy_cfg FILE KIND
    if [ "$2" = http ]; then
        cat >"$1" <<EOF
global
    nbthread 1
    maxconn 9000
$(printf '%b' "$HAPROXY_GLOBAL" | sed 's/^/    /')
defaults
    mode http
    http-reuse safe
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
frontend web
    bind 127.0.0.1:$P_HTTP
    use_backend origin if { req.hdr(host),field(1,:) -m str -i $HOST }
backend origin
    balance roundrobin
    server o1 127.0.0.1:$O1
    server o2 127.0.0.1:$O2
EOF
    else
        # HAProxy reserves two fds per connection (maxsock = 2 × maxconn + a few) and refuses
        # to start when that exceeds ulimit-n: under NOFILE it holds at most HAPROXY_TLS_CONNS
        cat >"$1" <<EOF
global
    nbthread 1
    maxconn $((HAPROXY_TLS_CONNS + 50))
    ulimit-n $NOFILE
defaults
    mode tcp
    timeout connect 5s
    timeout client 600s
    timeout server 600s
frontend pass
    bind 127.0.0.1:$P_TLS
    tcp-request inspect-delay ${TLS_HELLO_TIMEOUT}s
    tcp-request content accept if { req.ssl_hello_type 1 }
    use_backend tlsorigin if { req.ssl_sni -i $SNI }
backend tlsorigin
    server t 127.0.0.1:$O_TLS
EOF
    fi
}

nginx_cfg() { # nginx_cfg DIR KIND (writes DIR/nginx.conf)
    local d=$1
    mkdir -p "$d/tmp"
    {
        cat <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $((NOFILE - 100)); use epoll; }
EOF
        if [ "$2" = http ]; then
            cat <<EOF
http {
    access_log off;
    $(temps "$d")
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    upstream origin {
        server 127.0.0.1:$O1;
        server 127.0.0.1:$O2;
        keepalive $NGINX_KEEPALIVE;
        keepalive_requests 10000000;
        keepalive_timeout 600s;
    }
    server {
        listen 127.0.0.1:$P_HTTP backlog=4096;
        server_name $HOST;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
        else
            cat <<EOF
stream {
    upstream tlsorigin { server 127.0.0.1:$O_TLS; }
    map \$ssl_preread_server_name \$be { $SNI tlsorigin; default tlsorigin; }
    server {
        listen 127.0.0.1:$P_TLS backlog=4096;
        ssl_preread on;
        preread_timeout ${TLS_HELLO_TIMEOUT}s;
        proxy_timeout 600s;
        proxy_pass \$be;
    }
}
EOF
        fi
    } >"$d/nginx.conf"
}

sluice_cfg() { # sluice_cfg FILE KIND
    {
        cat <<EOF
workers: 1
timeouts:
  connect: 5s
  client: 600s
  server: 600s
  tunnel: 1h
  drain: 1s
  tlsHello: ${TLS_HELLO_TIMEOUT}s
limits:
  maxConnections: $NOFILE
  upstreamIdlePerEndpoint: $UPSTREAM_KEEPALIVE
  upstreamIdle: 600s
listeners:
EOF
        if [ "$2" = http ]; then
            cat <<EOF
  - name: web
    address: 127.0.0.1:$P_HTTP
    protocol: http
    routes:
      - host: $HOST
        service: origin
services:
  - name: origin
    algorithm: roundrobin
    endpoints: [ "127.0.0.1:$O1", "127.0.0.1:$O2" ]
EOF
        else
            cat <<EOF
  - name: pass
    address: 127.0.0.1:$P_TLS
    protocol: tls
    routes:
      - host: $SNI
        service: tlsorigin
services:
  - name: tlsorigin
    endpoints: [ "127.0.0.1:$O_TLS" ]
EOF
        fi
    } >"$1"
}

PROXY_PID="" LOGF=""
start_proxy() { # start_proxy MODE KIND -> PROXY_PID, LOGF; returns 1 on failure
    local mode=$1 kind=$2 cfg i port
    case "$kind" in http) port=$P_HTTP ;; *) port=$P_TLS ;; esac
    case "$mode" in
    haproxy)
        cfg="$RUN_DIR/$KEY.cfg"
        haproxy_cfg "$cfg" "$kind"
        haproxy -c -f "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 || { log "haproxy -c: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        LOGF="$RUN_DIR/$KEY.log"
        start_bg "$LOGF" taskset -c "$PROXY_CPU" haproxy -db -f "$cfg"
        PROXY_PID=$BG_PID
        ;;
    nginx)
        cfg="$RUN_DIR/$KEY.nginx"
        nginx_cfg "$cfg" "$kind"
        nginx -t -p "$cfg" -c "$cfg/nginx.conf" -e "$cfg/error.log" >"$RUN_DIR/$KEY.check.log" 2>&1 ||
            { log "nginx -t: $(cat "$RUN_DIR/$KEY.check.log")"; return 1; }
        LOGF="$cfg/error.log"
        start_bg "$RUN_DIR/$KEY.log" taskset -c "$PROXY_CPU" nginx -p "$cfg" -c "$cfg/nginx.conf" -e "$cfg/error.log"
        PROXY_PID=$BG_PID
        ;;
    sluice)
        cfg="$RUN_DIR/$KEY.yaml"
        sluice_cfg "$cfg" "$kind"
        "$SLUICE_BIN" check --config "$cfg" >"$RUN_DIR/$KEY.check.log" 2>&1 ||
            { log "sluice check: $(tr '\n' ' ' <"$RUN_DIR/$KEY.check.log")"; return 1; }
        LOGF="$RUN_DIR/$KEY.log"
        # info: SIGUSR1's counter lines are logged at info
        start_bg "$LOGF" taskset -c "$PROXY_CPU" "$SLUICE_BIN" run --config "$cfg" --workers 1 --log-level info
        PROXY_PID=$BG_PID
        sluice_ready "$LOGF" "$PROXY_PID" || { log "sluice not ready (see $LOGF)"; return 1; }
        ;;
    esac
    wait_port "$port" 5 || { log "$mode not listening on :$port (see $LOGF)"; return 1; }
    kill -0 "$PROXY_PID" 2>/dev/null || { log "$mode exited (see $LOGF)"; return 1; }
}

CLIENT_PIDS=()
stop_clients() {
    local p
    for p in "${CLIENT_PIDS[@]+"${CLIENT_PIDS[@]}"}"; do stop_pid "$p"; done
    CLIENT_PIDS=()
}
alive_count() { # alive_count READY_FILE... : SIGUSR1 each client, sum READY.alive
    local f p i total=0 v
    for f in "$@"; do rm -f "$f.alive"; done
    for p in "${CLIENT_PIDS[@]}"; do kill -USR1 "$p" 2>/dev/null || true; done
    for f in "$@"; do
        for i in $(seq 100); do [ -s "$f.alive" ] && break; sleep 0.1; done
        v=$(cat "$f.alive" 2>/dev/null || echo 0)
        total=$((total + v))
    done
    echo "$total"
}
sluice_counters() { # sluice_counters -> "http_requests pooled_reuses accepted" after a SIGUSR1
    local before i
    before=$(grep -c 'pooled_reuses=' "$LOGF" || true)
    kill -USR1 "$PROXY_PID" 2>/dev/null || return 0
    for i in $(seq 50); do
        [ "$(grep -c 'pooled_reuses=' "$LOGF" || true)" -gt "$before" ] && break
        sleep 0.1
    done
    "${ILIB[@]}" sluice-counters "$LOGF"
}

# ------------------------------------------------------------------ 1. idle HTTP clients
test_http() {
    local k="$KEY" fb fa ready="$RUN_DIR/$KEY.clients.ready" c a0 a1 out="$RUN_DIR/$KEY.wrk.txt" sc0 sc1
    put "$k.http.check" "$("${LIB[@]}" http-probe "$P_HTTP" "$HOST" /64.bin 4 2>&1 | tail -1 |
        sed 's/^statuses 200×4$/ok/')"
    sleep 0.5
    fb=$("${ILIB[@]}" fds "$PROXY_PID")
    put "$k.http.fds_before" "$fb"
    put "$k.http.upstream_before" "$("${ILIB[@]}" established "$O1,$O2")"
    start_bg "$RUN_DIR/$KEY.clients.log" taskset -c "$LOAD_CPU" "${ILIB[@]}" http-idle "$P_HTTP" "$HOST" /64.bin \
        "$IDLE_CLIENTS" "$IDLE_BATCH" "$ready"
    CLIENT_PIDS=("$BG_PID")
    for c in $(seq 1200); do [ -s "$ready" ] && break; kill -0 "$BG_PID" 2>/dev/null || break; sleep 0.1; done
    if [ ! -s "$ready" ]; then
        put "$k.http.error" "the idle clients did not finish (see $RUN_DIR/$KEY.clients.log)"
        stop_clients
        return 0
    fi
    read -r c bad secs <"$ready"
    put "$k.http.clients" "$c"
    put "$k.http.clients_bad" "$bad"
    log "$KEY: $c idle clients open in $secs s ($bad failed); waiting $IDLE_WAIT s"
    sleep "$IDLE_WAIT"
    fa=$("${ILIB[@]}" fds "$PROXY_PID")
    put "$k.http.fds_after" "$fa"
    put "$k.http.upstream_idle" "$("${ILIB[@]}" established "$O1,$O2")"
    put "$k.http.clients_alive" "$(alive_count "$ready")"
    log "$KEY: proxy fds $fb → $fa, upstream ESTABLISHED $(grep "^$k.http.upstream_idle=" "$RESULTS" | cut -d= -f2)"
    # keep-alive load, the idle clients still open
    [ "$MODE" = sluice ] && sc0=$(sluice_counters)
    a0=$("${ILIB[@]}" accepts "$O_STATUS")
    taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" -H "Host: $HOST" \
        "http://127.0.0.1:$P_HTTP/64.bin" >"$out" 2>&1 || true
    a1=$("${ILIB[@]}" accepts "$O_STATUS")
    [ "$MODE" = sluice ] && sc1=$(sluice_counters)
    put "$k.http.upstream_after_wrk" "$("${ILIB[@]}" established "$O1,$O2")"
    put "$k.http.wrk_accepts" "$((a1 - a0 - 1))" # less the status request's own connection
    "${ILIB[@]}" wrk "$RESULTS" "$k.http" "$out" || put "$k.http.error" "cannot parse $out"
    if [ "$MODE" = sluice ] && [ -n "${sc0:-}" ] && [ -n "${sc1:-}" ]; then
        read -r r0 p0 _ <<<"$sc0"
        read -r r1 p1 _ <<<"$sc1"
        put "$k.http.sluice_requests" "$((r1 - r0))"
        put "$k.http.sluice_reuses" "$((p1 - p0))"
    fi
    log "$KEY: wrk $(grep "^$k.http.wrk_requests=" "$RESULTS" | cut -d= -f2) requests, upstream connections opened $((a1 - a0 - 1))"
    stop_clients
}

# ------------------------------------------------------------------ 2. half-open TLS connections
test_tls() { # test_tls tls-none|tls-hello
    local t=$1 k="$KEY" prefix=0 rb ra i per base readies=() f ok=0 n conns=$TLS_CONNS
    [ "$t" = tls-hello ] && prefix=$HELLO_BYTES
    [ "$MODE" = haproxy ] && conns=$HAPROXY_TLS_CONNS
    put "$k.$t.check" "$("${TLIB[@]}" check "$P_TLS" "$SNI" /64.bin 64 "$CERTS/ca.pem" "$RUN_DIR/$KEY.fp" 2>&1 | tail -1)"
    sleep 1
    base=$("${ILIB[@]}" fds "$PROXY_PID")
    rb=$("${ILIB[@]}" rss "$PROXY_PID")
    put "$k.$t.rss_before" "$rb"
    [ "$MODE" = sluice ] && "${ILIB[@]}" smaps "$PROXY_PID" "$RUN_DIR/$KEY.$t.smaps.before"
    per=$((conns / TLS_CLIENTS))
    for i in $(seq "$TLS_CLIENTS"); do
        n=$per
        [ "$i" = "$TLS_CLIENTS" ] && n=$((conns - per * (TLS_CLIENTS - 1)))
        f="$RUN_DIR/$KEY.$t.ready$i"
        readies+=("$f")
        start_bg "$RUN_DIR/$KEY.$t.client$i.log" taskset -c "$LOAD_CPU" "${ILIB[@]}" tls-hold "$P_TLS" "$n" "$prefix" "$HELLO" "$f"
        CLIENT_PIDS+=("$BG_PID")
    done
    for f in "${readies[@]}"; do
        for i in $(seq 1200); do [ -s "$f" ] && break; sleep 0.1; done
        [ -s "$f" ] && ok=$((ok + $(cut -d' ' -f1 "$f")))
    done
    if ! "${ILIB[@]}" wait-fds "$PROXY_PID" $((base + ok)) 60 >/dev/null; then
        put "$k.$t.error" "the proxy accepted only $(($("${ILIB[@]}" fds "$PROXY_PID") - base)) of $ok connections in 60 s"
    fi
    sleep "$TLS_SETTLE"
    ra=$("${ILIB[@]}" rss "$PROXY_PID")
    put "$k.$t.conns" "$ok"
    put "$k.$t.rss_after" "$ra"
    put "$k.$t.fds" "$(($("${ILIB[@]}" fds "$PROXY_PID") - base))"
    put "$k.$t.unread" "$("${ILIB[@]}" unread "$P_TLS")"
    put "$k.$t.upstream" "$("${ILIB[@]}" established "$O_TLS")"
    put "$k.$t.alive" "$(alive_count "${readies[@]}")"
    if [ "$MODE" = sluice ]; then
        "${ILIB[@]}" smaps "$PROXY_PID" "$RUN_DIR/$KEY.$t.smaps.after"
        put "$k.$t.smaps" "$("${ILIB[@]}" smaps-diff "$RUN_DIR/$KEY.$t.smaps.before" "$RUN_DIR/$KEY.$t.smaps.after" "$ok")"
    fi
    log "$KEY $t: $ok connections, RSS $((rb / 1024)) → $((ra / 1024)) KiB, $(((ra - rb) / (ok > 0 ? ok : 1))) B per connection"
    stop_clients
}

run_test() { # run_test MODE TEST: a fresh proxy for every test
    local mode=$1 t=$2 kind=tls
    [ "$t" = http ] && kind=http
    KEY="$mode@$ROUND"
    MODE=$mode
    PROXY_PID=""
    if [ "$mode" = sluice ] && [ ! -x "$SLUICE_BIN" ]; then
        put "$KEY.$t.status" "SKIP: no binary at $SLUICE_BIN"
        return 0
    fi
    KEY="$mode@$ROUND.$t"
    if ! start_proxy "$mode" "$kind"; then
        KEY="$mode@$ROUND"
        put "$KEY.$t.status" "failed to start (see $RUN_DIR/$mode@$ROUND.$t.*)"
        [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
        return 0
    fi
    local logf=$LOGF
    KEY="$mode@$ROUND"
    LOGF=$logf
    case "$t" in http) test_http ;; *) test_tls "$t" ;; esac
    if kill -0 "$PROXY_PID" 2>/dev/null; then put "$KEY.$t.status" ok; else put "$KEY.$t.status" "proxy exited (see $LOGF)"; fi
    stop_pid "$PROXY_PID"
    sleep 0.5
}

NOISE="$RUN_DIR/noise.txt"
start_bg "$RUN_DIR/noise-monitor.log" taskset -c "$LOAD_CPU" "${LIB[@]}" monitor "$$" "$NOISE" 0.5
NOISE_PID=$BG_PID

T0=$(date +%s)
for ROUND in $(seq "$ROUNDS"); do
    log "round $ROUND of $ROUNDS"
    for m in $MODES; do
        nb=$("${LIB[@]}" noise-begin "$NOISE")
        for t in $TESTS; do run_test "$m" "$t"; done
        "${LIB[@]}" noise-end "$RESULTS" "$m@$ROUND" "$NOISE" "$nb"
    done
done
put meta.noise_top "$(cut -s -d' ' -f2 "$NOISE" 2>/dev/null || true)"
put meta.load_avg "$(cut -d' ' -f1-3 /proc/loadavg)"
stop_pid "$NOISE_PID"
log "measurements done in $(($(date +%s) - T0)) s"

REPORT="$RUN_DIR/report.md"
"${ILIB[@]}" report "$RESULTS" >"$REPORT"
cp "$REPORT" "$OUT_DIR/idle-bench-latest.md"
cat "$REPORT"
log "report: $REPORT (logs and raw results beside it)"
