#!/usr/bin/env bash
# Benchmark: push protection (issue 16).
#
# 1. Secret-scan throughput: `slipway advisories scan-secrets` (the rules a push is scanned
#    with, Rust regex set) against `grep -E -r -n` with the same rules in ERE, on the same
#    10,000 generated files (no gitleaks-class scanner is packaged for this machine's
#    registries, so grep is the peer). Median MB/s of ROUNDS runs each, page cache warm.
# 2. Push-to-live with advisories on vs off: a real `slipway serve` on loopback; the pushed
#    tree holds the demo app, a 2,000-package package-lock.json and 10,000 added files; "on"
#    has 20,000 npm advisories imported (40 of them affect pinned packages, rated HIGH, so the
#    push warns and deploys), "off" has no advisory database. Each round pushes a new project
#    (a new branch: every lockfile checked, every blob scanned). Prints the median validate
#    phase and push-to-live seconds of each, and the added percentage (target: < 10 %).
#
# Usage: bench/advisories.sh [ROUNDS]
#   SLIPWAY_BIN=path  use this slipway binary instead of building the debug one
# Needs root (runc, network namespaces), runc, git, ssh, ssh-keygen, python3.
# Not run in CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SLIPWAY_BIN:-}" ]; then
    (cd "$ROOT" && cargo build -q -p slipway)
    SLIPWAY_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway
fi
WORK=$(mktemp -d /tmp/slipway-bench-adv.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    for d in "$WORK"/data-*; do [ -d "$d" ] && "$SLIPWAY_BIN" down --data-dir "$d" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "generating the tree, the lockfile and the advisories in $WORK" >&2
python3 - "$WORK" <<'PY'
import json, os, random, sys
work = sys.argv[1]
rnd = random.Random(16)
app = os.path.join(work, "app")
os.makedirs(app)
open(os.path.join(app, ".platform.app.yaml"), "w").write(
    "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\n")
open(os.path.join(app, "server.py"), "w").write(
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.send_header('Content-Length', '3'); self.end_headers(); self.wfile.write(b'ok\\n')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n")
packages = {"": {"name": "hello"}}
for i in range(2000):
    packages[f"node_modules/pkg-{i}"] = {"version": f"1.{i % 7}.{i % 13}"}
json.dump({"name": "hello", "lockfileVersion": 3, "packages": packages},
          open(os.path.join(app, "package-lock.json"), "w"), indent=2)
words = "the quick brown fox jumps over a lazy dog config value user name port host".split()
for i in range(10000):
    d = os.path.join(app, "src", f"m{i // 500}")
    os.makedirs(d, exist_ok=True)
    lines = []
    for j in range(30):
        lines.append(" ".join(rnd.choice(words) for _ in range(6)) + f" = {rnd.getrandbits(64):x}")
    open(os.path.join(d, f"f{i}.txt"), "w").write("\n".join(lines) + "\n")
osv = os.path.join(work, "osv")
os.makedirs(osv)
advs = []
for i in range(20000):
    name = f"pkg-{i}"
    fixed = "9.0.0" if i % 50 == 0 and i < 2000 else "0.0.1"
    advs.append({"id": f"GHSA-bench-{i}", "modified": "2024-01-01T00:00:00Z",
                 "summary": f"bench advisory {i}", "database_specific": {"severity": "HIGH"},
                 "affected": [{"package": {"ecosystem": "npm", "name": name},
                               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]})
json.dump(advs, open(os.path.join(osv, "all.json"), "w"))
PY

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# --- 1. secret-scan throughput -------------------------------------------------------------
RULES=$WORK/rules.ere
cat >"$RULES" <<'EOF'
-----BEGIN ((RSA|DSA|EC|OPENSSH|PGP|ENCRYPTED) )?PRIVATE KEY( BLOCK)?-----
\b(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b
\b((ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})\b
\bglpat-[A-Za-z0-9_-]{20,}
\bxox[abposr]-[A-Za-z0-9-]{10,}
\b(sk|rk)_live_[A-Za-z0-9]{20,}
\bAIza[0-9A-Za-z_-]{35}
([Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]|[Ss][Ee][Cc][Rr][Ee][Tt]|[Aa][Pp][Ii]_?[Kk][Ee][Yy]|[Tt][Oo][Kk][Ee][Nn])["']?[[:space:]]*(=|:|=>)[[:space:]]*["'][^"'[:space:]]{12,200}["']
EOF
SRC=$WORK/app/src
MB=$(du -sb "$SRC" | awk '{printf "%.1f", $1/1e6}')
cat "$SRC"/*/* >/dev/null
s_times=(); g_times=()
for _ in $(seq "$ROUNDS"); do
    t0=$(date +%s.%N); "$SLIPWAY_BIN" advisories scan-secrets "$SRC" >/dev/null 2>&1 || true; t1=$(date +%s.%N)
    s_times+=("$(echo "$t1 - $t0" | bc -l)")
    t0=$(date +%s.%N); LC_ALL=C grep -E -r -n -f "$RULES" "$SRC" >/dev/null || true; t1=$(date +%s.%N)
    g_times+=("$(echo "$t1 - $t0" | bc -l)")
done
S=$(printf '%s\n' "${s_times[@]}" | median); G=$(printf '%s\n' "${g_times[@]}" | median)
printf 'secret scan of %s MB in 10,000 files: slipway %.3fs (%.0f MB/s), grep -E %.3fs (%.0f MB/s)\n' \
    "$MB" "$S" "$(echo "$MB / $S" | bc -l)" "$G" "$(echo "$MB / $G" | bc -l)"

# --- 2. push-to-live, advisories on vs off -------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
export GIT_SSH_COMMAND="ssh -i $WORK/key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
(cd "$WORK/app" && git init -q -b main && git add -A && git -c user.name=b -c user.email=b@x commit -qm bench)

start_server() { # NAME -> prints SSH port
    local data=$WORK/data-$1 ssh http
    ssh=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$SLIPWAY_BIN" user add me --admin --key "$WORK/key.pub" --data-dir "$data" >/dev/null
    "$SLIPWAY_BIN" serve --data-dir "$data" --ssh-listen "127.0.0.1:$ssh" --http-listen "127.0.0.1:$http" \
        >"$WORK/serve-$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q "slipway serving" "$WORK/serve-$1.log" && break; sleep 0.2; done
    echo "$ssh"
}
ON=$(start_server on)
"$SLIPWAY_BIN" advisories import "$WORK/osv/all.json" --data-dir "$WORK/data-on" >&2
OFF=$(start_server off)

declare -A live validate
for mode in on off; do live[$mode]=""; validate[$mode]=""; done
for r in $(seq "$ROUNDS"); do
    for mode in on off; do
        port=$ON; [ "$mode" = off ] && port=$OFF
        t0=$(date +%s.%N)
        out=$(cd "$WORK/app" && git push -q "ssh://git@127.0.0.1:$port/p$r.git" main 2>&1) || { echo "$out" >&2; exit 1; }
        t1=$(date +%s.%N)
        live[$mode]+="$(echo "$t1 - $t0" | bc -l) "
        v=$(echo "$out" | sed -n 's/.*-----> validate:.*\[\([0-9.]*\)s\].*/\1/p' | head -1)
        validate[$mode]+="${v:-0} "
        if [ "$mode" = on ] && [ "$r" = 1 ]; then
            echo "$out" | grep -E "advisories:|is affected by" | head -3 >&2 || true
        fi
    done
done
for mode in on off; do
    L=$(printf '%s\n' ${live[$mode]} | median); V=$(printf '%s\n' ${validate[$mode]} | median)
    printf 'advisories %-3s: validate %.2fs, push-to-live %.2fs (median of %s)\n' "$mode" "$V" "$L" "$ROUNDS"
    eval "L_$mode=$L; V_$mode=$V"
done
printf 'advisories add %.2fs to validate, %.1f %% to push-to-live\n' \
    "$(echo "$V_on - $V_off" | bc -l)" "$(echo "($L_on - $L_off) * 100 / $L_off" | bc -l)"
