#!/usr/bin/env bash
# Benchmark: how fast `slipway serve` serves again after a crash (issue 18).
#
# Starts a server in a fresh data dir, pushes the demo app (python3 http.server) to N
# branches (N environments, N running containers), then kills the server with SIGKILL
# and starts it again on the same data dir, and measures from the start of the new
# process: the first routed answer (200 from one environment) and the time until every
# environment answered 200. Repeats ROUNDS times and prints each figure and the median.
# Target: every environment answering within 1 s with 100 environments.
#
# Usage: bench/restart.sh [N] [ROUNDS]
#   N       environments (default 100)
#   ROUNDS  crash + start rounds (default 5)
# Uses target/debug/slipway (cargo build -p slipway), or $SLIPWAY. Needs root, runc,
# git, ssh, python3. Not run in CI; it never asserts timings.
set -euo pipefail

N=${1:-100}
ROUNDS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SLIPWAY=${SLIPWAY:-$TARGET/debug/slipway}
[ -x "$SLIPWAY" ] || { echo "build it first: cargo build -p slipway" >&2; exit 2; }

WORK=$(mktemp -d /tmp/slipway-bench-restart.XXXXXX)
DATA=$WORK/data
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
SSH_PORT=$(free_port); HTTP_PORT=$(free_port)
SERVE_ARGS=(serve --data-dir "$DATA" --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT")
cleanup() {
    if [ -f "$WORK/pid" ]; then kill -TERM "$(cat "$WORK/pid")" 2>/dev/null || true; sleep 1; fi
    "$SLIPWAY" down --data-dir "$DATA" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP_LOG:-}" ] && trap 'cp "$WORK/serve.log" "$KEEP_LOG"; cleanup' EXIT

ssh-keygen -q -t ed25519 -N "" -C bench -f "$WORK/key"
"$SLIPWAY" user add bench --admin --key "$WORK/key.pub" --data-dir "$DATA" >/dev/null
export GIT_SSH_COMMAND="ssh -i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
SLIPWAY_LOG=${SLIPWAY_LOG:-warn} "$SLIPWAY" "${SERVE_ARGS[@]}" >"$WORK/serve.log" 2>&1 &
echo $! > "$WORK/pid"
for _ in $(seq 100); do grep -q "slipway serving" "$WORK/serve.log" && break; sleep 0.1; done

APP=$WORK/app
mkdir -p "$APP"
cat > "$APP/.platform.app.yaml" <<'YAML'
name: hello
type: python:3.11
web:
  commands:
    start: python3 server.py
YAML
cat > "$APP/server.py" <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
PY
git -C "$APP" init -q -b main
git -C "$APP" add -A
git -C "$APP" -c user.name=b -c user.email=b@example.com commit -q -m app
echo "pushing $N environments" >&2
for i in $(seq "$N"); do
    git -C "$APP" push -q "ssh://git@127.0.0.1:$SSH_PORT/bench.git" "main:e$i" >/dev/null 2>&1 \
        || { echo "push e$i failed" >&2; exit 1; }
done

python3 - "$SLIPWAY" "$WORK" "$N" "$ROUNDS" "$HTTP_PORT" "${SERVE_ARGS[@]}" <<'PY'
import os, signal, socket, statistics, subprocess, sys, time
slipway, work, n, rounds, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
args = sys.argv[6:]
hosts = [f"e{i}.bench.localhost" for i in range(1, n + 1)]

def status(host):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError:
        return None
    try:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(64)
        return int(data.split()[1]) if data else None
    except (OSError, ValueError, IndexError):
        return None
    finally:
        s.close()

for h in hosts:
    assert status(h) == 200, f"{h} does not answer before the crash"
firsts, alls = [], []
for r in range(rounds):
    os.kill(int(open(f"{work}/pid").read()), signal.SIGKILL)
    time.sleep(0.2)
    t0 = time.monotonic()
    log = open(f"{work}/serve.log", "a")
    p = subprocess.Popen([slipway] + args, stdout=log, stderr=log, env=dict(os.environ, SLIPWAY_LOG=os.environ.get("SLIPWAY_LOG", "warn")))
    open(f"{work}/pid", "w").write(str(p.pid))
    first = None
    pending = list(hosts)
    other = notfound = 0
    while pending:
        st = status(pending[0])
        if st == 200:
            if first is None:
                first = time.monotonic() - t0
            pending.pop(0)
        elif st is not None:
            other += 1
            notfound += st == 404
        else:
            time.sleep(0.002)
        if time.monotonic() - t0 > 120:
            sys.exit("not every environment answered within 120 s")
    done = time.monotonic() - t0
    firsts.append(first); alls.append(done)
    t1 = time.monotonic()
    for h in hosts:
        status(h)
    warm = time.monotonic() - t1
    print(f"round {r+1}: first routed answer {first*1000:.0f} ms, all {n} environments {done*1000:.0f} ms (non-200 answers meanwhile: {other}, of which 404: {notfound}; one more pass over all, warm: {warm*1000:.0f} ms)")
print(f"median of {rounds}: first routed answer {statistics.median(firsts)*1000:.0f} ms, all {n} environments {statistics.median(alls)*1000:.0f} ms")
PY
