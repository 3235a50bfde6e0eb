#!/usr/bin/env bash
# Benchmark: a branch's copy of a ~1 GB PostgreSQL database against `pg_dump | pg_restore`
# of the same data, in the same run.
#
#   - Slipway: `main` runs postgresql:15 holding ~1 GB (SIZE_MB); a push of branch `dev`
#     copies it. The figure is the `service db` phase of that push: the parent's volume
#     frozen and its image copied, the copy mounted, PostgreSQL started on it (crash
#     recovery included) and answering pg_isready.
#   - pg_dump | pg_restore: in main's service container, `pg_dump -Fc main | pg_restore`
#     into a new database of the same server, the usual way to copy a database.
# Prints seconds of each and the ratio Slipway/pg_dump (target <= 1.0). Not run in CI; it
# never asserts.
#
# Usage: bench/branch-copy.sh
#   SLIPWAY_BIN=path   the slipway binary (default: target/debug/slipway of this tree)
#   STACKS=dir         a stacks folder holding python:3.11 and postgresql:15
#                      (default: the shared test stacks, /var/tmp/slipway-test-stacks/shared)
#   SIZE_MB=n          the database's size (default 1024)
# Needs: root, runc, git, ssh, bc.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY_BIN=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway}
STACKS=${STACKS:-/var/tmp/slipway-test-stacks/shared}
SIZE_MB=${SIZE_MB:-1024}
WORK=$(mktemp -d /var/tmp/slipway-bench-branch-copy.XXXXXX)
trap 'kill $SERVE_PID 2>/dev/null || true; sleep 1; "$SLIPWAY_BIN" down --data-dir "$WORK/data" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
SERVE_PID=

now() { date +%s.%N; }

mkdir -p "$WORK/keys"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/keys/me"
"$SLIPWAY_BIN" user add me --admin --key "$WORK/keys/me.pub" --data-dir "$WORK/data" >/dev/null
SSH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HTTP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SLIPWAY_STACKS_DIR=$STACKS "$SLIPWAY_BIN" serve --data-dir "$WORK/data" \
    --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
sleep 2
export GIT_SSH_COMMAND="ssh -i $WORK/keys/me -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
REMOTE="ssh://git@127.0.0.1:$SSH_PORT/bench.git"
APP=$WORK/app && mkdir -p "$APP/.platform" && cd "$APP"
git init -q -b main
printf 'name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n' > .platform.app.yaml
printf "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n" > .platform/routes.yaml
printf 'db:\n  type: postgresql:15\n  disk: %d\n' $((SIZE_MB * 3 + 1024)) > .platform/services.yaml
git add -A && git -c user.name=b -c user.email=b@b commit -qm "with a database"
git push -q "$REMOTE" main 2>"$WORK/push-main.log" || { cat "$WORK/push-main.log" "$WORK/serve.log" >&2; exit 1; }

in_db() { # ENV COMMAND: a shell command in the environment's PostgreSQL container
    runc --root "$WORK/data/runtime/state" exec "bench.$1.db.service" sh -c "$2"
}
PSQL="/usr/lib/postgresql/15/bin/psql -h /tmp -U main -tA"
# ~1 GB: rows of ~330 bytes.
ROWS=$((SIZE_MB * 1024 * 1024 / 330))
in_db main "$PSQL -d main -c \"CREATE TABLE t AS SELECT i, md5(i::text) AS h, repeat(md5(i::text), 8) AS pad FROM generate_series(1, $ROWS) i; CHECKPOINT\"" >/dev/null
DB_MB=$(in_db main "$PSQL -d main -c 'SELECT pg_database_size(current_database()) / 1048576'")
echo "database: $DB_MB MB ($ROWS rows)" >&2

# ---- Slipway: the branch's copy
out=$(git push "$REMOTE" main:dev 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
SLIP=$(printf '%s\n' "$out" | grep -- "-----> service db:" | grep -o '\[[0-9.]*s\]' | tail -1 | tr -d '[]s')
printf '%s\n' "$out" | grep -q "data copied from main" || { printf '%s\n' "$out" >&2; exit 1; }
COPIED=$(in_db dev "$PSQL -d main -c 'SELECT count(*) FROM t'")
[ "$COPIED" = "$ROWS" ] || { echo "the copy has $COPIED rows of $ROWS" >&2; exit 1; }

# ---- pg_dump | pg_restore of the same data
t0=$(now)
in_db main "/usr/lib/postgresql/15/bin/createdb -h /tmp -U main copy && /usr/lib/postgresql/15/bin/pg_dump -h /tmp -U main -Fc main | /usr/lib/postgresql/15/bin/pg_restore -h /tmp -U main -d copy"
DUMP=$(echo "$(now) - $t0" | bc)
RESTORED=$(in_db main "$PSQL -d copy -c 'SELECT count(*) FROM t'")
[ "$RESTORED" = "$ROWS" ] || { echo "the restore has $RESTORED rows of $ROWS" >&2; exit 1; }

printf '%-24s %9s\n' "copy of ${DB_MB} MB" seconds
printf '%-24s %8.2fs\n' "slipway branch copy" "$SLIP"
printf '%-24s %8.2fs\n' "pg_dump | pg_restore" "$DUMP"
printf '%-24s %9s\n' "ratio" "$(echo "scale=2; $SLIP / $DUMP" | bc)"
