#!/usr/bin/env bash
# Benchmark: Slipway's router over TLS (`serve --https-listen`) against nginx terminating
# TLS with the same certificate and key, in front of the same app upstream (issue 15).
#
# One fast upstream (nginx serving a small static file, keep-alive) on loopback. A
# self-signed ECDSA P-256 certificate for the bench host (openssl). In front of the
# upstream: Slipway's router (the `router_bench` example with SLIPWAY_BENCH_TLS: the
# certificate files picked by SNI exactly as DATA/certs/HOST.pem + HOST.key, rustls, the
# code of `slipway serve`) and two nginx (`listen ... ssl` with the same files,
# proxy_pass with upstream keep-alive, the same forwarding headers): `nginx` with one
# worker per CPU and `nginx-same` with as many workers as the router. wrk (keep-alive
# HTTPS GETs, TLS 1.3, the host name as SNI: wrk runs in a mount namespace of its own
# whose /etc/hosts names the bench host) runs against the three in turn, the order
# rotating every round, with 1 and 64 connections, plus the upstream over plain HTTP
# as the ceiling. Prints the median requests/s and p99 and the ratios of Slipway to
# each nginx. Target: requests/s ratio >= 1.0 and p99 ratio <= 1.0.
#
# Usage: bench/tls.sh [ROUNDS] [SECONDS]   (defaults 5 and 10)
# SLIPWAY_BENCH_BIN=PATH uses a router_bench built elsewhere; SLIPWAY_ROUTER_WORKERS=N.
# Needs root (unshare), nginx, wrk, openssl, cargo. Not run in CI; it never asserts
# timings.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
bench_needs nginx wrk python3 openssl unshare
bench_router_bin
bench_workdir tls

UP=$(free_port); NGX=$(free_port); NGS=$(free_port); SLW=$(free_port)

mkdir -p "$WORK/www" "$WORK/tls/certs"
# The certificate both serve, as Slipway reads it from DATA/certs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$WORK/tls/certs/$HOST.key" -out "$WORK/tls/certs/$HOST.pem" 2>/dev/null
grep -v "[[:space:]]$HOST\$" /etc/hosts > "$WORK/hosts" || true
echo "127.0.0.1 $HOST" >> "$WORK/hosts"
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
        listen 127.0.0.1:$3 ssl;
        server_name $HOST;
        ssl_certificate $WORK/tls/certs/$HOST.pem;
        ssl_certificate_key $WORK/tls/certs/$HOST.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
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

# Not daemonized: a daemon calls setsid(), and with the kernel's scheduler autogroups
# (sched_autogroup_enabled) a session of its own gets a CPU share of its own. Here
# wrk, both nginx and the router share this script's session, so the CPU is shared fairly.
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
SLIPWAY_BENCH_TLS="$WORK/tls" "$BIN" "127.0.0.1:$SLW" "$HOST" "$UP" > "$WORK/slipway.log" 2>&1 &
PIDS+=($!)

wait_port "$UP" || exit 1
wait_port "$SLW" || { cat "$WORK/slipway.log" >&2; exit 1; }
# The router says how many workers it runs (its default, or SLIPWAY_ROUTER_WORKERS).
router_workers "$WORK/slipway.log"
proxy_conf "$WORK/proxy" "$NPROC" "$NGX"
proxy_conf "$WORK/proxy-same" "$WORKERS" "$NGS"
for d in proxy proxy-same; do
    nginx -p "$WORK/$d" -c "$WORK/$d/nginx.conf" -g 'daemon off;' &
    PIDS+=($!)
done
wait_port "$NGX" || exit 1
wait_port "$NGS" || exit 1

# Same answer through the three, over HTTPS with the bench certificate (and the upstream).
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://127.0.0.1:$UP/")" = 200 ] ||
    { echo "the upstream does not answer" >&2; exit 1; }
for p in "$NGX" "$NGS" "$SLW"; do
    got=$(curl -sS -o /dev/null -w '%{http_code} %{ssl_verify_result}' --cacert "$WORK/tls/certs/$HOST.pem" \
        --resolve "$HOST:$p:127.0.0.1" "https://$HOST:$p/") || true
    [ "$got" = "200 0" ] || { echo "port $p answered over HTTPS: $got" >&2; cat "$WORK/slipway.log" >&2; exit 1; }
done

# wrk output -> "requests/s p99_ms"
run_wrk() { # PORT CONNECTIONS [SCHEME]
    local threads=1 scheme=${3:-https}
    [ "$2" -gt 1 ] && threads=$NPROC
    unshare -m sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$WORK/hosts" \
        wrk -t"$threads" -c"$2" -d"${SECS}s" --latency "$scheme://$HOST:$1/" 2>&1 |
        wrk_summary
}

bench_machine
echo "$(nginx -v 2>&1), $(openssl version | cut -d' ' -f1-2), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${ROUNDS} rounds of ${SECS}s per target and connection count"
echo "workers: slipway $WORKERS, nginx $NPROC (auto), nginx-same $WORKERS"
printf '%-6s %-10s %14s %10s\n' conns target "requests/s" "p99 ms"
for conns in 1 64; do
    for who in slipway nginx nginx-same direct; do : > "$WORK/$who.$conns"; done
    run_wrk "$UP" "$conns" http > /dev/null   # warm-up
    for r in $(seq "$ROUNDS"); do
        for who in ${ORDERS[$(( (r - 1) % 3 ))]}; do
            case $who in slipway) port=$SLW ;; nginx) port=$NGX ;; nginx-same) port=$NGS ;; esac
            out=$(run_wrk "$port" "$conns")
            echo "$out" >> "$WORK/$who.$conns"
            case "$out" in *ERR*) echo "  $who c=$conns round $r: $out" >&2 ;; esac
        done
        run_wrk "$UP" "$conns" http >> "$WORK/direct.$conns"
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
echo "ratios slipway/nginx and slipway/nginx-same (target: requests/s >= 1.00, p99 <= 1.00); slipway/direct (plain HTTP to the upstream) as the share of the ceiling"
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
