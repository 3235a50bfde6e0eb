#!/usr/bin/env bash
# Benchmark: `slipway slug pack` against `tar -cf - | zstd -3 -T0` on a ~200 MB tree.
#
# The tree is a realistic mix: thousands of small text files (a node_modules-like
# folder of JavaScript/JSON/Markdown), a few medium assets, and some large binaries
# (half compressible, half random). Both tools pack the same tree, alternating
# A B A B in the same run; the script prints the median times, the sizes and the
# ratios slipway/peer. Target: time ratio <= 1.0, size within 2%.
#
# Usage: bench/slug.sh [ROUNDS] [SLIPWAY_BINARY]
#   ROUNDS          pairs of runs (default 5)
#   SLIPWAY_BINARY  default: target/release/slipway (built with cargo build --release -p slipway)
# Not run in CI; it never asserts timings.
set -euo pipefail

ROUNDS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-$ROOT/target/release/slipway}
if [ ! -x "$BIN" ]; then
    echo "building $BIN (cargo build --release -p slipway)" >&2
    (cd "$ROOT" && cargo build -q --release -p slipway)
fi
for t in tar zstd python3; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done

# BENCH_DIR: keep the tree there between runs (generated once); default: a temp dir.
if [ -n "${BENCH_DIR:-}" ]; then
    WORK=$BENCH_DIR; mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/slipway-bench-slug.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
TREE=$WORK/tree
if [ ! -d "$TREE" ]; then
echo "generating the tree in $TREE" >&2
python3 - "$TREE.part" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(42)
words = ("function return const let var if else for while module exports require "
         "import from default class extends this new null undefined true false async await "
         "promise resolve reject error message value key object array string number").split()
def text(n):
    out, size = [], 0
    while size < n:
        line = " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12)))
        line = "  " * rnd.randint(0, 4) + line + ";\n"
        out.append(line); size += len(line)
    return "".join(out)
# ~ 8000 small text files in ~ 600 packages: node_modules-like (~ 95 MB).
total = 0
for p in range(700):
    pkg = os.path.join(root, "node_modules", f"pkg-{p:03d}")
    os.makedirs(os.path.join(pkg, "lib"), exist_ok=True)
    with open(os.path.join(pkg, "package.json"), "w") as f:
        f.write('{"name": "pkg-%03d", "version": "1.%d.0", "main": "lib/index.js"}\n' % (p, p % 17))
    with open(os.path.join(pkg, "README.md"), "w") as f:
        f.write(text(rnd.randint(500, 4000)))
    for i in range(rnd.randint(6, 20)):
        n = int(rnd.lognormvariate(8.5, 1.0))
        with open(os.path.join(pkg, "lib", f"m{i}.js"), "w") as f:
            f.write(text(n)); total += n
# Application sources and assets (~ 10 MB).
for i in range(300):
    d = os.path.join(root, "src", f"dir{i % 20}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.py"), "w") as f:
        f.write(text(rnd.randint(2000, 60000)))
# Large binaries: compressible (repetitive records) and incompressible (random): ~ 100 MB.
os.makedirs(os.path.join(root, "bin"), exist_ok=True)
for i in range(2):
    with open(os.path.join(root, "bin", f"random{i}.bin"), "wb") as f:
        f.write(rnd.randbytes(25 * 1024 * 1024))
for i in range(2):
    rec = bytes(rnd.randrange(256) for _ in range(4096))
    with open(os.path.join(root, "bin", f"data{i}.db"), "wb") as f:
        for j in range(25 * 256):
            f.write(rec[: 4096 - (j % 64)] + j.to_bytes(4, "little"))
PY
mv "$TREE.part" "$TREE"
fi
SIZE=$(du -sb "$TREE" | cut -f1)
FILES=$(find "$TREE" -type f | wc -l)
echo "tree: $FILES files, $((SIZE / 1000000)) MB" >&2
sync

# /usr/bin/time -f '%e %U %S': wall, user and system seconds (children included, so the
# tar | zstd pipeline counts both processes).
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 2; }
A_WALL=(); B_WALL=(); A_CPU=(); B_CPU=()
for r in $(seq 1 "$ROUNDS"); do
    # Wall time from nanosecond clocks (GNU time's %e has 10 ms steps, 3 % of a run here);
    # CPU time from GNU time.
    t0=$(date +%s.%N)
    "$TIME" -f '%e %U %S' -o "$WORK/ta" "$BIN" slug pack "$TREE" -o "$WORK/a.slug" >/dev/null
    t1=$(date +%s.%N)
    "$TIME" -f '%e %U %S' -o "$WORK/tb" sh -c 'cd "$1" && tar -cf - . | zstd -q -3 -T0 -o "$2" -f' _ "$TREE" "$WORK/b.tar.zst"
    t2=$(date +%s.%N)
    read -r _ au as < "$WORK/ta"; read -r _ bu bs < "$WORK/tb"
    aw=$(echo "$t1 - $t0" | bc -l); bw=$(echo "$t2 - $t1" | bc -l)
    A_WALL+=("$aw"); B_WALL+=("$bw")
    A_CPU+=("$(echo "$au + $as" | bc -l)"); B_CPU+=("$(echo "$bu + $bs" | bc -l)")
    echo "round $r: slipway ${aw}s (cpu ${A_CPU[-1]}s)  tar|zstd ${bw}s (cpu ${B_CPU[-1]}s)" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
A=$(median "${A_WALL[@]}"); B=$(median "${B_WALL[@]}")
AC=$(median "${A_CPU[@]}"); BC=$(median "${B_CPU[@]}")
SA=$(stat -c %s "$WORK/a.slug"); SB=$(stat -c %s "$WORK/b.tar.zst")
printf 'tree           %d files, %.1f MB\n' "$FILES" "$(echo "$SIZE / 1000000" | bc -l)"
printf 'machine        %s cores, %s, load %s\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'slipway        %.3fs wall  %.3fs cpu  %d bytes\n' "$A" "$AC" "$SA"
printf 'tar | zstd -3  %.3fs wall  %.3fs cpu  %d bytes\n' "$B" "$BC" "$SB"
printf 'time ratio     %.3f  (target <= 1.0)\n' "$(echo "$A / $B" | bc -l)"
printf 'cpu ratio      %.3f\n' "$(echo "$AC / $BC" | bc -l)"
printf 'size ratio     %.4f  (target within 2%%)\n' "$(echo "$SA / $SB" | bc -l)"
