#!/usr/bin/env bash
# Benchmark: service start-to-ready, Slipway against the same server started by hand.
#
# For each service type (postgresql:15, mariadb:10.11, redis:7.0; first start, so the data
# folder is initialised too), in the same run:
#   - Slipway: a push adding the service to a running environment; the figure is the
#     `service NAME` phase of the push (container start, initdb / mariadb-install-db, wait
#     until pg_isready / mariadb-admin ping / redis-cli ping answers).
#   - by hand: the same server from the same unpacked stack, chrooted as uid 10000 in a
#     private mount namespace (no runc, no cgroup, no network namespace), initialised and
#     started with the same commands, polled with the same ready command.
# Prints seconds of each and the ratio Slipway/by hand. Not run in CI; it never asserts.
#
# Usage: bench/service-start.sh
#   SLIPWAY_BIN=path   the slipway binary (default: target/debug/slipway of this tree)
#   STACKS=dir         a stacks folder holding python:3.11 and the service stacks
#                      (default: imported from /var/tmp/slipway-test-stacks)
# Needs: root, runc, git, ssh, unshare, chroot.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY_BIN=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway}
WORK=$(mktemp -d /tmp/slipway-bench-services.XXXXXX)
trap 'kill $SERVE_PID 2>/dev/null || true; "$SLIPWAY_BIN" down --data-dir "$WORK/data" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
SERVE_PID=

now() { date +%s.%N; }

if [ -z "${STACKS:-}" ]; then
    STACKS=$WORK/stacks
    for t in python:3.11 postgresql:15 mariadb:10.11 redis:7.0; do
        tag=stack-${t/:/-}
        cached=$(ls -d /var/tmp/slipway-test-stacks/$tag-* | head -1)
        "$SLIPWAY_BIN" stack import "$t" "$cached/archive:$tag" --data-dir "$STACKS" >/dev/null
    done
fi
# The unpacked root of a stack (`stack build` of a stack there only unpacks it if needed).
root_of() { "$SLIPWAY_BIN" stack build "$1" --data-dir "$STACKS" 2>/dev/null | awk -F'\t' '{print $4}'; }

# ---- by hand
by_hand() { # NAME STACKROOT START READY...
    local name=$1 root=$2 start=$3; shift 3
    local data=$WORK/hand-$name
    mkdir -p "$data" && chown 10000:10000 "$data"
    local t0; t0=$(now)
    unshare --mount --fork sh -c '
        set -e
        M=$(mktemp -d); mount --bind "$1" "$M"; mount -t proc proc "$M/proc"
        mount --rbind /dev "$M/dev"; mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
        mount --bind "$2" "$M/app"
        cd "$M/app" 2>/dev/null || true
        chroot --userspec=10000:10000 "$M" /bin/sh -c "cd /app; $3" >"$2.log" 2>&1 &
        server=$!
        shift 3
        n=0
        until chroot --userspec=10000:10000 "$M" "$@" >/dev/null 2>&1; do
            n=$((n + 1)); [ $n -lt 1200 ] || { kill -TERM $server; cat "$2.log" >&2; exit 1; }
            sleep 0.05
        done
        kill -TERM $server 2>/dev/null || true; wait $server || true
    ' sh "$root" "$data" "$start" "$@" >&2 || { echo "by hand: $name failed" >&2; exit 1; }
    echo "$(now) - $t0" | bc
}

PW=benchpassword
declare -A HAND
HAND[postgresql]=$(by_hand postgresql "$(root_of postgresql:15)" \
    "printf '%s\n' $PW > /tmp/pw && /usr/lib/postgresql/15/bin/initdb -D /app/pgdata -U main --pwfile=/tmp/pw -A scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null && echo 'CREATE DATABASE main' | /usr/lib/postgresql/15/bin/postgres --single -D /app/pgdata postgres >/dev/null && exec /usr/lib/postgresql/15/bin/postgres -D /app/pgdata -c listen_addresses=127.0.0.1 -c port=25432 -c unix_socket_directories=/tmp" \
    /usr/lib/postgresql/15/bin/pg_isready -q -h 127.0.0.1 -p 25432)
HAND[mariadb]=$(by_hand mariadb "$(root_of mariadb:10.11)" \
    "mariadb-install-db --no-defaults --force --skip-name-resolve --datadir=/app/mysql --auth-root-authentication-method=socket --skip-test-db >/dev/null && exec mariadbd --no-defaults --datadir=/app/mysql --bind-address=127.0.0.1 --port=23306 --socket=/tmp/mysqld.sock --pid-file=/tmp/mysqld.pid --skip-name-resolve" \
    mariadb-admin --no-defaults --socket=/tmp/mysqld.sock ping)
HAND[redis]=$(by_hand redis "$(root_of redis:7.0)" \
    "exec redis-server --bind 127.0.0.1 --port 26379 --dir /app --protected-mode no --appendonly no --save ''" \
    redis-cli -p 26379 ping)

# ---- Slipway: one environment; each push adds one service
mkdir -p "$WORK/keys"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/keys/me"
"$SLIPWAY_BIN" user add me --admin --key "$WORK/keys/me.pub" --data-dir "$WORK/data" >/dev/null
SSH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SLIPWAY_STACKS=true SLIPWAY_STACKS_DIR=$STACKS "$SLIPWAY_BIN" serve --data-dir "$WORK/data" \
    --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
sleep 2
export GIT_SSH_COMMAND="ssh -i $WORK/keys/me -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
APP=$WORK/app && mkdir -p "$APP/.platform" && cd "$APP"
git init -q -b main
printf 'name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n' > .platform.app.yaml
printf "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n" > .platform/routes.yaml
: > .platform/services.yaml
declare -A SLIP
for svc in postgresql:15 mariadb:10.11 redis:7.0; do
    name=${svc%%:*}
    printf '%s:\n  type: %s\n' "$name" "$svc" >> .platform/services.yaml
    git add -A && git -c user.name=b -c user.email=b@b commit -qm "add $name"
    out=$(git push "ssh://git@127.0.0.1:$SSH_PORT/bench.git" main 2>&1 || true)
    # `-----> service NAME: ... [1.23s]`: the phase's own duration.
    SLIP[$name]=$(printf '%s\n' "$out" | grep -- "-----> service $name:" | grep -o '\[[0-9.]*s\]' | tail -1 | tr -d '[]s')
done

printf '%-12s %10s %10s %8s\n' type slipway "by hand" ratio
for name in postgresql mariadb redis; do
    s=${SLIP[$name]:-nan}; h=${HAND[$name]}
    printf '%-12s %9.2fs %9.2fs %8s\n' "$name" "$s" "$h" "$(echo "scale=2; $s / $h" | bc 2>/dev/null || echo -)"
done
