#!/usr/bin/env bash
# Benchmark: nook's tar-to-EROFS writer on the debootstrap fixture against what a user can do
# without it, all in the same run on the same machine:
#   (a) tar -x into a directory, then mkfs.erofs on it
#   (b) mkfs.erofs on the already extracted directory alone
#   (c) mkfs.ext4 -d on the already extracted directory
# Prints a markdown table (best of $RUNS runs; peak RSS from /usr/bin/time). Needs root (the
# fixture is built with debootstrap, and extraction keeps owners and device nodes).
# Usage: tests/bench/erofs.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh

runs=${1:-3}
fixture=$(tests/fixtures/debootstrap.sh)
cargo build --quiet --release -p nook --example build_erofs
ours="target/release/examples/build_erofs"
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Every contender starts with the tarball in the page cache.
cat "$fixture" >/dev/null

# measure NAME SETUP COMMAND...: runs SETUP (untimed) then COMMAND under /usr/bin/time,
# keeping the best wall time and its peak RSS.
declare -A wall rss size
measure() {
    local name=$1 setup=$2
    shift 2
    local best="" best_rss="" i
    for ((i = 0; i < runs; i++)); do
        eval "$setup"
        sync
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null
        read -r t m <"$work/time"
        if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$t
            best_rss=$m
        fi
    done
    wall[$name]=$best
    rss[$name]=$best_rss
}

extract() {
    tar -x -f "$fixture" -C "$work/tree" --numeric-owner -p --same-owner --xattrs --xattrs-include='*'
}
export -f extract
export fixture work

measure ours 'rm -f "$work/ours.erofs"' "$ours" "$work/ours.erofs" "$fixture"
size[ours]=$(stat -c %s "$work/ours.erofs")
fsck.erofs "$work/ours.erofs"

measure a 'rm -rf "$work/tree" "$work/a.erofs"; mkdir "$work/tree"' \
    bash -c 'extract && mkfs.erofs --quiet "$work/a.erofs" "$work/tree"'
size[a]=$(stat -c %s "$work/a.erofs")

measure b 'rm -f "$work/b.erofs"' mkfs.erofs --quiet "$work/b.erofs" "$work/tree"
size[b]=$(stat -c %s "$work/b.erofs")

kib=$(du -sk "$work/tree" | cut -f1)
measure c 'rm -f "$work/c.ext4"' \
    mkfs.ext4 -q -F -d "$work/tree" "$work/c.ext4" "$((kib * 3 / 2 + 65536))k"
size[c]=$(stat -c %s "$work/c.ext4")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }

files=$(tar -tf "$fixture" | wc -l)
echo "fixture: $(basename "$fixture") ($(mib "$(stat -c %s "$fixture")") MiB tar, $files entries), best of $runs runs"
echo
echo "| what | wall (s) | peak RSS (MiB) | output (MiB) | ours / this |"
echo "|---|---|---|---|---|"
row() {
    echo "| $1 | ${wall[$2]} | $(mib "$((rss[$2] * 1024))") | $(mib "${size[$2]}") | $(ratio "${wall[ours]}" "${wall[$2]}") |"
}
row "nook build_erofs (tar stream to EROFS)" ours
row "(a) tar -x, then mkfs.erofs" a
row "(b) mkfs.erofs on the extracted dir" b
row "(c) mkfs.ext4 -d on the extracted dir (apparent size)" c
echo
awk -v o="${wall[ours]}" -v a="${wall[a]}" -v b="${wall[b]}" -v r="${rss[ours]}" 'BEGIN {
    printf "goals: ours <= 0.7x (a): %s (%.2f); ours <= 1.5x (b): %s (%.2f); peak RSS <= 100 MiB: %s (%.1f MiB)\n",
        (o <= 0.7 * a ? "met" : "MISSED"), o / a, (o <= 1.5 * b ? "met" : "MISSED"), o / b,
        (r <= 102400 ? "met" : "MISSED"), r / 1024 }'
