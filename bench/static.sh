#!/usr/bin/env bash
# Benchmark: static files served by Slipway's router (web.locations) against nginx
# serving the same files.
#
# The same folder holds a 1 KiB and a 1 MiB file, and two text files asked for with
# `Accept-Encoding: gzip`: a 2 MiB one (gz/2m.txt), which Slipway's router answers from
# the gzipped copy it makes itself on disk (SLIPWAY_BENCH_GZIP_DIR, as `slipway serve`'s
# DATA/router/gzip), and a 512 KiB script (gz/512k.js), which it answers from the
# gzipped body its worker keeps (in a sealed memfd, sent with sendfile as a file: since
# session 17; in memory and written beside the head before); nginx answers both with
# `gzip_static on` from a `.gz` made beforehand (`gzip -1`, in nginx's own copy of the
# folder). The length of each one's gzipped answers is printed (fewer bytes are less
# work for both sides). Slipway's router (the `router_bench` example with a STATIC_DIR:
# one location `/` rooted there, passthru false, the code and runtime of `slipway
# serve`) and two nginx (`root` on the folder, sendfile on, the same
# validators it always sends): `nginx` with one worker per CPU and `nginx-same` with as
# many workers as the router. wrk (keep-alive GETs) runs against them in turn, the order
# rotating every round, with 1 and 64 connections, for each file. Prints the median
# requests/s and p99 and the ratios of Slipway to each nginx. Target: requests/s ratio
# >= 1.0 and p99 ratio <= 1.0.
#
# Usage: bench/static.sh [ROUNDS] [SECONDS]   (defaults 5 and 10)
# SLIPWAY_BENCH_FILES="gz/2m.txt gz/512k.js" runs only those files (default: all four);
# SLIPWAY_BENCH_BIN=PATH uses a router_bench built elsewhere; SLIPWAY_ROUTER_WORKERS=N;
# SLIPWAY_OPEN_FILE_CACHE=off runs the router without its open-file cache.
# Needs: nginx, wrk, cargo. Not run in CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
bench_needs nginx wrk python3
bench_router_bin
bench_workdir static
NGX=$(free_port); NGS=$(free_port); SLW=$(free_port); NOAPP=$(free_port)

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$WORK/www/1k.txt"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"
mkdir -p "$WORK/www/gz" "$WORK/ngx/gz"
python3 -c 'import sys; sys.stdout.write("".join("line %07d of a text file served gzipped\n" % i for i in range(52429)))' > "$WORK/www/gz/2m.txt"
cp "$WORK/www/gz/2m.txt" "$WORK/ngx/gz/2m.txt"
# Script-like text (names, numbers and punctuation from a fixed seed): compresses about
# as a real bundle does, where the 2 MiB file's repeated lines compress 16 times.
python3 - "$WORK/www/gz/512k.js" <<'PY'
import random, sys
r = random.Random(17)
words = ["function", "return", "const", "this", "value", "length", "props", "state",
         "render", "element", "children", "undefined", "null", "true", "false", "index"]
out, size = [], 0
while size < 512 * 1024:
    line = "var %s%d=function(%s){return %s.%s(%d,%s)};\n" % (
        r.choice(words), r.randrange(10000), r.choice(words), r.choice(words),
        r.choice(words), r.randrange(1 << 20), r.choice(words))
    out.append(line); size += len(line)
open(sys.argv[1], "w").write("".join(out)[:512 * 1024])
PY
cp "$WORK/www/gz/512k.js" "$WORK/ngx/gz/512k.js"
gzip -1 -k "$WORK/ngx/gz/2m.txt" "$WORK/ngx/gz/512k.js"
FILES=${SLIPWAY_BENCH_FILES:-1k.txt 1m.bin gz/2m.txt gz/512k.js}

static_nginx_conf() { # DIR WORKERS PORT
    nginx_conf "$1" "$2" "    sendfile on;
    tcp_nopush on;
    types { text/plain txt; application/javascript js; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$3;
        server_name $HOST;
        location / { root $WORK/www; expires 1h; }
        location /gz/ { root $WORK/ngx; gzip_static on; expires 1h; }
    }"
}

# Not daemonized (see bench/router.sh: one session, a fair share of the CPU).
SLIPWAY_BENCH_GZIP_DIR="$WORK/gzip" "$BIN" "127.0.0.1:$SLW" "$HOST" "$NOAPP" "$WORK/www" > "$WORK/slipway.log" 2>&1 &
PIDS+=($!)
wait_port "$SLW" || { cat "$WORK/slipway.log" >&2; exit 1; }
router_workers "$WORK/slipway.log"
static_nginx_conf "$WORK/nginx" "$NPROC" "$NGX"
static_nginx_conf "$WORK/nginx-same" "$WORKERS" "$NGS"
for d in nginx nginx-same; do start_nginx "$WORK/$d"; done
wait_port "$NGX" || exit 1
wait_port "$NGS" || exit 1

# The same bytes from each.
GZLEN=""
for p in "$NGX" "$NGS" "$SLW"; do
    for f in 1k.txt 1m.bin gz/2m.txt gz/512k.js; do
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
    # Gzipped, with a length (Slipway: once its copy is made, in the background).
    for f in gz/2m.txt gz/512k.js; do
        for try in $(seq 50); do
            got=$(python3 - "$p" "$HOST" "/$f" <<'PY'
import http.client, sys, hashlib, gzip
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", sys.argv[3], headers={"Host": sys.argv[2], "Accept-Encoding": "gzip"})
r = c.getresponse(); b = r.read()
ok = r.getheader("content-encoding") == "gzip" and r.getheader("content-length") is not None
print(r.status, hashlib.sha256(gzip.decompress(b) if ok else b).hexdigest(), len(b))
PY
)
            [ "${got% *}" = "200 $(sha256sum "$WORK/www/$f" | cut -d' ' -f1)" ] && break
            sleep 0.2
        done
        [ "$try" -lt 50 ] || { echo "port $p /$f gzipped answered $got" >&2; exit 1; }
        GZLEN+="$f from port $p: ${got##* } bytes"$'\n'
    done
done

bench_machine
echo "$(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${ROUNDS} rounds of ${SECS}s per target, file and connection count"
echo "workers: slipway $WORKERS, nginx $NPROC (auto), nginx-same $WORKERS"
echo "gzipped answers' bodies (slipway $SLW, nginx $NGX, nginx-same $NGS):"
printf '%s' "$GZLEN"
printf '%-10s %-6s %-10s %14s %10s\n' file conns target "requests/s" "p99 ms"
RATIOS=""
NOISE=""
for f in $FILES; do
    WRK_HEADER=""
    case $f in gz/*) WRK_HEADER="Accept-Encoding: gzip" ;; esac
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
            printf '%-10s %-6s %-10s %14.0f %10.3f\n' "$f" "$conns" "$who" "$rps" "$p99"
            eval "${who//-/_}_rps=$rps; ${who//-/_}_p99=$p99"
        done
        RATIOS+=$(awk -v f="$f" -v c="$conns" -v s="$slipway_rps" -v n="$nginx_rps" -v m="$nginx_same_rps" \
            -v sp="$slipway_p99" -v np="$nginx_p99" -v mp="$nginx_same_p99" \
            'BEGIN { printf "%-10s c=%-3s vs nginx: requests/s %.2f  p99 %.2f   vs nginx-same: requests/s %.2f  p99 %.2f", f, c, s / n, sp / np, s / m, sp / mp }')
        RATIOS+=$'\n'
        NOISE+=$(awk -v f="$f" -v c="$conns" -v n="$nginx_rps" -v m="$nginx_same_rps" -v np="$nginx_p99" -v mp="$nginx_same_p99" \
            'BEGIN { printf "%-10s c=%-3s nginx/nginx-same: requests/s %.2f  p99 %.2f", f, c, n / m, np / mp }')
        NOISE+=$'\n'
    done
done
echo
echo "ratios slipway/nginx and slipway/nginx-same (target: requests/s >= 1.00, p99 <= 1.00)"
printf '%s' "$RATIOS"
if [ "$WORKERS" = "$NPROC" ]; then
    echo "nginx and nginx-same ran the same configuration ($WORKERS workers each): how far their ratio is from 1.00 is this run's noise"
    printf '%s' "$NOISE"
fi
