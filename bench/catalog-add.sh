#!/usr/bin/env bash
# `odi catalog add` against `sha256sum` of the same files, side by side on this machine.
#
#   bench/catalog-add.sh [--files=N] [--big=MiB] [--runs=R] [--keep]
#
# Two cases, each the median of R runs (default 3), interleaved (odi, sha256sum, sha256sum,
# odi, ...) so drift in the machine's load hits both alike:
#   1. N small files (default 100,000, 1 to 4 KiB each) in 100 folders;
#   2. one big file (default 1024 MiB).
# The reference is `find -type f -print0 | xargs -0 -P <cores> -n 1000 sha256sum`. odi hashes
# the files, then writes and signs the catalog (a fresh `odi init` network each run). Prints
# wall seconds and peak RSS (/usr/bin/time) of both, and the ratio sha256sum time / odi time
# (above 1.0: odi is faster). The files are written once and read from the page cache.
# ODI=/path/to/odi picks the binary (default: target/release/odi, built if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILES=100000
BIG=1024
RUNS=3
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --files=*) FILES=${arg#--files=} ;;
        --big=*) BIG=${arg#--big=} ;;
        --runs=*) RUNS=${arg#--runs=} ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
ODI=${ODI:-$ROOT/target/release/odi}
if [ ! -x "$ODI" ]; then
    (cd "$ROOT" && cargo build --release -q -p odi)
fi
[ -x /usr/bin/time ] || { echo "installing time"; apt-get install -y -qq time >/dev/null; }
CORES=$(nproc)
WORK=$(mktemp -d /tmp/odi-bench-add.XXXXXX)
cleanup() { [ "$KEEP" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT

echo "writing $FILES small files and one ${BIG} MiB file under $WORK"
python3 - "$WORK/small" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(1024, 4096)))
EOF
mkdir -p "$WORK/big"
head -c "$((BIG << 20))" /dev/urandom > "$WORK/big/big.bin"
find "$WORK/small" "$WORK/big" -type f -print0 | xargs -0 cat > /dev/null # into the page cache

# Prints "seconds max_rss_kib" of a command (its output discarded).
measure() {
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > /dev/null 2> "$WORK/err" \
        || { cat "$WORK/err" >&2; exit 1; }
    cat "$WORK/time"
}

odi_add() { # folder run
    local net="$WORK/net-$2" keys="$WORK/keys-$2"
    rm -rf "$net" "$keys"
    "$ODI" init "$net" --keys "$keys" > /dev/null
    "$ODI" catalog new b --origin https://example.org/b/ --key "$keys/maintainer.key" \
        --repo "$net" > /dev/null
    measure "$ODI" catalog add b "$1" --key "$keys/maintainer.key" --repo "$net"
}
sums() {
    measure sh -c "find '$1' -type f -print0 | xargs -0 -P $CORES -n 1000 sha256sum"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for case in small big; do
    : > "$WORK/odi.t"; : > "$WORK/odi.m"; : > "$WORK/ref.t"; : > "$WORK/ref.m"
    for r in $(seq "$RUNS"); do
        if [ $((r % 2)) = 1 ]; then order="odi ref"; else order="ref odi"; fi
        for side in $order; do
            if [ "$side" = odi ]; then read -r t m < <(odi_add "$WORK/$case" "$r")
            else read -r t m < <(sums "$WORK/$case"); fi
            echo "$t" >> "$WORK/$side.t"; echo "$m" >> "$WORK/$side.m"
        done
    done
    ot=$(median < "$WORK/odi.t"); om=$(median < "$WORK/odi.m")
    rt=$(median < "$WORK/ref.t"); rm_=$(median < "$WORK/ref.m")
    label=$([ "$case" = small ] && echo "$FILES small files" || echo "one ${BIG} MiB file")
    printf '%s: odi catalog add %ss (RSS %s MiB), sha256sum -P%s %ss (RSS %s MiB per process): ratio %s\n' \
        "$label" "$ot" "$((om / 1024))" "$CORES" "$rt" "$((rm_ / 1024))" \
        "$(awk -v a="$rt" -v b="$ot" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
done
