# Sourced by the proxy-against-proxy benchmarks (tls-bench.sh, h2-bench.sh) after procs.sh:
# the checks and the run directory, the nginx origin, and the rounds.
# They set HERE, RUN_DIR, RESULTS, LIB, LOAD_CPU, PROXY_CPU, ROUNDS, MODES and run_mode.
# shellcheck shell=bash

bench_setup() { # bench_setup CLIENT: checks localhost and the CPUs, creates RUN_DIR and RESULTS
    [ "$(getent ahostsv4 localhost | awk 'NR==1{print $1}')" = 127.0.0.1 ] ||
        die "localhost must resolve to 127.0.0.1 first ($1 connects to the URL's host)"
    [ "$(nproc --all)" -gt "$PROXY_CPU" ] && [ "$(nproc --all)" -gt "$LOAD_CPU" ] ||
        die "needs CPUs $PROXY_CPU and $LOAD_CPU"
    ulimit -n "$(ulimit -Hn)"
    mkdir -p "$RUN_DIR"
    : >"$RESULTS"
}
put() { "${LIB[@]}" put "$RESULTS" "$1" "$2"; }

# nginx's temporary paths under DIR/tmp (the defaults are not writable without root)
temps() { local d=$1; echo "client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;"; }

origin_conf() { # origin_conf DIR HTTP_PORT [SERVER_BLOCKS]: the origin's DIR/nginx.conf, files under DIR/www
    cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 9000; use epoll; }
http {
    access_log off;
    sendfile on;
    $(temps "$1")
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        root $1/www;
    }${3:-}
}
EOF
}

# start_haproxy CFG / start_nginx DIR (DIR/nginx.conf): checks the configuration (output in
# RUN_DIR/KEY.check.log; false if refused), then starts the proxy on PROXY_CPU -> PROXY_PID, LOGF
start_haproxy() {
    haproxy -c -f "$1" >"$RUN_DIR/$KEY.check.log" 2>&1 || return 1
    LOGF="$RUN_DIR/$KEY.log"
    start_bg "$LOGF" taskset -c "$PROXY_CPU" haproxy -db -f "$1"
    PROXY_PID=$BG_PID
}
start_nginx() {
    nginx -t -p "$1" -c "$1/nginx.conf" -e "$1/error.log" >"$RUN_DIR/$KEY.check.log" 2>&1 || return 1
    LOGF="$1/error.log"
    start_bg "$RUN_DIR/$KEY.log" taskset -c "$PROXY_CPU" nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log"
    PROXY_PID=$BG_PID
}

# proxy_nginx_conf DIR LISTEN [HEAD] [HTTP_EXTRA] [TAIL]: DIR/nginx.conf for nginx as the proxy
# under test, TLS ended on LISTEN ("ADDR:PORT ssl ..."), HTTP/1.1 keep-alive to the origin on
# O_HTTP; HEAD goes first, HTTP_EXTRA into the http block, TAIL after it
proxy_nginx_conf() {
    local d=$1
    mkdir -p "$d/tmp"
    {
        cat <<EOF
${3:-}worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 9000; use epoll; }
http {
    access_log off;
    $(temps "$d")
    keepalive_requests 10000000;${4:-}
    upstream origin {
        server 127.0.0.1:$O_HTTP;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 10000000;
    }
    server {
        listen $2 backlog=4096;
        server_name $SNI;
        ssl_certificate $CERTS/bench.pem;
        ssl_certificate_key $CERTS/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;   # nginx 1.22's default stops at TLS 1.2
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
        printf '%s' "${5:-}"
    } >"$d/nginx.conf"
}

run_rounds() { # ROUNDS rounds of run_mode for every mode in MODES, the noise monitor running
    NOISE="$RUN_DIR/noise.txt"
    start_bg "$RUN_DIR/noise-monitor.log" taskset -c "$LOAD_CPU" "${LIB[@]}" monitor "$$" "$NOISE" 0.5
    NOISE_PID=$BG_PID
    T0=$(date +%s)
    local m nb
    for ROUND in $(seq "$ROUNDS"); do
        log "round $ROUND of $ROUNDS"
        for m in $MODES; do
            nb=$("${LIB[@]}" noise-begin "$NOISE")
            run_mode "$m"
            "${LIB[@]}" noise-end "$RESULTS" "$m@$ROUND" "$NOISE" "$nb"
        done
    done
}
end_rounds() { # after run_rounds (and any extra round): the load average, the monitor stopped
    put meta.load_avg "$(cut -d' ' -f1-3 /proc/loadavg)"
    stop_pid "$NOISE_PID"
    log "measurements done in $(($(date +%s) - T0)) s"
}
