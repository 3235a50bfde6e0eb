# Shared setup of the web-layer benchmarks (router.sh, static.sh, php.sh): tools, the
# router_bench binary, a work folder cleaned up on exit, ports, nginx configs and wrk runs.
# Sourced by each script after it sets ROUNDS, SECS and ROOT; not run by itself.

# bench_needs TOOL...: exit 2 unless every tool is installed.
bench_needs() {
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "needs $t (apt-get install -y nginx wrk)" >&2; exit 2; }
    done
}

# bench_router_bin: BIN, the router_bench example (SLIPWAY_BENCH_BIN=PATH uses one built
# elsewhere, e.g. without --release).
bench_router_bin() {
    if [ -n "${SLIPWAY_BENCH_BIN:-}" ]; then
        BIN=$SLIPWAY_BENCH_BIN
    else
        echo "building the router (cargo build --release -p slipway-router --example router_bench)" >&2
        (cd "$ROOT" && cargo build -q --release -p slipway-router --example router_bench)
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/router_bench
    fi
}

# bench_workdir NAME: WORK, a fresh folder removed on exit, when every process in PIDS is
# stopped first.
bench_workdir() {
    WORK=$(mktemp -d "/tmp/slipway-bench-$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# free_port: a loopback port nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT: wait (10 s at most) until something listens on it.
wait_port() {
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2; return 1
}

# router_workers LOG: WORKERS, the worker count the router says it runs (its default, or
# SLIPWAY_ROUTER_WORKERS).
router_workers() {
    WORKERS=
    for _ in $(seq 50); do
        WORKERS=$(sed -n 's/.* with \([0-9][0-9]*\) worker.*/\1/p' "$1")
        [ -n "$WORKERS" ] && break
        sleep 0.1
    done
    [ -n "$WORKERS" ] || { echo "the router did not say its worker count:" >&2; cat "$1" >&2; exit 1; }
}

# nginx_conf DIR WORKERS HTTP: DIR/nginx.conf, an nginx of WORKERS processes with its pid,
# logs and temp files in DIR, keep-alive without limits, and HTTP inside its `http` block.
nginx_conf() {
    mkdir -p "$1"
    cat > "$1/nginx.conf" <<CONF
user root;
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $1/tmp;
    proxy_temp_path $1/tmp;
    fastcgi_temp_path $1/tmp;
    uwsgi_temp_path $1/tmp;
    scgi_temp_path $1/tmp;
$3
}
CONF
}

# start_nginx DIR: run the nginx of DIR/nginx.conf. Not daemonized: a daemon calls setsid(),
# and with the kernel's scheduler autogroups (sched_autogroup_enabled) a session of its own
# gets a CPU share of its own. Here wrk, nginx and the router share the script's session,
# so the CPU is shared fairly.
start_nginx() {
    nginx -p "$1" -c "$1/nginx.conf" -g 'daemon off;' &
    PIDS+=($!)
}

# run_wrk PORT CONNECTIONS [PATH]: "requests/s p99_ms" (and " ERR ..." on errors) of a wrk
# run of SECS seconds with keep-alive GETs for Host HOST (and the header WRK_HEADER, if
# set, e.g. "Accept-Encoding: gzip").
run_wrk() {
    local threads=1
    [ "$2" -gt 1 ] && threads=$NPROC
    local extra=()
    [ -n "${WRK_HEADER:-}" ] && extra=(-H "$WRK_HEADER")
    wrk -t"$threads" -c"$2" -d"${SECS}s" --latency -H "Host: $HOST" "${extra[@]}" "http://127.0.0.1:$1${3:-/}" 2>&1 |
        wrk_summary
}

# wrk_summary: wrk's --latency output on standard input as "requests/s p99_ms" (and
# " ERR ..." on socket errors or non-2xx answers).
wrk_summary() {
    awk '
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ {
            v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
            if (u == "us") v = v / 1000; else if (u == "s") v = v * 1000; else if (u == "m") v = v * 60000
            p99 = v
        }
        /Non-2xx|Socket errors/ { err = err " " $0 }
        END { printf "%s %s%s\n", rps, p99, (err ? " ERR" err : "") }'
}

# median: the median of the numbers on standard input, one a line.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# bench_machine: the machine and date lines every report starts with.
bench_machine() {
    echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "date: $(date -u)"
}

# The order of the targets in each round rotates, so none always runs first.
ORDERS=("slipway nginx nginx-same" "nginx nginx-same slipway" "nginx-same slipway nginx")
HOST=bench.localhost
NPROC=$(nproc)
