#!/usr/bin/env bash
# Benchmark: a PHP hello world through Slipway's router + PHP-FPM against nginx + the
# same PHP-FPM.
#
# One PHP-FPM (Debian's php-fpm, `pm = static` with one worker per CPU, chrooted into a
# work folder so that scripts are `/app/index.php` as in a container) answers both.
# In front of it: Slipway's router (the `router_bench` example with SLIPWAY_BENCH_FASTCGI=1:
# one location `/` that runs `.php` files and passes everything else to `/index.php`,
# the code of `slipway serve`) and nginx (`fastcgi_pass` with Debian's `fastcgi_params`,
# one worker per CPU, as many workers as the router in `nginx-same`). wrk (keep-alive
# GETs of `/hello`) runs against them in turn, the order rotating every round, with 1 and
# 64 connections. Prints the median requests/s and p99 and the ratios of Slipway to each
# nginx. Target: requests/s ratio >= 1.0 and p99 ratio <= 1.0.
#
# With SLIPWAY_BENCH_FPM=unix, PHP-FPM listens on a unix socket (as `slipway serve` runs
# it, and as Debian's php-fpm pool does) and both Slipway and nginx reach it there.
#
# Usage: bench/php.sh [ROUNDS] [SECONDS]   (defaults 5 and 10)
# SLIPWAY_BENCH_BIN=PATH uses a router_bench built elsewhere.
# Needs: nginx, wrk, php-fpm (apt-get install -y nginx wrk php-fpm), cargo. Not run in
# CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FPM=$(ls /usr/sbin/php-fpm* 2>/dev/null | head -1 || true)
[ -n "$FPM" ] || { echo "needs php-fpm (apt-get install -y php-fpm)" >&2; exit 2; }
. "$ROOT/bench/lib.sh"
bench_needs nginx wrk python3
bench_router_bin
bench_workdir php
chmod 755 "$WORK"
NGX=$(free_port); NGS=$(free_port); SLW=$(free_port); FPMPORT=$(free_port)

if [ "${SLIPWAY_BENCH_FPM:-tcp}" = unix ]; then
    FPM_LISTEN=$WORK/fpm.sock; FPM_PASS=unix:$FPM_LISTEN; FPM_UPSTREAM=$FPM_LISTEN
else
    FPM_LISTEN=127.0.0.1:$FPMPORT; FPM_PASS=$FPM_LISTEN; FPM_UPSTREAM=$FPMPORT
fi

# The chroot of PHP-FPM: the app at /app.
mkdir -p "$WORK/chroot/app" "$WORK/chroot/tmp"
chmod 1777 "$WORK/chroot/tmp"
cat > "$WORK/chroot/app/index.php" <<'PHP'
<?php echo "Hello, world!\n";
PHP
cat > "$WORK/fpm.conf" <<EOF
[global]
error_log = $WORK/fpm.log
daemonize = no
[bench]
user = nobody
group = nogroup
listen = $FPM_LISTEN
listen.mode = 0666
listen.backlog = 4096
pm = static
pm.max_children = $NPROC
chroot = $WORK/chroot
EOF
"$FPM" --nodaemonize --fpm-config "$WORK/fpm.conf" &
PIDS+=($!)

php_nginx_conf() { # DIR WORKERS PORT
    nginx_conf "$1" "$2" "    server {
        listen 127.0.0.1:$3;
        server_name $HOST;
        root /app;
        location / { try_files \$uri /index.php\$is_args\$args; }
        location ~ \.php\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_pass $FPM_PASS;
        }
    }"
}

SLIPWAY_BENCH_FASTCGI=1 "$BIN" "127.0.0.1:$SLW" "$HOST" "$FPM_UPSTREAM" "$WORK/chroot/app" > "$WORK/slipway.log" 2>&1 &
PIDS+=($!)
if [ "$FPM_UPSTREAM" = "$FPMPORT" ]; then
    wait_port "$FPMPORT" || { cat "$WORK/fpm.log" >&2; exit 1; }
else
    for _ in $(seq 100); do [ -S "$FPM_LISTEN" ] && break; sleep 0.1; done
    [ -S "$FPM_LISTEN" ] || { cat "$WORK/fpm.log" >&2; exit 1; }
fi
wait_port "$SLW" || { cat "$WORK/slipway.log" >&2; exit 1; }
router_workers "$WORK/slipway.log"
php_nginx_conf "$WORK/nginx" "$NPROC" "$NGX"
php_nginx_conf "$WORK/nginx-same" "$WORKERS" "$NGS"
for d in nginx nginx-same; do start_nginx "$WORK/$d"; done
wait_port "$NGX" || exit 1
wait_port "$NGS" || exit 1

# The same answer from each.
for p in "$NGX" "$NGS" "$SLW"; do
    got=$(python3 - "$p" "$HOST" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/hello", headers={"Host": sys.argv[2]})
r = c.getresponse(); print(r.status, r.read().decode().strip())
PY
)
    [ "$got" = "200 Hello, world!" ] || { echo "port $p answered: $got" >&2; cat "$WORK/fpm.log" >&2; exit 1; }
done

bench_machine
echo "$(nginx -v 2>&1), $("$FPM" -v | head -1 | cut -d' ' -f1-2), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${ROUNDS} rounds of ${SECS}s per target and connection count"
echo "workers: slipway $WORKERS, nginx $NPROC (auto), nginx-same $WORKERS, php-fpm $NPROC (static) on ${SLIPWAY_BENCH_FPM:-tcp}"
printf '%-6s %-10s %14s %10s\n' conns target "requests/s" "p99 ms"
RATIOS=""
for conns in 1 64; do
    for who in slipway nginx nginx-same; do : > "$WORK/res.$who"; done
    run_wrk "$NGX" "$conns" /hello > /dev/null   # warm-up
    for r in $(seq "$ROUNDS"); do
        for who in ${ORDERS[$(( (r - 1) % 3 ))]}; do
            case $who in slipway) port=$SLW ;; nginx) port=$NGX ;; nginx-same) port=$NGS ;; esac
            out=$(run_wrk "$port" "$conns" /hello)
            echo "$out" >> "$WORK/res.$who"
            case "$out" in *ERR*) echo "  $who c=$conns round $r: $out" >&2 ;; esac
        done
    done
    for who in slipway nginx nginx-same; do
        rps=$(cut -d' ' -f1 "$WORK/res.$who" | median)
        p99=$(cut -d' ' -f2 "$WORK/res.$who" | median)
        printf '%-6s %-10s %14.0f %10.3f\n' "$conns" "$who" "$rps" "$p99"
        eval "${who//-/_}_rps=$rps; ${who//-/_}_p99=$p99"
    done
    RATIOS+=$(awk -v c="$conns" -v s="$slipway_rps" -v n="$nginx_rps" -v m="$nginx_same_rps" \
        -v sp="$slipway_p99" -v np="$nginx_p99" -v mp="$nginx_same_p99" \
        'BEGIN { printf "c=%-3s vs nginx: requests/s %.2f  p99 %.2f   vs nginx-same: requests/s %.2f  p99 %.2f", c, s / n, sp / np, s / m, sp / mp }')
    RATIOS+=$'\n'
done
echo
echo "ratios slipway/nginx and slipway/nginx-same (target: requests/s >= 1.00, p99 <= 1.00)"
printf '%s' "$RATIOS"
