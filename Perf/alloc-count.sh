#!/usr/bin/env bash
# Allocations on Sluice's data path, counted, not guessed: runs the release binary under an
# LD_PRELOAD malloc counter, warms it up, then reports how many allocations a further
# SHORT short connections (connect, echo 64 B, close) and a BULK MiB transfer each way add.
# Usage: bash Perf/alloc-count.sh   (SHORT=20000 BULK=512 by default)
#
# MODE=http bash Perf/alloc-count.sh: an http listener routing by Host (a.example.com,
# b.example.com, two endpoints each) to an nginx origin; after a warm-up of every load, wrk
# keeps WRK_CONNS (4) connections busy for SECS (3) seconds per load, and the table gives the
# allocations per proxied request (wrk's request count).
#
# MODE=https: the same over TLS terminated by Sluice (a tls listener with a throwaway ECDSA
# P-256 certificate for both hosts). Keep-alive rows count steady-state requests; the
# Connection: close row includes a full handshake (OpenSSL's own allocations) per request.
# The counter tells OpenSSL's allocations (made from libcrypto or libssl) from the rest:
# the "OpenSSL" column.
#
# LOADS (http, https) picks loads among ka-64 ka-16k ka-64-ab close-64 h2-64 (all by
# default). h2-64 is HTTP/2 (h2c on http, ALPN h2 on https; the listener has http2: true):
# h2load -c WRK_CONNS -m 10, H2_N requests. libnghttp2's allocations go through Sluice's
# counting allocator (CShims/h2.c), whose total the loop reports on SIGUSR1: the "nghttp2"
# column, counted apart from Sluice's own.
# HTTP/2 to endpoints (MODE=http only; LOADS default to these as well): h2c-up-64 is wrk's
# HTTP/1.1 keep-alive requests (Host c.example.com) to a service with `protocol: h2c` whose
# two endpoints are nghttpd origins (--no-tls, Debian nghttp2-server), so every request is a
# stream on a pooled HTTP/2 connection to an endpoint; h2-h2c-up-64 is the same with h2load's
# HTTP/2 clients (h2c, -m 10). nghttp2's allocations for both sessions (client side and
# endpoint side) are in the "nghttp2" column. h2s-up-64 is wrk's keep-alive requests (Host
# d.example.com) to a service with `protocol: h2` (TLS to the endpoints, the certificate
# verified against its own self-signed copy with serverName origin.example.com) on two
# nghttpd TLS origins: OpenSSL's allocations of the client side are in the "OpenSSL" column.
# Every run ends with one `alloc-result:` line per load, for scripts/alloc-check.sh.
#
# ACCESS_LOG=1: the listener's requests (http, https) or connections (tcp) are also written
# to a JSON access log (`accessLog:` in the configuration, a file under Perf/out), so every
# request makes a record and a request id, every connection a record. The counter reports each thread apart: the *loop thread* columns (the
# thread that used the most CPU during the load) are the data path's own allocations, apart
# from the log writer's formatting on its thread.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-tcp}
SHORT=${SHORT:-20000}
BULK=${BULK:-512}
SECS=${SECS:-3}
WRK_CONNS=${WRK_CONNS:-4}
ACCESS_LOG=${ACCESS_LOG:-}
BIN=${SLUICE_BIN:-.build/release/sluice}
OUT=Perf/out
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: swift build -c release" >&2; exit 1; }
case "$MODE" in tcp | http | https) ;; *) echo "MODE is tcp (default), http or https" >&2; exit 2 ;; esac
# Any C compiler: gcc, or the clang of the Swift toolchain.
"${CC:-$(command -v gcc || command -v clang || echo cc)}" -O2 -shared -fPIC -o "$OUT/malloc-count.so" \
    Perf/tools/malloc-count.c -ldl

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

per() { python3 -c "print(f'{$1/max(${2:-0},1):.4f}')"; } # per COUNT UNITS

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

count() {
    local before
    before=$(grep -c malloc-count "$OUT/alloc.log" || true)
    kill -s RTMIN+2 "$sluice"
    until [ "$(grep -c malloc-count "$OUT/alloc.log" || true)" -gt "$before" ]; do sleep 0.02; done
    # The report is one write: the per-thread lines follow the total.
    sleep 0.05
    grep malloc-count "$OUT/alloc.log" | tail -1 \
        | awk '{ split($2,a,"="); split($3,b,"="); split($4,c,"="); split($5,d,"="); print a[2]+b[2]+c[2]+d[2] }'
}

# thread_count TID [FIELD]: that thread's allocations (n, the default) or the part of them
# OpenSSL made (openssl) in the last report.
thread_count() {
    awk -v tid="$1" -v f="${2:-n}" '/^malloc-count:/ { n = 0 }
        $1 == "malloc-thread:" && $2 == "tid=" tid { for (i = 3; i <= NF; i++) { split($i, v, "="); if (v[1] == f) n = v[2] } }
        END { print n + 0 }' "$OUT/alloc.log"
}

# result KEY UNITS PROCESS LOOP LOOP_OPENSSL ERRORS [LOOP_NGHTTP2]: one machine-readable
# line per load (read by scripts/alloc-check.sh).
result() {
    results+=("alloc-result: load=$1 units=$2 process=$3 loop=$4 loop_openssl=$5 errors=$6 loop_nghttp2=${7:-0}")
}
results=()

# thread_cpu: "TID TICKS" (user + system) for every thread of sluice.
thread_cpu() {
    for t in /proc/"$sluice"/task/*; do
        if [ -r "$t/stat" ]; then
            awk -v tid="${t##*/}" '{ sub(/^.*\) /, ""); print tid, $12 + $13 }' "$t/stat" 2> /dev/null || true
        fi
    done
}

# busiest BEFORE AFTER: the thread whose CPU grew most between two thread_cpu listings.
busiest() {
    awk 'NR == FNR { before[$1] = $2; next } { d = $2 - before[$1]; if (d > best) { best = d; tid = $1 } }
        END { print tid }' <(echo "$1") <(echo "$2")
}

start_sluice() { # start_sluice CONFIG -> sets $sluice
    rm -f "$OUT/alloc.log"
    LD_PRELOAD="$PWD/$OUT/malloc-count.so" "$BIN" run --config "$1" --workers 1 2> "$OUT/alloc.log" &
    sluice=$!
    pids+=($sluice)
    until grep -q "ready generation=1" "$OUT/alloc.log" 2>/dev/null; do
        kill -0 "$sluice" 2>/dev/null || { echo "sluice exited:" >&2; cat "$OUT/alloc.log" >&2; exit 1; }
        sleep 0.05
    done
}

if [ "$MODE" = http ] || [ "$MODE" = https ]; then
    command -v nginx >/dev/null && command -v wrk >/dev/null ||
        { echo "MODE=http needs nginx and wrk (apt-get install -y nginx-light wrk)" >&2; exit 1; }
    D="$OUT/alloc-http"
    rm -rf "$D"
    mkdir -p "$D/www" "$D/tmp"
    head -c 64 /dev/zero | tr '\0' x > "$D/www/64.bin"
    head -c 16384 /dev/zero | tr '\0' x > "$D/www/16k.bin"
    read -r o1 o2 o3 o4 o5 o6 o7 o8 port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
    cat > "$D/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $PWD/$D/nginx.pid;
error_log $PWD/$D/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $PWD/$D/tmp;
    proxy_temp_path $PWD/$D/tmp;
    fastcgi_temp_path $PWD/$D/tmp;
    uwsgi_temp_path $PWD/$D/tmp;
    scgi_temp_path $PWD/$D/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$o1; listen 127.0.0.1:$o2; listen 127.0.0.1:$o3; listen 127.0.0.1:$o4;
        root $PWD/$D/www;
    }
}
NGINX
    nginx -p "$PWD/$D" -c "$PWD/$D/nginx.conf" -e "$PWD/$D/error.log" 2> "$D/nginx.stderr" &
    pids+=($!)
    # load NAME -> wrk arguments
    if [ "$MODE" = http ]; then
        loads=${LOADS:-ka-64 ka-16k ka-64-ab close-64 h2-64 h2c-up-64 h2-h2c-up-64 h2s-up-64}
    else
        loads=${LOADS:-ka-64 ka-16k ka-64-ab close-64 h2-64}
    fi
    # Loads to a service with protocol h2c: two nghttpd origins on o5 and o6.
    upstream_h2c=""
    upstream_h2s=""
    for l in $loads; do
        case "$l" in *h2c-up-*) upstream_h2c=1 ;; *h2s-up-*) upstream_h2s=1 ;; esac
    done
    if [ -n "$upstream_h2c" ]; then
        [ "$MODE" = http ] || { echo "the h2c-up loads need MODE=http" >&2; exit 2; }
        command -v nghttpd >/dev/null ||
            { echo "the h2c-up loads need nghttpd (apt-get install -y nghttp2-server)" >&2; exit 1; }
        for p in $o5 $o6; do
            nghttpd -a 127.0.0.1 -d "$PWD/$D/www" --no-tls "$p" > "$D/nghttpd-$p.log" 2>&1 &
            pids+=($!)
        done
    fi
    # Loads to a service with protocol h2: two nghttpd TLS origins on o7 and o8.
    if [ -n "$upstream_h2s" ]; then
        [ "$MODE" = http ] || { echo "the h2s-up loads need MODE=http" >&2; exit 2; }
        command -v nghttpd >/dev/null ||
            { echo "the h2s-up loads need nghttpd (apt-get install -y nghttp2-server)" >&2; exit 1; }
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=origin.example.com -addext "subjectAltName=DNS:origin.example.com" \
            -keyout "$PWD/$D/origin-key.pem" -out "$PWD/$D/origin.pem" 2> "$D/openssl-origin.log"
        for p in $o7 $o8; do
            nghttpd -a 127.0.0.1 -d "$PWD/$D/www" "$p" "$PWD/$D/origin-key.pem" "$PWD/$D/origin.pem" \
                > "$D/nghttpd-$p.log" 2>&1 &
            pids+=($!)
        done
    fi
    scheme=http
    if [ "$MODE" = https ]; then
        scheme=https
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=a.example.com -addext "subjectAltName=DNS:a.example.com,DNS:b.example.com" \
            -keyout "$PWD/$D/key.pem" -out "$PWD/$D/cert.pem" 2> "$D/openssl.log"
        cat > "$OUT/alloc.yaml" <<YAML
listeners:
  - address: 127.0.0.1:$port
    protocol: tls
    http2: true
    certificates:
      - cert: $PWD/$D/cert.pem
        key: $PWD/$D/key.pem
    routes:
      - host: a.example.com
        terminate: true
        service: a
      - host: b.example.com
        terminate: true
        service: b
    default:
      terminate: true
YAML
    else
        cat > "$OUT/alloc.yaml" <<YAML
listeners:
  - address: 127.0.0.1:$port
    protocol: http
    http2: true
    routes:
      - host: a.example.com
        service: a
      - host: b.example.com
        service: b
YAML
        [ -n "$upstream_h2c" ] && cat >> "$OUT/alloc.yaml" <<YAML
      - host: c.example.com
        service: c
YAML
        [ -n "$upstream_h2s" ] && cat >> "$OUT/alloc.yaml" <<YAML
      - host: d.example.com
        service: d
YAML
    fi
    cat >> "$OUT/alloc.yaml" <<YAML
services:
  - name: a
    endpoints: [127.0.0.1:$o1, 127.0.0.1:$o2]
  - name: b
    endpoints: [127.0.0.1:$o3, 127.0.0.1:$o4]
YAML
    [ -n "$upstream_h2c" ] && cat >> "$OUT/alloc.yaml" <<YAML
  - name: c
    protocol: h2c
    endpoints: [127.0.0.1:$o5, 127.0.0.1:$o6]
YAML
    [ -n "$upstream_h2s" ] && cat >> "$OUT/alloc.yaml" <<YAML
  - name: d
    protocol: h2
    tls:
      serverName: origin.example.com
      ca: $PWD/$D/origin.pem
    endpoints: [127.0.0.1:$o7, 127.0.0.1:$o8]
YAML
    if [ -n "$ACCESS_LOG" ]; then
        rm -f "$PWD/$D/access.log"
        cat >> "$OUT/alloc.yaml" <<YAML
accessLog:
  path: $PWD/$D/access.log
  format: json
YAML
    fi
    "$BIN" check --config "$OUT/alloc.yaml" > "$D/check.log" 2>&1 ||
        { echo "sluice check rejects the http config${ACCESS_LOG:+ (ACCESS_LOG needs a sluice that reads accessLog:)}:" >&2
          cat "$D/check.log" >&2; exit 1; }
    for p in $o1 $o2 $o3 $o4 ${upstream_h2c:+$o5 $o6} ${upstream_h2s:+$o7 $o8}; do
        for _ in $(seq 200); do
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue 2
            sleep 0.05
        done
        echo "no origin on port $p after 10 s (another process took it?): see $D/" >&2
        exit 1
    done
    start_sluice "$OUT/alloc.yaml"
    cat > "$D/ab.lua" <<'LUA'
local reqs, n = {}, 0
function init(args)
  for i, h in ipairs({"a.example.com", "b.example.com"}) do
    local hd = {}
    for k, v in pairs(wrk.headers) do hd[k] = v end
    hd["Host"] = h
    reqs[i] = wrk.format(nil, nil, hd)
  end
end
function request() n = n + 1; return reqs[(n % 2) + 1] end
LUA
    H2_N=${H2_N:-20000}
    wrk_args() {
        local l=$1 size host=a.example.com
        size=${l##*-}; [ "$size" = ab ] && size=${l#*-} && size=${size%-ab}
        case "$l" in *h2c-up-*) host=c.example.com ;; *h2s-up-*) host=d.example.com ;; esac
        WA=(-t1 -c"$WRK_CONNS" -H "Host: $host")
        case "$l" in close-*) WA+=(-H "Connection: close") ;; esac
        case "$l" in *-ab) WA+=(-s "$D/ab.lua") ;; esac
        URL="$scheme://127.0.0.1:$port/$size.bin"
    }
    label() {
        case "$1" in
        ka-64) echo "keep-alive, 64 B, Host a" ;;
        ka-16k) echo "keep-alive, 16 KiB, Host a" ;;
        ka-64-ab) echo "keep-alive, 64 B, Host a/b alternating" ;;
        close-64) echo "Connection: close, 64 B (one connection per request)" ;;
        h2-64) echo "HTTP/2, 64 B, $WRK_CONNS connections × 10 streams" ;;
        h2c-up-64) echo "keep-alive, 64 B, Host c: HTTP/2 (h2c) to the endpoints" ;;
        h2-h2c-up-64) echo "HTTP/2, 64 B, $WRK_CONNS connections × 10 streams, Host c: h2c to the endpoints" ;;
        h2s-up-64) echo "keep-alive, 64 B, Host d: HTTP/2 over TLS (h2) to the endpoints" ;;
        esac
    }
    # run_load NAME OUT: the load; its requests and a note of failures in $n and $note.
    run_load() {
        if [ "${1%%-*}" = h2 ]; then
            command -v h2load >/dev/null || { echo "h2-64 needs h2load (apt-get install -y nghttp2-client)" >&2; exit 1; }
            local authority=a.example.com
            case "$1" in *h2c-up-*) authority=c.example.com ;; esac
            h2load -t1 -c"$WRK_CONNS" -m10 -n"$3" -H ":authority: $authority" "$scheme://127.0.0.1:$port/64.bin" > "$2" 2>&1
            n=$(awk '/^requests:/ {print $8}' "$2")
            local failed
            failed=$(awk '/^requests:/ {print $10 + $12}' "$2")
            note=""
            [ "${failed:-1}" != 0 ] && note=" $failed failed or errored;"
        else
            wrk_args "$1"
            wrk "${WA[@]}" -d"$3" "$URL" > "$2" 2>&1
            n=$(awk '/requests in/ {print $1}' "$2")
            local bad errs
            bad=$(awk '/Non-2xx/ {print $NF}' "$2")
            errs=$(sed -n 's/.*Socket errors: \(.*\)/\1/p' "$2")
            note=""
            [ -n "$bad" ] && note="$note $bad non-2xx;"
            [ -n "$errs" ] && note="$note socket errors: $errs;"
        fi
        return 0
    }
    # nghttp2_count: libnghttp2's allocations so far (the loop's SIGUSR1 report; 0 before
    # any HTTP/2 connection).
    nghttp2_count() {
        local before
        before=$(grep -c "nghttp2_allocations=\|live=" "$OUT/alloc.log" || true)
        kill -s USR1 "$sluice"
        until [ "$(grep -c "nghttp2_allocations=\|live=" "$OUT/alloc.log" || true)" -gt "$before" ]; do sleep 0.02; done
        sleep 0.05
        grep -o "nghttp2_allocations=[0-9]*" "$OUT/alloc.log" | tail -1 | cut -d= -f2 | grep . || echo 0
    }
    c_ready=$(count)
    # Warm-up: every load once, so that pools and idle upstream connections exist.
    for l in $loads; do
        run_load "$l" /dev/null "$([ "${l%%-*}" = h2 ] && echo 2000 || echo 1s)"
    done
    # The loop reports nghttp2's count only once a client has spoken HTTP/2 to it
    # (Loop+Control's report): a few h2c requests make sure it does.
    if [ -n "$upstream_h2c$upstream_h2s" ]; then
        command -v h2load >/dev/null || { echo "the h2c-up and h2s-up loads need h2load (apt-get install -y nghttp2-client)" >&2; exit 1; }
        h2load -t1 -c1 -n10 -H ":authority: a.example.com" "http://127.0.0.1:$port/64.bin" > /dev/null 2>&1
    fi
    c_start=$(count)
    rows=()
    for l in $loads; do
        h0=$(nghttp2_count)
        c0=$(count)
        cpu0=$(thread_cpu)
        run_load "$l" "$D/$l.load.txt" "$([ "${l%%-*}" = h2 ] && echo "$H2_N" || echo "${SECS}s")"
        cpu1=$(thread_cpu)
        loop=$(busiest "$cpu0" "$cpu1")
        t0=$(thread_count "$loop")
        s0=$(thread_count "$loop" openssl)
        c1=$(count)
        t1=$(thread_count "$loop")
        s1=$(thread_count "$loop" openssl)
        h1=$(nghttp2_count)
        # t0 is the loop's count in the report taken before the load (c0's).
        rows+=("| $(label "$l") | $n | $((c1 - c0)) | $(per "$((c1 - c0))" "$n") | $((t1 - t0)) | $(per "$((t1 - t0))" "$n") | $(per "$((s1 - s0))" "$n") | $(per "$((h1 - h0))" "$n") |${note:+ $note}")
        result "$MODE-$l" "${n:-0}" "$((c1 - c0))" "$((t1 - t0))" "$((s1 - s0))" "$([ -n "$note" ] && echo 1 || echo 0)" "$((h1 - h0))"
    done
    [ "$c_start" -gt 0 ] || { echo "the malloc counter saw nothing: LD_PRELOAD not in effect" >&2; exit 1; }
    echo "allocations through start-up: $c_ready; during the warm-up: $((c_start - c_ready))"
    echo "wrk -t1 -c$WRK_CONNS -d${SECS}s per load, after a 1 s warm-up of each${ACCESS_LOG:+; JSON access log on}"
    printf '| load | requests | allocations | per request | loop thread | per request | of which OpenSSL | of which nghttp2 |\n'
    printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
    printf '%s\n' "${rows[@]}"
    printf '%s\n' "${results[@]}"
    if [ -n "$ACCESS_LOG" ]; then
        echo "access-log lines written: $(wc -l < "$PWD/$D/access.log" 2>/dev/null || echo 0)"
    fi
    exit 0
fi

rm -f "$OUT/echo.port"
python3 -u Perf/tools/echo-backend.py > "$OUT/echo.port" &
pids+=($!)
until grep -q listening "$OUT/echo.port" 2>/dev/null; do sleep 0.05; done
backend=$(awk '/listening/ {print $2}' "$OUT/echo.port")
port=$(free_port)
cat > "$OUT/alloc.yaml" <<YAML
listeners:
  - address: 127.0.0.1:$port
    service: echo
services:
  - name: echo
    endpoints: [127.0.0.1:$backend]
YAML
if [ -n "$ACCESS_LOG" ]; then
    rm -f "$PWD/$OUT/alloc-tcp-access.log"
    printf 'accessLog:\n  path: %s\n  format: json\n' "$PWD/$OUT/alloc-tcp-access.log" >> "$OUT/alloc.yaml"
fi
start_sluice "$OUT/alloc.yaml"

# Warm-up: pools, pipes, the slot table's pages and the runtime's caches.
python3 Perf/tools/load.py short "$port" 2000
python3 Perf/tools/load.py bulk "$port" 64
# Each load's loop thread is the thread that used the most CPU during it; its count before
# the load is read from the report taken before the load.
c0=$(count)
cpu0=$(thread_cpu)
python3 Perf/tools/load.py short "$port" "$SHORT"
cpu1=$(thread_cpu)
loop=$(busiest "$cpu0" "$cpu1")
t0=$(thread_count "$loop")
c1=$(count)
t1=$(thread_count "$loop")
python3 Perf/tools/load.py bulk "$port" "$BULK"
cpu2=$(thread_cpu)
loop=$(busiest "$cpu1" "$cpu2")
u1=$(thread_count "$loop")
c2=$(count)
u2=$(thread_count "$loop")

short_allocs=$((c1 - c0))
bulk_allocs=$((c2 - c1))
result tcp-short "$SHORT" "$short_allocs" "$((t1 - t0))" 0 0
result tcp-bulk-mib "$BULK" "$bulk_allocs" "$((u2 - u1))" 0 0
# The counter counts: start-up and warm-up allocate, so c0 cannot be 0.
[ "$c0" -gt 0 ] || { echo "the malloc counter saw nothing: LD_PRELOAD not in effect" >&2; exit 1; }
echo "allocations through start-up and warm-up: $c0"
printf '| load | allocations | per unit | loop thread | per unit |\n| --- | --- | --- | --- | --- |\n'
printf '| %d short connections | %d | %s per connection | %d | %s |\n' "$SHORT" "$short_allocs" \
    "$(per "$short_allocs" "$SHORT")" "$((t1 - t0))" "$(per "$((t1 - t0))" "$SHORT")"
printf '| %d MiB each way, one connection | %d | %s per MiB | %d | %s |\n' "$BULK" "$bulk_allocs" \
    "$(per "$bulk_allocs" "$BULK")" "$((u2 - u1))" "$(per "$((u2 - u1))" "$BULK")"
printf '%s\n' "${results[@]}"
if [ -n "$ACCESS_LOG" ]; then
    echo "access-log lines written: $(wc -l < "$PWD/$OUT/alloc-tcp-access.log" 2>/dev/null || echo 0)"
fi
