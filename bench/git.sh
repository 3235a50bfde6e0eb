#!/usr/bin/env bash
# Benchmark: git over SSH, Slipway against OpenSSH sshd + git-shell.
#
# Both on loopback, both with the same client (the system git and OpenSSH ssh, ed25519 key,
# default cipher negotiation). The peer is OpenSSH's sshd with a forced command running
# git-shell (stock git receive-pack with receive.fsckObjects, and upload-pack). A generated
# repository of about 100 MB (several thousand files, a few hundred commits, mostly
# incompressible content) is pushed and cloned. Alternating A B A B, ROUNDS times:
#   - initial push: the whole history into a fresh repository (a new project on Slipway),
#   - incremental push: one small commit on top (a thin pack),
#   - fresh clone: `git clone --bare` into an empty folder,
#   - ls-remote: connection setup and ref advertisement only (for reference).
# Pushes go to refs/tags/* on both sides: Slipway stores tags without deploying them, so the
# figure is the git transport (receive, index, object checks, connectivity, ref update), not a
# deploy. Prints the median seconds of each and the ratios Slipway/OpenSSH.
# Targets: push <= 1.2, clone <= 1.1.
#
# Usage: bench/git.sh [ROUNDS] [SIZE_MB]
#   ROUNDS   alternating pairs (default 3)
#   SIZE_MB  approximate size of the generated repository (default 100)
#   SLIPWAY_BIN=path  use this slipway binary instead of building the release one
# Needs: git, ssh, ssh-keygen, sshd (apt-get install -y openssh-server), python3, cargo.
# Not run in CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-3}
SIZE_MB=${2:-100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
GIT_SHELL=$(command -v git-shell || echo /usr/lib/git-core/git-shell)
for t in git ssh ssh-keygen python3 "$SSHD" "$GIT_SHELL"; do
    command -v "$t" >/dev/null || [ -x "$t" ] || { echo "needs $t (apt-get install -y openssh-server git)" >&2; exit 2; }
done
if [ -z "${SLIPWAY_BIN:-}" ]; then
    echo "building slipway (cargo build --release -p slipway)" >&2
    (cd "$ROOT" && cargo build -q --release -p slipway)
    SLIPWAY_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway
fi

WORK=$(mktemp -d /tmp/slipway-bench-git.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# --- the client key -------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/key"
SSH_OPTS="-i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
export GIT_SSH_COMMAND="ssh $SSH_OPTS"

# --- OpenSSH sshd + git-shell -----------------------------------------------------------------
mkdir -p "$WORK/sshd" "$WORK/openssh-repos"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/sshd/host_key"
echo "command=\"$GIT_SHELL -c \\\"\$SSH_ORIGINAL_COMMAND\\\"\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty $(cat "$WORK/key.pub")" > "$WORK/sshd/authorized_keys"
chmod 600 "$WORK/sshd/authorized_keys"
SSHD_PORT=$(free_port)
cat > "$WORK/sshd/config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $WORK/sshd/host_key
AuthorizedKeysFile $WORK/sshd/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $WORK/sshd/pid
AcceptEnv GIT_PROTOCOL
EOF
mkdir -p /run/sshd
"$SSHD" -D -e -f "$WORK/sshd/config" 2>"$WORK/sshd/log" &
PIDS+=($!)
USER_NAME=$(id -un)

# --- Slipway ----------------------------------------------------------------------------------
SLIPWAY_SSH=$(free_port)
SLIPWAY_HTTP=$(free_port)
"$SLIPWAY_BIN" user add bench --admin --key "$WORK/key.pub" --data-dir "$WORK/slipway" >/dev/null
SLIPWAY_LOG=warn "$SLIPWAY_BIN" serve --data-dir "$WORK/slipway" \
    --ssh-listen "127.0.0.1:$SLIPWAY_SSH" --http-listen "127.0.0.1:$SLIPWAY_HTTP" \
    >"$WORK/slipway.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 100); do
    if ssh $SSH_OPTS -p "$SLIPWAY_SSH" git@127.0.0.1 help >/dev/null 2>&1 \
        && ssh $SSH_OPTS -p "$SSHD_PORT" "$USER_NAME@127.0.0.1" "git-upload-pack '/nonexistent'" </dev/null >/dev/null 2>&1 || \
           grep -q "Server listening" "$WORK/sshd/log"; then
        break
    fi
    sleep 0.2
done

# --- the repository ---------------------------------------------------------------------------
echo "generating a repository of about $SIZE_MB MB" >&2
mkdir -p "$WORK/src"
git -C "$WORK/src" init -q -b main
python3 - "$SIZE_MB" <<'PY' | git -C "$WORK/src" fast-import --quiet
import os, random, sys
size = int(sys.argv[1]) * 1024 * 1024
commits, first_files = 300, 1000
per_file = size // (first_files + (commits - 1) * 10)
random.seed(7)
out = sys.stdout.buffer
mark = 0
files = []
def blob(data):
    global mark
    mark += 1
    out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)))
    out.write(data)
    out.write(b"\n")
    return mark
def content(i, extra=b""):
    # Half random bytes (incompressible), half text.
    return (b"file %d\n" % i) + os.urandom(per_file // 2) + (b"text line %d\n" % i) * (per_file // 28) + extra
for c in range(commits):
    changes = []
    new = first_files if c == 0 else 10
    for _ in range(new):
        i = len(files)
        files.append(i)
        changes.append((i, blob(content(i))))
    if c > 0:
        for i in random.sample(files[:-new], 5):
            changes.append((i, blob(b"edited in commit %d\n" % c + content(i))))
    msg = b"commit %d" % c
    out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n" % (1700000000 + c, len(msg), msg))
    for i, m in changes:
        out.write(b"M 100644 :%d d%02d/f%05d.bin\n" % (m, i % 64, i))
    out.write(b"\n")
PY
git -C "$WORK/src" repack -a -d -q
git -C "$WORK/src" checkout -q main
PACKED=$(du -sm "$WORK/src/.git/objects/pack" | cut -f1)
NFILES=$(git -C "$WORK/src" ls-files | wc -l)
NCOMMITS=$(git -C "$WORK/src" rev-list --count main)
echo "repository: $NCOMMITS commits, $NFILES files, $PACKED MB packed" >&2

slipway_url() { echo "ssh://git@127.0.0.1:$SLIPWAY_SSH/$1.git"; }
openssh_url() { echo "ssh://$USER_NAME@127.0.0.1:$SSHD_PORT$WORK/openssh-repos/$1.git"; }

declare -A T
run_timed() { # name cmd...
    local name=$1; shift
    local t0 t1
    t0=$(now)
    "$@" >"$WORK/last.log" 2>&1 || { echo "FAILED: $name: $*" >&2; cat "$WORK/last.log" >&2; exit 1; }
    t1=$(now)
    T[$name]="${T[$name]:-} $(python3 -c "print(f'{$t1-$t0:.3f}')")"
}

git -C "$WORK/src" config user.name Bench
git -C "$WORK/src" config user.email bench@example.com
for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS" >&2
    name="bench$r"
    git init -q --bare "$WORK/openssh-repos/$name.git"
    git -C "$WORK/openssh-repos/$name.git" config receive.fsckObjects true
    # initial push
    run_timed push_slipway git -C "$WORK/src" push -q "$(slipway_url "$name")" "main:refs/tags/init"
    run_timed push_openssh git -C "$WORK/src" push -q "$(openssh_url "$name")" "main:refs/tags/init"
    # incremental push: one small commit
    echo "round $r" > "$WORK/src/round.txt"
    git -C "$WORK/src" add round.txt
    git -C "$WORK/src" commit -q -m "round $r"
    run_timed inc_slipway git -C "$WORK/src" push -q "$(slipway_url "$name")" "main:refs/tags/inc"
    run_timed inc_openssh git -C "$WORK/src" push -q "$(openssh_url "$name")" "main:refs/tags/inc"
    # connection setup + ref advertisement
    run_timed lsr_slipway git ls-remote "$(slipway_url "$name")"
    run_timed lsr_openssh git ls-remote "$(openssh_url "$name")"
    # fresh clone
    run_timed clone_slipway git clone -q --bare "$(slipway_url "$name")" "$WORK/clone-s$r"
    run_timed clone_openssh git clone -q --bare "$(openssh_url "$name")" "$WORK/clone-o$r"
    rm -rf "$WORK/clone-s$r" "$WORK/clone-o$r"
done

median() { python3 -c "import statistics,sys; print(f'{statistics.median([float(x) for x in sys.argv[1:]]):.3f}')" $1; }
echo
echo "git over SSH, $NCOMMITS commits, $NFILES files, $PACKED MB packed; $ROUNDS rounds, median seconds"
printf "%-18s %10s %10s %8s\n" operation slipway openssh ratio
for op in push inc clone lsr; do
    s=$(median "${T[${op}_slipway]}")
    o=$(median "${T[${op}_openssh]}")
    ratio=$(python3 -c "print(f'{$s/$o:.2f}')")
    case $op in push) label="initial push";; inc) label="incremental push";; clone) label="fresh clone";; lsr) label="ls-remote";; esac
    printf "%-18s %10s %10s %8s\n" "$label" "$s" "$o" "$ratio"
done
echo "(targets: push <= 1.2, clone <= 1.1)"
