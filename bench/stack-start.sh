#!/usr/bin/env bash
# Benchmark: container start to first HTTP answer, an app on its stack (python:3.11, the
# unpacked stack as the container's read-only root, as `slipway serve` runs apps) against
# the same app in a container on the host's root (the host's /usr, /etc and /lib* bound
# read-only into an empty root, as Slipway ran apps before stacks), both started with
# runc directly and otherwise alike (tini as pid 1, /app bound read-only, a /tmp tmpfs,
# the host's network, the same python3 server on 127.0.0.1). Runs alternate A B A B in the
# same run; the script prints the median and the ratio stack / host. Target: <= 1.1.
#
# Usage: bench/stack-start.sh [ROUNDS] [SLIPWAY_BINARY]
#   ROUNDS          pairs of runs (default 15)
#   SLIPWAY_BINARY  default: target/debug/slipway (builds the python:3.11 stack if needed)
# STACKS_DIR: where the stack is kept (default /var/tmp/slipway-test-stacks/shared, the
# e2e tests' folder). Needs root, runc, tini, python3. Not run in CI; it asserts nothing.
set -euo pipefail

ROUNDS=${1:-15}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway}
STACKS_DIR=${STACKS_DIR:-/var/tmp/slipway-test-stacks/shared}
if [ ! -x "$BIN" ]; then
    echo "building $BIN (cargo build -p slipway)" >&2
    (cd "$ROOT" && cargo build -q -p slipway)
fi
for t in runc python3 jq; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done
INIT=/usr/bin/tini-static
[ -x "$INIT" ] || { echo "needs $INIT (apt-get install tini)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (runc)" >&2; exit 2; }

STACK_ROOT=$("$BIN" stack build python:3.11 --data-dir "$STACKS_DIR" | cut -f4)
[ -d "$STACK_ROOT/usr" ] || { echo "no stack root at $STACK_ROOT" >&2; exit 2; }
[ -e "$STACK_ROOT/.slipway/init" ] || { echo "$STACK_ROOT has no /.slipway/init mount point" >&2; exit 2; }

WORK=$(mktemp -d /tmp/slipway-bench-stack-start.XXXXXX)
RUNC_ROOT=$WORK/runc
cleanup() {
    for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
        runc --root "$RUNC_ROOT" delete -f "$id" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

APP=$WORK/app
mkdir -p "$APP"
cat > "$APP/server.py" <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
PY
chmod -R a+rX "$WORK"

# bundle NAME ROOTFS EXTRA_MOUNTS_JSON: a bundle like Slipway's (no capabilities,
# no_new_privs, an unprivileged user, tini as pid 1), on the host's network.
bundle() {
    local dir=$WORK/$1 rootfs=$2 extra=$3
    mkdir -p "$dir"
    (cd "$dir" && runc spec)
    jq --arg root "$rootfs" --arg app "$APP" --arg init "$INIT" --argjson extra "$extra" '
        .process.terminal = false
        | .process.user = {uid: 2000000123, gid: 2000000123}
        | .process.args = ["/.slipway/init", "-g", "--", "python3", "/app/server.py"]
        | .process.cwd = "/app"
        | .process.noNewPrivileges = true
        | .process.capabilities = {bounding: [], effective: [], permitted: [], inheritable: [], ambient: []}
        | .root = {path: $root, readonly: true}
        | .linux.namespaces |= map(select(.type != "network"))
        | .mounts += $extra + [
            {destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", "size=67108864"]},
            {destination: "/app", type: "bind", source: $app, options: ["rbind", "ro", "nosuid", "nodev"]},
            {destination: "/.slipway/init", type: "bind", source: $init, options: ["rbind", "ro"]}
          ]' "$dir/config.json" > "$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
}

# The stack: its unpacked root is the container's root.
bundle stack "$STACK_ROOT" '[]'

# The host's root: an empty root with the host's /usr, /etc and /lib* bound read-only,
# merged-usr links recreated (what `serve --unsafe-host-root` does).
HOSTFS=$WORK/hostfs
mkdir -p "$HOSTFS"/{usr,etc,proc,dev,sys,tmp,app,.slipway}
touch "$HOSTFS/.slipway/init"
host_mounts='[{"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]},
              {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro", "nosuid", "nodev"]}'
for d in bin sbin lib lib64 lib32 libx32; do
    if [ -L "/$d" ]; then
        ln -s "$(readlink "/$d")" "$HOSTFS/$d"
    elif [ -d "/$d" ]; then
        mkdir -p "$HOSTFS/$d"
        host_mounts+=", {\"destination\": \"/$d\", \"type\": \"bind\", \"source\": \"/$d\", \"options\": [\"rbind\", \"ro\", \"nosuid\", \"nodev\"]}"
    fi
done
host_mounts+=']'
bundle host "$HOSTFS" "$host_mounts"
chmod -R a+rX "$WORK"

# once NAME: start a container of bundle NAME, print the ms until it answers, remove it.
once() {
    local name=$1 port id
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    id=bench-$name-$port
    jq --arg p "PORT=$port" '.process.env += [$p]' "$WORK/$name/config.json" > "$WORK/$name/run.json"
    python3 - "$RUNC_ROOT" "$WORK/$name" "$id" "$port" <<'PY'
import json, os, shutil, socket, subprocess, sys, time
runc_root, bundle, cid, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = os.path.join(bundle, "run-" + cid)
os.makedirs(run)
shutil.copy(os.path.join(bundle, "run.json"), os.path.join(run, "config.json"))
t0 = time.monotonic()
subprocess.run(["runc", "--root", runc_root, "run", "-d", "--bundle", run, cid],
               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.0 200"):
                break
    except OSError:
        pass
    if time.monotonic() - t0 > 30:
        sys.exit("no answer within 30 s")
    time.sleep(0.002)
print(f"{(time.monotonic() - t0) * 1000:.1f}")
subprocess.run(["runc", "--root", runc_root, "delete", "-f", cid], check=False)
shutil.rmtree(run)
PY
}

stack_ms=()
host_ms=()
# One of each first, unmeasured: page cache and runc warm for both.
once stack >/dev/null
once host >/dev/null
for i in $(seq 1 "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then
        stack_ms+=("$(once stack)"); host_ms+=("$(once host)")
    else
        host_ms+=("$(once host)"); stack_ms+=("$(once stack)")
    fi
    echo "round $i: stack ${stack_ms[-1]} ms, host ${host_ms[-1]} ms" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
S=$(median "${stack_ms[@]}")
H=$(median "${host_ms[@]}")
echo "start to first answer, median of $ROUNDS: stack (python:3.11) $S ms, host root $H ms, ratio $(awk -v s="$S" -v h="$H" 'BEGIN {printf "%.2f", s / h}')"
