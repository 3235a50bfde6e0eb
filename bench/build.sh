#!/usr/bin/env bash
# Benchmark: a build pushed to Slipway (to live) against the same steps run directly on the
# host, in the same run, alternating A B A B.
#
#   - Slipway: a push of a python:3.11 app whose `hooks.build` installs a local wheel (~300
#     modules) into `deps/` as pip does a pure wheel (unpacked, byte-compiled; the same
#     python commands on both sides, so no pip version differs) and writes ~2000 files;
#     timed from `git push` to its return (the release live). Each round commits a change,
#     so every push builds: checkout onto the build's own disk image, the hook in a
#     container on the stack, the slug packed, the release started and checked.
#   - host: `git clone` of the same repository, the same hook with the host's python3 (the
#     interpreter itself, not a pyenv shim), then `tar -cf - . | zstd -3 -T0`: what the
#     build does with no isolation, image or deploy.
# Prints the median seconds of each side by side and the ratio Slipway/host: what the
# isolation, the disks and the deploy cost over the bare steps. Not run in CI; it never
# asserts timings.
#
# Usage: bench/build.sh [ROUNDS]
#   ROUNDS             pairs of runs (default 5)
#   SLIPWAY_BIN=path   the slipway binary (default: target/debug/slipway of this tree)
#   STACKS=dir         a stacks folder holding python:3.11
#                      (default: the shared test stacks, /var/tmp/slipway-test-stacks/shared)
# Needs: root, runc, git, ssh, python3, zstd, bc.
set -euo pipefail

ROUNDS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY_BIN=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway}
STACKS=${STACKS:-/var/tmp/slipway-test-stacks/shared}
for t in git ssh python3 zstd bc runc; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done
# The host's interpreter itself, first on PATH: not a wrapper (a pyenv shim costs seconds).
HOST_PY_DIR=$(dirname "$(python3 -c 'import sys; print(sys.executable)')")
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d /var/tmp/slipway-bench-build.XXXXXX)
SERVE_PID=
trap 'kill $SERVE_PID 2>/dev/null || true; sleep 1; "$SLIPWAY_BIN" down --data-dir "$WORK/data" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

now() { date +%s.%N; }

mkdir -p "$WORK/keys"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/keys/me"
"$SLIPWAY_BIN" user add me --admin --key "$WORK/keys/me.pub" --data-dir "$WORK/data" >/dev/null
SSH_PORT=$(free_port)
HTTP_PORT=$(free_port)
SLIPWAY_STACKS_DIR=$STACKS "$SLIPWAY_BIN" serve --data-dir "$WORK/data" \
    --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
wait_port "$SSH_PORT"
export GIT_SSH_COMMAND="ssh -i $WORK/keys/me -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
REMOTE="ssh://git@127.0.0.1:$SSH_PORT/bench.git"

# The app: a wheel of ~300 modules, a generator of the file tree, the hook running both.
APP=$WORK/app && mkdir -p "$APP/.platform" "$APP/wheels" && cd "$APP"
git init -q -b main
python3 - "$APP/wheels" <<'PY'
import base64, hashlib, os, sys, zipfile
name, version = "benchpkg", "1.0"
files = {}
for i in range(300):
    body = "".join(f"def f{j}(x):\n    return x * {j} + {i}\n\n" for j in range(60))
    files[f"{name}/m{i:03d}.py"] = body.encode()
files[f"{name}/__init__.py"] = b"VERSION = '1.0'\n"
info = f"{name}-{version}.dist-info"
files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
record = []
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{info}/RECORD,,")
files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
with zipfile.ZipFile(os.path.join(sys.argv[1], f"{name}-{version}-py3-none-any.whl"), "w", zipfile.ZIP_DEFLATED) as z:
    for path, data in files.items():
        z.writestr(path, data)
PY
cat > gen.py <<'PY'
import os
for i in range(2000):
    d = f"tree/d{i % 50}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i}.txt", "w") as f:
        f.write(f"line {i}\n" * 200)
PY
cat > hook.sh <<'SH'
set -e
python3 -m zipfile -e wheels/benchpkg-1.0-py3-none-any.whl deps
python3 -m compileall -q deps
python3 gen.py
SH
printf 'name: web\ntype: python:3.11\nhooks:\n  build: bash hook.sh\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n' > .platform.app.yaml
printf "'http://{default}/': {type: upstream, upstream: 'web:http'}\n" > .platform/routes.yaml
echo 0 > ROUND
git add -A && git -c user.name=b -c user.email=b@b commit -qm app
# A first push makes the project, its environment and its build cache disk.
git push -q "$REMOTE" main 2>"$WORK/push.log" || { cat "$WORK/push.log" "$WORK/serve.log" >&2; exit 1; }

slipway_round() {
    echo "$1" > "$APP/ROUND"
    git -C "$APP" -c user.name=b -c user.email=b@b commit -qam "round $1"
    local t0; t0=$(now)
    git -C "$APP" push -q "$REMOTE" main 2>"$WORK/push.log" || { cat "$WORK/push.log" "$WORK/serve.log" >&2; exit 1; }
    echo "$(now) - $t0" | bc
}
host_round() {
    rm -rf "$WORK/host" "$WORK/host.tar.zst"
    local t0; t0=$(now)
    git clone -q "$APP" "$WORK/host"
    (cd "$WORK/host" && PATH="$HOST_PY_DIR:$PATH" bash hook.sh 2>/dev/null && tar -cf - . | zstd -q -3 -T0 -o "$WORK/host.tar.zst")
    echo "$(now) - $t0" | bc
}

S=(); H=()
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
        S+=("$(slipway_round "$r")"); H+=("$(host_round)")
    else
        H+=("$(host_round)"); S+=("$(slipway_round "$r")")
    fi
    echo "round $r: slipway ${S[-1]}s  host ${H[-1]}s" >&2
done
SM=$(printf '%s\n' "${S[@]}" | median)
HM=$(printf '%s\n' "${H[@]}" | median)
bench_machine
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %9s\n' "build (pip wheel + 2000 files), $ROUNDS rounds" "median"
printf '%-40s %8.2fs\n' "slipway push to live" "$SM"
printf '%-40s %8.2fs\n' "host: git clone + hook + tar | zstd" "$HM"
printf '%-40s %9s\n' "ratio slipway/host" "$(echo "scale=2; $SM / $HM" | bc)"
