#!/usr/bin/env bash
# halb against HAProxy and nginx (Debian packages) on the same machine, in
# the same run, on loopback inside a network namespace this script creates
# (so fixed ports collide with nothing, and everything is removed at exit).
#
# Sections (SECTIONS="throughput reload memory" by default):
#   throughput  wrk -t1 -cCONNS for DURATION s per case: HTTP keep-alive
#               mode and TCP mode, 1 and 2 proxy threads (halb
#               node.worker_threads, HAProxy nbthread, nginx
#               worker_processes); requests/s and p50/p99/p99.9 latency.
#   reload      RELOADS reloads during a RELOAD_SECS s wrk run (HTTP
#               keep-alive, RELOAD_THREADS proxy threads, default 1); every failed request is counted
#               (socket errors and non-2xx/3xx). halb: SIGHUP; HAProxy:
#               master-worker (-W) + SIGUSR2; nginx: SIGHUP (= nginx -s reload).
#   memory      RSS of the proxy (its whole process tree) before and with
#               IDLE_CONNS idle client connections: first just connected,
#               then after one keep-alive request each.
#
# The same backend for every proxy: one nginx worker serving a 12-byte body
# on two ports (two servers, round-robin). CPU pinning is the same for every
# proxy: wrk and the backend on CLIENT_CPUS, the proxy on PROXY_CPUS_1 (one
# thread) or PROXY_CPUS_2 (two threads).
#
# Needs root (network namespace), wrk, haproxy, nginx, libnginx-mod-stream
# (nginx TCP mode), rustc, and a release build of halb:
#   cargo build --release -p halb     # CARGO_TARGET_DIR decides where
#   HALB=/path/to/release/halb benches/http/run.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
HALB=${HALB:-${CARGO_TARGET_DIR:-$HERE/../../target}/release/halb}
# Optional: another halb build (e.g. before a change), run as proxy
# "halb-base" when PROXIES names it.
HALB_BASE=${HALB_BASE:-}
SECTIONS=${SECTIONS:-"throughput reload memory"}
MODES=${MODES:-"http tcp"}        # throughput: HTTP keep-alive and/or TCP mode
THREADS=${THREADS:-"1 2"}         # throughput: proxy thread counts
PROXIES=${PROXIES:-"halb haproxy nginx"}
# halb node.worker_scaling: auto (loops follow free CPU) or all; unset:
# halb's default (auto), and no key (a halb-base before it knows none).
HALB_SCALING=${HALB_SCALING:-}
DURATION=${DURATION:-12}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
RELOAD_SECS=${RELOAD_SECS:-30}
RELOADS=${RELOADS:-100}
RELOAD_THREADS=${RELOAD_THREADS:-1}   # reload: proxy threads (1 or 2)
MEMORY_THREADS=${MEMORY_THREADS:-1}   # memory: proxy threads (1 or 2)
IDLE_CONNS=${IDLE_CONNS:-10000}
CLIENT_CPUS=${CLIENT_CPUS:-0}
BACKEND_CPUS=${BACKEND_CPUS:-0}
PROXY_CPUS_1=${PROXY_CPUS_1:-1}
PROXY_CPUS_2=${PROXY_CPUS_2:-0,1}
OUT=${OUT:-/tmp/halb-bench-results.txt}
STREAM_MODULE=${STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}

for tool in wrk haproxy nginx rustc taskset ip; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 1; }
done
[ -x "$HALB" ] || { echo "run.sh: no halb binary at $HALB (cargo build --release -p halb)" >&2; exit 1; }
if [[ " $PROXIES " == *" halb-base "* ]] && [ ! -x "$HALB_BASE" ]; then
    echo "run.sh: PROXIES names halb-base but HALB_BASE is not an executable" >&2
    exit 1
fi
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root for the network namespace" >&2; exit 1; }

NS=hlbench-$$
WORK=$(mktemp -d /tmp/halb-bench.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # Anything else still inside this script's own namespace was started by
    # it too (e.g. workers of a proxy); end each by its pid.
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
# Raise the descriptor limit to the hard limit for everything started below
# (the memory section needs IDLE_CONNS in the client and in the proxy).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $(( IDLE_CONNS + 1000 )) ]; then
    echo "run.sh: ulimit -n $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS" >&2
    exit 1
fi

in_ns() { ip netns exec "$NS" "$@"; }

wait_port() { # PORT
    local i
    for i in $(seq 1 200); do
        if in_ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "run.sh: nothing listens on port $1" >&2
    return 1
}

stop_pid() { # PID: SIGTERM, then SIGKILL after 10 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

tree_rss_kb() { # PID: VmRSS of the process and its children, in KiB
    ps -o rss= --pid "$1" --ppid "$1" | awk '{ s += $1 } END { print s + 0 }'
}

log() { echo "$*" | tee -a "$OUT"; }

# --------------------------------------------------------------------------
# Backend: nginx, one worker, two servers.
mkdir -p "$WORK/backend/logs"
cat > "$WORK/backend/nginx.conf" <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 200000;
error_log $WORK/backend/logs/error.log warn;
pid $WORK/backend/nginx.pid;
daemon off;
events { worker_connections 50000; }
http {
    access_log off;
    client_body_temp_path $WORK/backend/body;
    proxy_temp_path $WORK/backend/proxy;
    fastcgi_temp_path $WORK/backend/fastcgi;
    uwsgi_temp_path $WORK/backend/uwsgi;
    scgi_temp_path $WORK/backend/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server { listen 127.0.0.1:8081 backlog=4096; location / { return 200 "hello world\n"; } }
    server { listen 127.0.0.1:8082 backlog=4096; location / { return 200 "hello world\n"; } }
}
EOF
ip netns exec "$NS" taskset -c "$BACKEND_CPUS" nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_port 8081
wait_port 8082

# --------------------------------------------------------------------------
# Proxy configs. Every proxy serves HTTP on 8080 and TCP on 8090 over the
# two servers, round-robin, adds X-Forwarded-For/-Proto in HTTP mode, and
# keeps pooled keep-alive connections to the servers. $2 is the weight of
# s1 (the reload section alternates it so each reload changes something).

halb_conf() { # THREADS WEIGHT
    cat <<EOF
[node]
name = "bench"
admin_socket = "$WORK/halb.sock"
worker_threads = $1
${HALB_SCALING:+worker_scaling = \"$HALB_SCALING\"}
log_level = "warn"
shutdown_timeout = "2s"

[[frontend]]
name = "http"
bind = "127.0.0.1:8080"
mode = "http"
backend = "web"
timeouts = { client_header = "120s", client_idle = "300s" }

[[frontend]]
name = "tcp"
bind = "127.0.0.1:8090"
mode = "tcp"
backend = "web"
timeouts = { client_idle = "300s" }

[[backend]]
name = "web"
algorithm = "weighted-round-robin"
servers = [
  { name = "s1", address = "127.0.0.1:8081", weight = $2 },
  { name = "s2", address = "127.0.0.1:8082", weight = 1 },
]
health = { kind = "tcp", interval = "2s" }
drain_timeout = "30s"
EOF
}

haproxy_conf() { # THREADS WEIGHT
    cat <<EOF
global
    nbthread $1
    maxconn 10400
    # The hard descriptor limit here may be below what HAProxy wants for
    # maxconn (2 x maxconn); 10,400 connections still fit.
    no strict-limits
    pidfile $WORK/haproxy.pid
defaults
    mode http
    timeout connect 3s
    timeout client 300s
    timeout server 300s
    timeout http-request 120s
    timeout http-keep-alive 300s
frontend http
    bind 127.0.0.1:8080
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    default_backend web
backend web
    balance roundrobin
    server s1 127.0.0.1:8081 weight $2 check inter 2s
    server s2 127.0.0.1:8082 weight 1 check inter 2s
listen tcp
    mode tcp
    bind 127.0.0.1:8090
    balance roundrobin
    server s1 127.0.0.1:8081 weight $2 check inter 2s
    server s2 127.0.0.1:8082 weight 1 check inter 2s
EOF
}

nginx_conf() { # THREADS WEIGHT
    cat <<EOF
load_module $STREAM_MODULE;
user root;
worker_processes $1;
worker_rlimit_nofile 200000;
error_log $WORK/proxy/logs/error.log warn;
pid $WORK/proxy/nginx.pid;
daemon off;
events { worker_connections 50000; }
http {
    access_log off;
    client_body_temp_path $WORK/proxy/body;
    proxy_temp_path $WORK/proxy/proxy;
    fastcgi_temp_path $WORK/proxy/fastcgi;
    uwsgi_temp_path $WORK/proxy/uwsgi;
    scgi_temp_path $WORK/proxy/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_header_timeout 120s;
    upstream web {
        server 127.0.0.1:8081 weight=$2;
        server 127.0.0.1:8082 weight=1;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:8080 backlog=4096;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto http;
        }
    }
}
stream {
    upstream tcpweb {
        server 127.0.0.1:8081 weight=$2;
        server 127.0.0.1:8082 weight=1;
    }
    server { listen 127.0.0.1:8090 backlog=4096; proxy_pass tcpweb; }
}
EOF
}

port_free() { # PORT: wait until nothing accepts on it
    local i
    for i in $(seq 1 100); do
        in_ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "run.sh: port $1 is still taken" >&2
    return 1
}

PROXY_PID=
start_proxy() { # NAME THREADS CPUS [reload]
    local name=$1 threads=$2 cpus=$3 how=${4:-}
    port_free 8080
    port_free 8090
    mkdir -p "$WORK/proxy/logs"
    case $name in
    halb | halb-base)
        local bin=$HALB
        [ "$name" = halb-base ] && bin=$HALB_BASE
        halb_conf "$threads" 1 > "$WORK/halb.toml"
        ip netns exec "$NS" taskset -c "$cpus" "$bin" run -c "$WORK/halb.toml" >> "$WORK/halb.log" 2>&1 &
        ;;
    haproxy)
        haproxy_conf "$threads" 1 > "$WORK/haproxy.cfg"
        if [ "$how" = reload ]; then
            # Master-worker: SIGUSR2 to the master reloads.
            ip netns exec "$NS" taskset -c "$cpus" haproxy -W -db -f "$WORK/haproxy.cfg" >> "$WORK/haproxy.log" 2>&1 &
        else
            ip netns exec "$NS" taskset -c "$cpus" haproxy -db -f "$WORK/haproxy.cfg" >> "$WORK/haproxy.log" 2>&1 &
        fi
        ;;
    nginx)
        nginx_conf "$threads" 1 > "$WORK/proxy/nginx.conf"
        ip netns exec "$NS" taskset -c "$cpus" nginx -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" >> "$WORK/nginx.log" 2>&1 &
        ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port 8080
    wait_port 8090
    kill -0 "$PROXY_PID" 2>/dev/null || { echo "run.sh: $name exited at start" >&2; exit 1; }
}

reconfigure() { # NAME THREADS WEIGHT: rewrite the config and reload
    local name=$1 threads=$2 weight=$3
    case $name in
    halb | halb-base)
        halb_conf "$threads" "$weight" > "$WORK/halb.toml.new"
        mv "$WORK/halb.toml.new" "$WORK/halb.toml"
        kill -HUP "$PROXY_PID"
        ;;
    haproxy)
        haproxy_conf "$threads" "$weight" > "$WORK/haproxy.cfg.new"
        mv "$WORK/haproxy.cfg.new" "$WORK/haproxy.cfg"
        kill -USR2 "$PROXY_PID"
        ;;
    nginx)
        nginx_conf "$threads" "$weight" > "$WORK/proxy/nginx.conf.new"
        mv "$WORK/proxy/nginx.conf.new" "$WORK/proxy/nginx.conf"
        kill -HUP "$PROXY_PID"
        ;;
    esac
}

wrk_run() { # SECONDS PORT -> prints the RESULT line
    in_ns taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"$1"s --timeout 5s \
        -s "$HERE/report.lua" "http://127.0.0.1:$2/" | grep '^RESULT'
}

alive() { # a figure is only good if the backend and the proxy lived through it
    if ! kill -0 "$BACKEND_PID" 2>/dev/null || ! kill -0 "$PROXY_PID" 2>/dev/null; then
        echo "run.sh: the backend or the proxy died during the run (something else killing nginx/haproxy?); figures discarded" >&2
        exit 1
    fi
}

field() { # LINE KEY
    echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'
}

: > "$OUT"
log "# halb benchmark $(date -u +%FT%TZ) on $(uname -r), $(nproc) CPUs; $(uptime | sed 's/.*load/load/')"
log "# halb $("$HALB" --version 2>/dev/null | head -1)${HALB_BASE:+ (halb-base: $HALB_BASE)}; $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
log "# wrk -t1 -c$CONNS; client+backend on CPU $CLIENT_CPUS; proxy on CPU $PROXY_CPUS_1 (1 thread) / $PROXY_CPUS_2 (2 threads)"

# --------------------------------------------------------------------------
if [[ " $SECTIONS " == *" throughput "* ]]; then
    line=$(wrk_run "$DURATION" 8081)
    log "direct  http  - rps=$(field "$line" rps) p50_us=$(field "$line" p50_us) p99_us=$(field "$line" p99_us) p999_us=$(field "$line" p999_us)"
    for round in $(seq 1 "$ROUNDS"); do
        for mode in $MODES; do
            port=8080; [ "$mode" = tcp ] && port=8090
            for threads in $THREADS; do
                cpus=$PROXY_CPUS_1; [ "$threads" = 2 ] && cpus=$PROXY_CPUS_2
                for proxy in $PROXIES; do
                    start_proxy "$proxy" "$threads" "$cpus"
                    wrk_run "$WARMUP" "$port" > /dev/null || true
                    line=$(wrk_run "$DURATION" "$port")
                    alive
                    errors=$(( $(field "$line" err_connect) + $(field "$line" err_read) + $(field "$line" err_write) + $(field "$line" err_status) + $(field "$line" err_timeout) ))
                    log "throughput round=$round mode=$mode threads=$threads proxy=$proxy rps=$(field "$line" rps) p50_us=$(field "$line" p50_us) p99_us=$(field "$line" p99_us) p999_us=$(field "$line" p999_us) errors=$errors"
                    stop_pid "$PROXY_PID"
                done
            done
        done
    done
fi

# --------------------------------------------------------------------------
if [[ " $SECTIONS " == *" reload "* ]]; then
    interval=$(awk -v s="$RELOAD_SECS" -v n="$RELOADS" 'BEGIN { printf "%.3f", (s - 2) / n }')
    for proxy in $PROXIES; do
        if [ "$RELOAD_THREADS" = 1 ]; then cpus=$PROXY_CPUS_1; else cpus=$PROXY_CPUS_2; fi
        start_proxy "$proxy" "$RELOAD_THREADS" "$cpus" reload
        wrk_run "$WARMUP" 8080 > /dev/null || true
        wrk_run "$RELOAD_SECS" 8080 > "$WORK/reload-$proxy.txt" &
        wrk_pid=$!
        sleep 1
        for i in $(seq 1 "$RELOADS"); do
            reconfigure "$proxy" "$RELOAD_THREADS" $(( 1 + i % 2 ))
            sleep "$interval"
        done
        wait "$wrk_pid" || true
        alive
        line=$(cat "$WORK/reload-$proxy.txt")
        failed=$(( $(field "$line" err_connect) + $(field "$line" err_read) + $(field "$line" err_write) + $(field "$line" err_status) + $(field "$line" err_timeout) ))
        extra=
        if [ "$proxy" = halb ] || [ "$proxy" = halb-base ]; then
            gen=$(in_ns "$HALB" status --json --socket "$WORK/halb.sock" 2>/dev/null | awk -F': ' '/"generation"/ { gsub(/[ ,]/, "", $2); print $2; exit }' || true)
            extra=" generation=$gen"
        fi
        log "reload proxy=$proxy threads=$RELOAD_THREADS reloads=$RELOADS requests=$(field "$line" requests) rps=$(field "$line" rps) failed=$failed connect=$(field "$line" err_connect) read=$(field "$line" err_read) write=$(field "$line" err_write) status=$(field "$line" err_status) timeout=$(field "$line" err_timeout) p99_us=$(field "$line" p99_us)$extra"
        stop_pid "$PROXY_PID"
    done
fi

# --------------------------------------------------------------------------
if [[ " $SECTIONS " == *" memory "* ]]; then
    rustc -O --edition 2021 -o "$WORK/idle_clients" "$HERE/idle_clients.rs"
    for proxy in $PROXIES; do
        if [ "$MEMORY_THREADS" = 1 ]; then cpus=$PROXY_CPUS_1; else cpus=$PROXY_CPUS_2; fi
        start_proxy "$proxy" "$MEMORY_THREADS" "$cpus"
        wrk_run 2 8080 > /dev/null || true
        sleep 1
        before=$(tree_rss_kb "$PROXY_PID")
        ip netns exec "$NS" taskset -c "$CLIENT_CPUS" "$WORK/idle_clients" 127.0.0.1:8080 "$IDLE_CONNS" 8 > "$WORK/idle-$proxy.txt" 2>&1 &
        client=$!
        PIDS+=("$client")
        for _ in $(seq 1 600); do grep -q 'PHASE connected' "$WORK/idle-$proxy.txt" && break; sleep 0.1; done
        sleep 3
        connected=$(tree_rss_kb "$PROXY_PID")
        for _ in $(seq 1 600); do grep -q 'PHASE requested' "$WORK/idle-$proxy.txt" && break; sleep 0.1; done
        sleep 3
        requested=$(tree_rss_kb "$PROXY_PID")
        wait "$client" || true
        alive
        per_conn() { awk -v a="$1" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'; }
        log "memory proxy=$proxy threads=$MEMORY_THREADS conns=$IDLE_CONNS rss_before_kib=$before rss_connected_kib=$connected rss_after_request_kib=$requested per_conn_connected_bytes=$(per_conn "$connected") per_conn_after_request_bytes=$(per_conn "$requested") client=\"$(grep PHASE "$WORK/idle-$proxy.txt" | tr '\n' ';')\""
        stop_pid "$PROXY_PID"
    done
fi

# --------------------------------------------------------------------------
# Summary: medians over the rounds.
if [[ " $SECTIONS " == *" throughput "* ]]; then
    log ""
    log "# median of $ROUNDS round(s): mode threads proxy rps p50_us p99_us p99.9_us errors"
    for mode in $MODES; do
        for threads in $THREADS; do
            for proxy in $PROXIES; do
                grep "^throughput .* mode=$mode threads=$threads proxy=$proxy " "$OUT" | awk -v m="$mode" -v t="$threads" -v p="$proxy" '
                    function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x } return a[int((n + 1) / 2)] }
                    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1], NR] = kv[2] } n = NR }
                    END {
                        for (i = 1; i <= n; i++) { r[i] = v["rps", i]; a[i] = v["p50_us", i]; b[i] = v["p99_us", i]; c[i] = v["p999_us", i]; e += v["errors", i] }
                        printf "summary %-4s %s %-9s %7d %6d %6d %7d %d\n", m, t, p, med(r, n), med(a, n), med(b, n), med(c, n), e
                    }' | tee -a "$OUT"
            done
        done
    done
fi
echo "results in $OUT"
