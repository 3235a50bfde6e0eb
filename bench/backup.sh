#!/usr/bin/env bash
# Benchmark: `backup create` of a PostgreSQL database of about SIZE_MB (default 1024) against
# `pg_dump -Fc | pg_restore` of the same data, measured in the same run.
#
#   - Slipway: `ssh git@HOST backup create bench main` (wall clock): pg_dump -Fc inside the
#     service's container streamed into the archive, hashed, stored atomically, the manifest
#     tagged and recorded.
#   - peer: `pg_dump -Fc -d main | pg_restore -d copy` in the same container against the same
#     server (what a hand-made copy of the database costs).
# Prints seconds of each and the ratio Slipway/peer (target <= 1.0). Not run in CI; it
# never asserts.
#
# Usage: bench/backup.sh [SIZE_MB]
#   SLIPWAY_BIN=path   the slipway binary (default: target/debug/slipway of this tree)
#   STACKS=dir         a stacks folder holding python:3.11 and postgresql:15
#                      (default: the tests' shared /var/tmp/slipway-test-stacks/shared)
# Needs: root, runc, git, ssh.
set -euo pipefail

SIZE_MB=${1:-1024}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY_BIN=${SLIPWAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway}
STACKS=${STACKS:-/var/tmp/slipway-test-stacks/shared}
WORK=$(mktemp -d /var/tmp/slipway-bench-backup.XXXXXX)
SERVE_PID=
trap 'kill $SERVE_PID 2>/dev/null || true; wait $SERVE_PID 2>/dev/null || true; "$SLIPWAY_BIN" down --data-dir "$WORK/data" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

now() { date +%s.%N; }

mkdir -p "$WORK/keys"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/keys/me"
"$SLIPWAY_BIN" user add me --admin --key "$WORK/keys/me.pub" --data-dir "$WORK/data" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SSH_PORT=$(port)
HTTP_PORT=$(port)
SLIPWAY_STACKS_DIR=$STACKS "$SLIPWAY_BIN" serve --data-dir "$WORK/data" \
    --ssh-listen "127.0.0.1:$SSH_PORT" --http-listen "127.0.0.1:$HTTP_PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
sleep 2
SSH="ssh -i $WORK/keys/me -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
export GIT_SSH_COMMAND=$SSH
APP=$WORK/app && mkdir -p "$APP/.platform" && cd "$APP"
git init -q -b main
printf "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:postgresql'\nweb:\n  commands:\n    start: python3 -m http.server \$PORT --bind 127.0.0.1\n" > .platform.app.yaml
printf "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n" > .platform/routes.yaml
printf 'db:\n  type: postgresql:15\n' > .platform/services.yaml
git add -A && git -c user.name=b -c user.email=b@b commit -qm bench
git push -q "ssh://git@127.0.0.1:$SSH_PORT/bench.git" main >/dev/null 2>&1 || {
    echo "push failed" >&2; tail -20 "$WORK/serve.log" >&2; exit 1; }

RUNC="runc --root $WORK/data/runtime/state"
C=bench.main.db.service
BIN=/usr/lib/postgresql/15/bin
psql() { $RUNC exec "$C" $BIN/psql -h /tmp -U main -AtX -v ON_ERROR_STOP=1 "$@"; }

# ~SIZE_MB of rows: 4 KiB-ish pages of an id, an md5 and 200 bytes of text (about 4,000
# rows per MB with the row overhead), in 16 batches.
ROWS=$((SIZE_MB * 3800))
echo "loading $ROWS rows (~$SIZE_MB MB)" >&2
psql -d main -c "CREATE TABLE big (id bigint PRIMARY KEY, h text, pad text)" >/dev/null
for i in $(seq 0 15); do
    lo=$((ROWS * i / 16 + 1)); hi=$((ROWS * (i + 1) / 16))
    psql -d main -c "INSERT INTO big SELECT g, md5(g::text), repeat(md5((g * 7)::text), 6) FROM generate_series($lo, $hi) g" >/dev/null
done
psql -d main -c "VACUUM ANALYZE big" >/dev/null
SIZE=$(psql -d main -c "SELECT pg_size_pretty(pg_database_size('main'))")
echo "database main: $SIZE" >&2

# Slipway.
t0=$(now)
$SSH -p "$SSH_PORT" git@127.0.0.1 backup create bench main >"$WORK/backup.out" 2>&1 || {
    cat "$WORK/backup.out" >&2; exit 1; }
SLIP=$(echo "$(now) - $t0" | bc)

# Peer: dump and restore into another database of the same server.
psql -d postgres -c "CREATE DATABASE copy" >/dev/null
t0=$(now)
$RUNC exec "$C" sh -c "$BIN/pg_dump -h /tmp -U main -Fc -d main | $BIN/pg_restore -h /tmp -U main -d copy"
PEER=$(echo "$(now) - $t0" | bc)
ROWS_COPY=$(psql -d copy -c "SELECT count(*) FROM big")
[ "$ROWS_COPY" = "$ROWS" ] || { echo "the peer's copy has $ROWS_COPY rows of $ROWS" >&2; exit 1; }

BLOB=$(du -sh "$WORK/data/archive/blobs" | cut -f1)
printf 'database %s (%s rows); archive after the backup: %s\n' "$SIZE" "$ROWS" "$BLOB"
printf '%-32s %9.2fs\n' "backup create (slipway)" "$SLIP" "pg_dump -Fc | pg_restore (peer)" "$PEER"
printf 'ratio slipway/peer: %s\n' "$(echo "scale=2; $SLIP / $PEER" | bc)"
