#!/usr/bin/env bash
# Benchmark: failed requests and p99 latency during a graceful upgrade, Slipway against
# nginx's binary upgrade, under the same load (issue 18).
#
# One app (python3 http.server, keep-alive) pushed to a Slipway server. wrk (keep-alive
# GETs) runs for SECONDS against Slipway's router, and at a third of the run
# `slipway serve --upgrade` replaces the server. Then the same against nginx proxying to
# the same app (nginx runs in the app's network namespace, where the app listens, and so
# does its wrk), upgraded as its documentation says: USR2 (a new master on the same
# sockets), WINCH (old workers finish and exit), QUIT (old master exits). Rounds
# alternate A B A B. Prints each run's requests, failures (socket errors and non-2xx)
# and p99, and the totals. Target: Slipway 0 failed, p99 <= nginx's.
#
# Usage: bench/upgrade.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (defaults 3, 9, 16)
# BASELINE=1 also runs each round once without an upgrade (rows `slipway-` and `nginx-`),
# to tell the upgrade's share of the tail from the proxy's own.
# Uses target/debug/slipway (cargo build -p slipway), or $SLIPWAY. Needs root, runc,
# git, ssh, python3, nginx, wrk. Not run in CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-3}
SECS=${2:-9}
CONNS=${3:-16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SLIPWAY=${SLIPWAY:-$TARGET/debug/slipway}
[ -x "$SLIPWAY" ] || { echo "build it first: cargo build -p slipway" >&2; exit 2; }
for t in nginx wrk python3 runc; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done
NGINX=$(command -v nginx)

WORK=$(mktemp -d /tmp/slipway-bench-upgrade.XXXXXX)
DATA=$WORK/data
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
SSH_PORT=$(free_port); HTTP_PORT=$(free_port); NGX_PORT=$(free_port)
HOST=main.bench.localhost
SERVE_ARGS=(serve --data-dir "$DATA" --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT")
NS=
cleanup() {
    [ -f "$WORK/ngx/nginx.pid" ] && kill -QUIT "$(cat "$WORK/ngx/nginx.pid")" 2>/dev/null || true
    [ -f "$DATA/serve.lock" ] && kill -TERM "$(cat "$DATA/serve.lock")" 2>/dev/null || true
    sleep 2
    "$SLIPWAY" down --data-dir "$DATA" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N "" -C bench -f "$WORK/key"
"$SLIPWAY" user add bench --admin --key "$WORK/key.pub" --data-dir "$DATA" >/dev/null
export GIT_SSH_COMMAND="ssh -i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
SLIPWAY_LOG=warn "$SLIPWAY" "${SERVE_ARGS[@]}" >>"$WORK/serve.log" 2>&1 &
for _ in $(seq 100); do grep -q "slipway serving" "$WORK/serve.log" && break; sleep 0.1; done
# nginx runs as many workers as the router says it runs (its default, or --router-workers).
WORKERS=$(sed -n 's/.*(\([0-9][0-9]*\) router worker.*/\1/p' "$WORK/serve.log" | head -1)
[ -n "$WORKERS" ] || { echo "the server did not say its router worker count:" >&2; cat "$WORK/serve.log" >&2; exit 1; }

APP=$WORK/app
mkdir -p "$APP"
printf 'name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\n' > "$APP/.platform.app.yaml"
cat > "$APP/server.py" <<'PY'
import http.server, os
BODY = b"<p>slipway upgrade benchmark</p>\n" * 20
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
S(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
PY
git -C "$APP" init -q -b main
git -C "$APP" add -A
git -C "$APP" -c user.name=b -c user.email=b@example.com commit -q -m app
git -C "$APP" push -q "ssh://git@127.0.0.1:$SSH_PORT/bench.git" main >/dev/null 2>&1

# The app's network namespace and port, from its container's process.
ID=$(runc --root "$DATA/runtime/state" list -q | head -1)
PID=$(runc --root "$DATA/runtime/state" state "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
NS=$(ip netns identify "$PID")
APP_PORT=$(tr '\0' '\n' < "/proc/$PID/environ" | sed -n 's/^PORT=//p')
[ -n "$NS" ] && [ -n "$APP_PORT" ] || { echo "could not find the app's namespace and port" >&2; exit 1; }

mkdir -p "$WORK/ngx/tmp"
cat > "$WORK/ngx/nginx.conf" <<CONF
user root;
worker_processes $WORKERS;
pid $WORK/ngx/nginx.pid;
error_log $WORK/ngx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $WORK/ngx/tmp;
    proxy_temp_path $WORK/ngx/tmp;
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
        }
    }
}
CONF
ip netns exec "$NS" "$NGINX" -p "$WORK/ngx" -c "$WORK/ngx/nginx.conf"
sleep 0.5

# wrk's figures: requests, failures (socket errors + non-2xx), p99.
figures() {
    python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
req = int(re.search(r"(\d+) requests in", t).group(1))
fail = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
fail += int(m.group(1)) if m else 0
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
print(f"{req} {fail} {ms:.2f}")
PY
}

# run_WHO [steady]: wrk for SECONDS, with an upgrade at a third of it unless steady.
run_slipway() {
    wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -H "Host: $HOST" "http://127.0.0.1:$HTTP_PORT/" > "$WORK/wrk.txt" &
    local w=$!
    sleep $((SECS / 3))
    [ "${1:-}" = steady ] || SLIPWAY_LOG=warn "$SLIPWAY" "${SERVE_ARGS[@]}" --upgrade >>"$WORK/serve.log" 2>&1 &
    wait "$w"
    figures "$WORK/wrk.txt"
}

run_nginx() {
    ip netns exec "$NS" wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$NGX_PORT/" > "$WORK/wrk.txt" &
    local w=$!
    if [ "${1:-}" = steady ]; then
        wait "$w"
        figures "$WORK/wrk.txt"
        return
    fi
    sleep $((SECS / 3))
    kill -USR2 "$(cat "$WORK/ngx/nginx.pid")"
    for _ in $(seq 50); do [ -f "$WORK/ngx/nginx.pid.oldbin" ] && break; sleep 0.1; done
    sleep 0.5
    kill -WINCH "$(cat "$WORK/ngx/nginx.pid.oldbin")"
    sleep 0.5
    kill -QUIT "$(cat "$WORK/ngx/nginx.pid.oldbin")"
    wait "$w"
    figures "$WORK/wrk.txt"
}

echo "workers: slipway $WORKERS (router), nginx $WORKERS"
printf '%-8s %-6s %10s %8s %9s\n' who round requests failed p99_ms
declare -A REQ FAIL
for r in $(seq "$ROUNDS"); do
    for who in slipway nginx; do
        read -r req fail p99 < <("run_$who")
        printf '%-8s %-6s %10s %8s %9s\n' "$who" "$r" "$req" "$fail" "$p99"
        REQ[$who]=$(( ${REQ[$who]:-0} + req ))
        FAIL[$who]=$(( ${FAIL[$who]:-0} + fail ))
        sleep 2
    done
    if [ "${BASELINE:-0}" = 1 ]; then
        for who in slipway nginx; do
            read -r req fail p99 < <("run_$who" steady)
            printf '%-8s %-6s %10s %8s %9s\n' "$who-" "$r" "$req" "$fail" "$p99"
            sleep 1
        done
    fi
done
for who in slipway nginx; do
    echo "$who: ${REQ[$who]} requests, ${FAIL[$who]} failed in $ROUNDS upgrades"
done
