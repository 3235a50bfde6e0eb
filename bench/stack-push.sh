#!/usr/bin/env bash
# Benchmark: a push to live of an app whose stack is built and unchanged, against the same
# push to a server that runs apps on the host's root and so has no stack at all (`serve
# --unsafe-host-root`, the way Slipway ran apps before stacks), in the same run,
# alternating A B A B. Issue 13: "push-to-live of an unchanged stack adds no stack work".
#
#   - stack: a `slipway serve` whose python:3.11 stack is built (the shared test stacks);
#     each push prints `-----> stack python:3.11: ready (DIGEST) [TIME]`, the whole of the
#     stack's part of the push (the built stack looked up, its unpacked root found, its
#     layers already in the archive), whose TIME this script also reports.
#   - host root: a second `slipway serve --unsafe-host-root` on its own data dir; its pushes
#     have no stack phase.
# Each round commits a one-line change to the same small python app (a build hook that
# writes a file, a `http.server` start command) and pushes it to both, timed from `git
# push` to its return with the release live. Prints the medians side by side, the ratio
# stack/host root, and the median of the stack phase's own time. Not run in CI; it
# asserts nothing.
#
# Usage: bench/stack-push.sh [ROUNDS]
#   ROUNDS             pairs of pushes (default 7)
#   SLIPWAY_BIN=path   the slipway binary (default: target/debug/slipway of this tree)
#   SHOW_PHASES=1      also print the phase lines of each side's last push
#   STACKS=dir         a stacks folder holding python:3.11
#                      (default: the shared test stacks, /var/tmp/slipway-test-stacks/shared)
# Needs: root, runc, git, ssh, python3, bc.
set -euo pipefail

ROUNDS=${1:-7}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY_BIN=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway}
STACKS=${STACKS:-/var/tmp/slipway-test-stacks/shared}
for t in git ssh python3 bc runc; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done
[ -x "$SLIPWAY_BIN" ] || { echo "no $SLIPWAY_BIN (cargo build -p slipway)" >&2; exit 2; }
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d /var/tmp/slipway-bench-stack-push.XXXXXX)
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for side in stack host; do
        "$SLIPWAY_BIN" down --data-dir "$WORK/$side" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap stop_all EXIT

now() { date +%s.%N; }

mkdir -p "$WORK/keys"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/keys/me"
export GIT_SSH_COMMAND="ssh -i $WORK/keys/me -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"

# start_server SIDE [FLAG]: a server on $WORK/SIDE; sets REMOTE_SIDE.
declare -A REMOTE
start_server() {
    local side=$1; shift
    "$SLIPWAY_BIN" user add me --admin --key "$WORK/keys/me.pub" --data-dir "$WORK/$side" >/dev/null
    local ssh_port http_port
    ssh_port=$(free_port)
    http_port=$(free_port)
    SLIPWAY_STACKS_DIR=$STACKS "$SLIPWAY_BIN" serve --data-dir "$WORK/$side" "$@" \
        --ssh-listen "127.0.0.1:$ssh_port" --http-listen "127.0.0.1:$http_port" \
        >"$WORK/$side.log" 2>&1 &
    PIDS+=($!)
    wait_port "$ssh_port"
    REMOTE[$side]="ssh://git@127.0.0.1:$ssh_port/bench.git"
}
start_server stack
start_server host --unsafe-host-root

APP=$WORK/app && mkdir -p "$APP/.platform" && cd "$APP"
git init -q -b main
printf 'name: web\ntype: python:3.11\nhooks:\n  build: echo "built $(cat ROUND)" > built.txt\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n' > .platform.app.yaml
printf "'http://{default}/': {type: upstream, upstream: 'web:http'}\n" > .platform/routes.yaml
echo 0 > ROUND
git add -A && git -c user.name=b -c user.email=b@b commit -qm app
# A first push to each makes the project, its environment and its build cache disk (and,
# on the stack side, adopts the stack's layers into the server's archive).
for side in stack host; do
    git push "${REMOTE[$side]}" main >"$WORK/push.log" 2>&1 || { cat "$WORK/push.log" "$WORK/$side.log" >&2; exit 1; }
done

# push_round SIDE: seconds from `git push` to its return; the stack phase's line is kept.
push_round() {
    local side=$1 t0 t1
    t0=$(now)
    git -C "$APP" push "${REMOTE[$side]}" main >"$WORK/push.log" 2>&1 || { cat "$WORK/push.log" "$WORK/$side.log" >&2; exit 1; }
    t1=$(now)
    if [ "$side" = stack ]; then
        grep -o -- '-----> stack python:3.11: ready.*\]' "$WORK/push.log" | tail -1 >>"$WORK/stack-lines"
    elif grep -q -- '-----> stack ' "$WORK/push.log"; then
        echo "the host-root server's push has a stack phase:" >&2; cat "$WORK/push.log" >&2; exit 1
    fi
    cp "$WORK/push.log" "$WORK/last-$side.log"
    echo "$t1 - $t0" | bc
}

# seconds TIME: a `[TIME]` of the push output (`12ms`, `1.2s`, `2m3s`) in seconds.
seconds() {
    python3 -c '
import re, sys
t = sys.argv[1]; total = 0.0
for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", t):
    total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u]
print(total)' "$1"
}

: >"$WORK/stack-lines"
S=(); H=()
for r in $(seq 1 "$ROUNDS"); do
    echo "$r" > "$APP/ROUND"
    git -C "$APP" -c user.name=b -c user.email=b@b commit -qam "round $r"
    if [ $((r % 2)) -eq 1 ]; then
        S+=("$(push_round stack)"); H+=("$(push_round host)")
    else
        H+=("$(push_round host)"); S+=("$(push_round stack)")
    fi
    echo "round $r: stack ${S[-1]}s  host root ${H[-1]}s  ($(tail -1 "$WORK/stack-lines"))" >&2
done
SM=$(printf '%s\n' "${S[@]}" | median)
HM=$(printf '%s\n' "${H[@]}" | median)
PM=$(sed -n 's/.*\[\(.*\)\]$/\1/p' "$WORK/stack-lines" | while read -r t; do seconds "$t"; done | median)
bench_machine
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %9s\n' "push to live (one-line change), $ROUNDS rounds" "median"
printf '%-44s %8.2fs\n' "on the built python:3.11 stack" "$SM"
printf '%-44s %8.2fs\n' "on the host's root (no stack)" "$HM"
printf '%-44s %8.3fs\n' "the push's stack phase (median)" "$PM"
printf '%-44s %9s\n' "ratio stack/host root" "$(echo "scale=2; $SM / $HM" | bc)"
if [ -n "${SHOW_PHASES:-}" ]; then
    for side in stack host; do
        echo "== the last push's phases, $side"
        grep -- '----->' "$WORK/last-$side.log" | sed 's/ *$//'
    done
fi
