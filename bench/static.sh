#!/usr/bin/env bash
# Benchmark: static files served by Slipway's router (web.locations) against nginx
# serving the same files.
#
# The same folder holds a 1 KiB and a 1 MiB file. Slipway's router (the `router_bench`
# example with a STATIC_DIR: one location `/` rooted there, passthru false, the code and
# runtime of `slipway serve`) and two nginx (`root` on the folder, sendfile on, the same
# validators it always sends): `nginx` with one worker per CPU and `nginx-same` with as
# many workers as the router. wrk (keep-alive GETs) runs against them in turn, the order
# rotating every round, with 1 and 64 connections, for each file. Prints the median
# requests/s and p99 and the ratios of Slipway to each nginx. Target: requests/s ratio
# >= 1.0 and p99 ratio <= 1.0.
#
# Usage: bench/static.sh [ROUNDS] [SECONDS]   (defaults 5 and 10)
# SLIPWAY_BENCH_BIN=PATH uses a router_bench built elsewhere; SLIPWAY_ROUTER_WORKERS=N.
# Needs: nginx, wrk, cargo. Not run in CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for t in nginx wrk python3; do
    command -v "$t" >/dev/null || { echo "needs $t (apt-get install -y nginx wrk)" >&2; exit 2; }
done
if [ -n "${SLIPWAY_BENCH_BIN:-}" ]; then
    BIN=$SLIPWAY_BENCH_BIN
else
    echo "building the router (cargo build --release -p slipway-router --example router_bench)" >&2
    (cd "$ROOT" && cargo build -q --release -p slipway-router --example router_bench)
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    BIN=$TARGET/release/examples/router_bench
fi

WORK=$(mktemp -d /tmp/slipway-bench-static.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
NGX=$(free_port); NGS=$(free_port); SLW=$(free_port); NOAPP=$(free_port)
HOST=bench.localhost
NPROC=$(nproc)

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k.txt"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"

nginx_conf() { # DIR WORKERS PORT
    mkdir -p "$1"
    cat > "$1/nginx.conf" <<EOF
user root;
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $1/tmp;
    proxy_temp_path $1/tmp;
    fastcgi_temp_path $1/tmp;
    uwsgi_temp_path $1/tmp;
    scgi_temp_path $1/tmp;
    types { text/plain txt; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$3;
        server_name $HOST;
        location / { root $WORK/www; expires 1h; }
    }
}
EOF
}

# Not daemonized (see bench/router.sh: one session, a fair share of the CPU).
"$BIN" "127.0.0.1:$SLW" "$HOST" "$NOAPP" "$WORK/www" > "$WORK/slipway.log" 2>&1 &
PIDS+=($!)
wait_port() {
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2; return 1
}
wait_port "$SLW" || { cat "$WORK/slipway.log" >&2; exit 1; }
WORKERS=
for _ in $(seq 50); do
    WORKERS=$(sed -n 's/.* with \([0-9][0-9]*\) worker.*/\1/p' "$WORK/slipway.log")
    [ -n "$WORKERS" ] && break
    sleep 0.1
done
[ -n "$WORKERS" ] || { echo "the router did not say its worker count" >&2; exit 1; }
nginx_conf "$WORK/nginx" "$NPROC" "$NGX"
nginx_conf "$WORK/nginx-same" "$WORKERS" "$NGS"
for d in nginx nginx-same; do
    nginx -p "$WORK/$d" -c "$WORK/$d/nginx.conf" -g 'daemon off;' &
    PIDS+=($!)
done
wait_port "$NGX" || exit 1
wait_port "$NGS" || exit 1

# The same bytes from each.
for p in "$NGX" "$NGS" "$SLW"; do
    for f in 1k.txt 1m.bin; do
        got=$(python3 - "$p" "$HOST" "/$f" <<'PY'
import http.client, sys, hashlib
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", sys.argv[3], headers={"Host": sys.argv[2]})
r = c.getresponse(); b = r.read()
print(r.status, hashlib.sha256(b).hexdigest())
PY
)
        want="200 $(sha256sum "$WORK/www/$f" | cut -d' ' -f1)"
        [ "$got" = "$want" ] || { echo "port $p /$f answered $got" >&2; exit 1; }
    done
done

run_wrk() { # PORT CONNECTIONS PATH
    local threads=1
    [ "$2" -gt 1 ] && threads=$NPROC
    wrk -t"$threads" -c"$2" -d"${SECS}s" --latency -H "Host: $HOST" "http://127.0.0.1:$1$3" 2>&1 |
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
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "date: $(date -u)"
echo "$(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${ROUNDS} rounds of ${SECS}s per target, file and connection count"
echo "workers: slipway $WORKERS, nginx $NPROC (auto), nginx-same $WORKERS"
printf '%-7s %-6s %-10s %14s %10s\n' file conns target "requests/s" "p99 ms"
ORDERS=("slipway nginx nginx-same" "nginx nginx-same slipway" "nginx-same slipway nginx")
RATIOS=""
for f in 1k.txt 1m.bin; do
    for conns in 1 64; do
        for who in slipway nginx nginx-same; do : > "$WORK/res.$who"; done
        run_wrk "$NGX" "$conns" "/$f" > /dev/null   # warm-up
        for r in $(seq "$ROUNDS"); do
            for who in ${ORDERS[$(( (r - 1) % 3 ))]}; do
                case $who in slipway) port=$SLW ;; nginx) port=$NGX ;; nginx-same) port=$NGS ;; esac
                out=$(run_wrk "$port" "$conns" "/$f")
                echo "$out" >> "$WORK/res.$who"
                case "$out" in *ERR*) echo "  $who $f c=$conns round $r: $out" >&2 ;; esac
            done
        done
        for who in slipway nginx nginx-same; do
            rps=$(cut -d' ' -f1 "$WORK/res.$who" | median)
            p99=$(cut -d' ' -f2 "$WORK/res.$who" | median)
            printf '%-7s %-6s %-10s %14.0f %10.3f\n' "$f" "$conns" "$who" "$rps" "$p99"
            eval "${who//-/_}_rps=$rps; ${who//-/_}_p99=$p99"
        done
        RATIOS+=$(awk -v f="$f" -v c="$conns" -v s="$slipway_rps" -v n="$nginx_rps" -v m="$nginx_same_rps" \
            -v sp="$slipway_p99" -v np="$nginx_p99" -v mp="$nginx_same_p99" \
            'BEGIN { printf "%-7s c=%-3s vs nginx: requests/s %.2f  p99 %.2f   vs nginx-same: requests/s %.2f  p99 %.2f", f, c, s / n, sp / np, s / m, sp / mp }')
        RATIOS+=$'\n'
    done
done
echo
echo "ratios slipway/nginx and slipway/nginx-same (target: requests/s >= 1.00, p99 <= 1.00)"
printf '%s' "$RATIOS"
