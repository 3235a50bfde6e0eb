#!/usr/bin/env bash
# Benchmark: Slipway's HTTP router against nginx as a reverse proxy.
#
# One fast upstream (nginx serving a small static file, keep-alive) on loopback. In
# front of it, on other ports: Slipway's router (the `router_bench` example of
# crates/slipway-router: the same code, runtime and default worker count as `slipway
# serve`, one worker thread per CPU, at most 16) and two nginx proxies (proxy_pass, upstream
# keepalive, the same forwarding headers and request id Slipway adds): `nginx` with
# Debian's `worker_processes auto` (one per CPU), and `nginx-same` with as many workers as
# the router has. wrk (keep-alive GETs) runs against the three in turn, the order rotating
# every round, with 1 and with 64 connections, and against the upstream directly as the
# ceiling. Prints the median requests/s and p99 of each and the ratios of Slipway to
# each nginx. Target: requests/s ratio >= 1.0 and p99 ratio <= 1.0 with 1 and with 64
# connections.
#
# Usage: bench/router.sh [ROUNDS] [SECONDS]
#   ROUNDS   rounds per connection count (default 5)
#   SECONDS  duration of each wrk run (default 10)
# SLIPWAY_ROUTER_WORKERS=N runs the router (and nginx-same) with N workers.
# Needs: nginx, wrk (apt-get install -y nginx wrk), cargo. Not run in CI; it never
# asserts timings.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
bench_needs nginx wrk python3
bench_router_bin
bench_workdir router
UP=$(free_port); NGX=$(free_port); NGS=$(free_port); SLW=$(free_port)

mkdir -p "$WORK/www" "$WORK/up"
python3 -c 'import sys; sys.stdout.write(("<p>slipway router benchmark</p>\n" * 20))' > "$WORK/www/index.html"

nginx_conf "$WORK/up" 1 "    server {
        listen 127.0.0.1:$UP;
        location / { root $WORK/www; }
    }"

proxy_conf() { # DIR WORKERS PORT
    nginx_conf "$1" "$2" "    upstream app {
        server 127.0.0.1:$UP;
        keepalive 256;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$3;
        server_name $HOST;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id;
        }
    }"
}

# Not daemonized (see start_nginx in bench/lib.sh).
start_nginx "$WORK/up"
"$BIN" "127.0.0.1:$SLW" "$HOST" "$UP" > "$WORK/slipway.log" 2>&1 &
PIDS+=($!)

wait_port "$UP" || exit 1
wait_port "$SLW" || { cat "$WORK/slipway.log" >&2; exit 1; }
# The router says how many workers it runs (its default, or SLIPWAY_ROUTER_WORKERS).
router_workers "$WORK/slipway.log"
proxy_conf "$WORK/proxy" "$NPROC" "$NGX"
proxy_conf "$WORK/proxy-same" "$WORKERS" "$NGS"
for d in proxy proxy-same; do start_nginx "$WORK/$d"; done
wait_port "$NGX" || exit 1
wait_port "$NGS" || exit 1

# Same answer through both proxies.
for p in "$UP" "$NGX" "$NGS" "$SLW"; do
    code=$(python3 - "$p" "$HOST" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/", headers={"Host": sys.argv[2]})
r = c.getresponse(); b = r.read()
print(r.status, len(b))
PY
)
    [ "${code%% *}" = 200 ] || { echo "port $p answered $code" >&2; exit 1; }
done

bench_machine
echo "$(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${ROUNDS} rounds of ${SECS}s per target and connection count"
echo "workers: slipway $WORKERS, nginx $NPROC (auto), nginx-same $WORKERS"
printf '%-6s %-10s %14s %10s\n' conns target "requests/s" "p99 ms"
for conns in 1 64; do
    for who in slipway nginx nginx-same direct; do : > "$WORK/$who.$conns"; done
    run_wrk "$UP" "$conns" > /dev/null   # warm-up
    for r in $(seq "$ROUNDS"); do
        for who in ${ORDERS[$(( (r - 1) % 3 ))]}; do
            case $who in slipway) port=$SLW ;; nginx) port=$NGX ;; nginx-same) port=$NGS ;; esac
            out=$(run_wrk "$port" "$conns")
            echo "$out" >> "$WORK/$who.$conns"
            case "$out" in *ERR*) echo "  $who c=$conns round $r: $out" >&2 ;; esac
        done
        run_wrk "$UP" "$conns" >> "$WORK/direct.$conns"
    done
    for who in slipway nginx nginx-same direct; do
        rps=$(cut -d' ' -f1 "$WORK/$who.$conns" | median)
        p99=$(cut -d' ' -f2 "$WORK/$who.$conns" | median)
        printf '%-6s %-10s %14.0f %10.3f\n' "$conns" "$who" "$rps" "$p99"
        v=${who//-/_}
        eval "${v}_rps_$conns=$rps; ${v}_p99_$conns=$p99"
    done
done
echo
echo "ratios slipway/nginx and slipway/nginx-same (target: requests/s >= 1.00, p99 <= 1.00); slipway/direct as the share of the ceiling"
for conns in 1 64; do
    eval "s=\$slipway_rps_$conns; n=\$nginx_rps_$conns; m=\$nginx_same_rps_$conns; d=\$direct_rps_$conns"
    eval "sp=\$slipway_p99_$conns; np=\$nginx_p99_$conns; mp=\$nginx_same_p99_$conns"
    awk -v c="$conns" -v s="$s" -v n="$n" -v m="$m" -v d="$d" -v sp="$sp" -v np="$np" -v mp="$mp" \
        'BEGIN { printf "c=%-3s vs nginx: requests/s %.2f  p99 %.2f   vs nginx-same: requests/s %.2f  p99 %.2f   of ceiling %.2f\n", c, s / n, sp / np, s / m, sp / mp, s / d }'
done
if [ "$WORKERS" = "$NPROC" ]; then
    echo "nginx and nginx-same ran the same configuration ($WORKERS workers each): how far their ratio is from 1.00 is this run's noise"
    for conns in 1 64; do
        eval "n=\$nginx_rps_$conns; m=\$nginx_same_rps_$conns; np=\$nginx_p99_$conns; mp=\$nginx_same_p99_$conns"
        awk -v c="$conns" -v n="$n" -v m="$m" -v np="$np" -v mp="$mp" \
            'BEGIN { printf "c=%-3s nginx/nginx-same: requests/s %.2f  p99 %.2f\n", c, n / m, np / mp }'
    done
fi
