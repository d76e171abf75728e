#!/usr/bin/env bash
# Benchmark: I/O through a volume of the namespace column against the same I/O on the host
# directory, and `nook cp` of a 1 GiB tree against `tar -c | tar -x` of the same tree, all in
# one run on one machine, as a normal user (rootless). Prints a markdown table.
#   sequential write: dd of 1 GiB (conv=fsync)         through a volume vs the host directory
#   sequential read:  dd of that 1 GiB file            (page cache dropped first when `sudo -n` can)
#   small files:      10 000 files written, then read  (busybox sh in both cases)
#   cp:               nook cp HOST CONTAINER: and CONTAINER: HOST vs tar -c | tar -x
# The same busybox runs and times the I/O (its `time` applet) inside the container and on the
# host, so a container's start-up is not counted.
# Usage: tests/bench/volumes.sh [RUNS]   (default 3; NOOK_BIN: the nook to measure)
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-3}
if [ -z "${NOOK_BIN:-}" ]; then
    cargo build --quiet --release -p nook
    NOOK_BIN="${CARGO_TARGET_DIR:-target}/release/nook"
fi
nook=$NOOK_BIN
work=$(mktemp -d "${TMPDIR:-/var/tmp}/nook-bench-volumes.XXXXXX")
export NOOK_ROOT="$work/store"
cleanup() {
    timeout 60 "$nook" rm -f bench >/dev/null 2>&1 || true
    timeout 60 "$nook" volume rm -f benchvol >/dev/null 2>&1 || true
    # What containers wrote belongs to subordinate ids: removed as their root.
    timeout 120 "$nook" run --rm -v "$work:/w" busybox rm -rf /w/host /w/tree /w/out /w/tarout >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
timeout 120 "$nook" image default >/dev/null
timeout 60 "$nook" volume create benchvol >/dev/null
vol=$(timeout 60 "$nook" volume inspect --format '{{.Mountpoint}}' benchvol)
mkdir -p "$work/host"

drop_caches() {
    sync
    sudo -n sh -c 'echo 3 > /proc/sys/vm/drop_caches' 2>/dev/null || true
}

now() { date +%s.%N; }

# best SECONDS-LIST: the smallest.
best() { printf '%s\n' "$@" | sort -g | head -1; }

# time_host CMD: seconds of `busybox sh -c CMD` on the host, DIR the host directory, timed by
# busybox's own `time`.
time_host() {
    DIR="$work/host" busybox time -f %e busybox sh -c "$1" 2>&1 >/dev/null | tail -1
}

# time_volume CMD: the same in a container whose DIR is the volume, timed inside the container
# by the same `time` (the container's start-up is not in it).
time_volume() {
    timeout 600 "$nook" run --rm --network none -e DIR=/v -v benchvol:/v busybox \
        time -f %e sh -c "$1" 2>&1 >/dev/null | tail -1
}

write='dd if=/dev/zero of=$DIR/big bs=1M count=1024 conv=fsync 2>/dev/null'
read='dd if=$DIR/big of=/dev/null bs=1M 2>/dev/null'
small='mkdir $DIR/small && cd $DIR/small && i=0 && while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i+1)); done && cat f* > /dev/null'
clean='rm -rf $DIR/big $DIR/small'

in_volume() {
    timeout 600 "$nook" run --rm --network none -e DIR=/v -v benchvol:/v busybox sh -c "$1"
}

# one_host NAME / one_volume NAME: one timed run of the I/O NAME (a read gets its file first),
# after a sync and a drop of the page cache, then the directory emptied and synced again.
one_host() {
    [ "$1" = read ] && DIR="$work/host" busybox sh -c "$write"
    drop_caches
    time_host "${!1}"
    DIR="$work/host" busybox sh -c "$clean"
    sync
}
one_volume() {
    [ "$1" = read ] && in_volume "$write"
    drop_caches
    time_volume "${!1}"
    in_volume "$clean"
    sync
}

declare -A host volume
for name in write read small; do
    hs=()
    vs=()
    # Alternating which goes first, so that neither always pays for the other's writeback.
    for ((i = 0; i < runs; i++)); do
        if ((i % 2 == 0)); then
            hs+=("$(one_host $name)")
            vs+=("$(one_volume $name)")
        else
            vs+=("$(one_volume $name)")
            hs+=("$(one_host $name)")
        fi
    done
    host[$name]=$(best "${hs[@]}")
    volume[$name]=$(best "${vs[@]}")
done

# A 1 GiB tree: a 768 MiB file and 2 560 files of 100 KiB in 16 directories.
mkdir -p "$work/tree"
head -c $((768 << 20)) /dev/urandom >"$work/tree/large"
for d in $(seq 16); do
    mkdir "$work/tree/d$d"
    for f in $(seq 160); do
        head -c 102400 /dev/urandom >"$work/tree/d$d/f$f"
    done
done
timeout 60 "$nook" run -d --name bench --network none busybox sleep 3600 >/dev/null

declare -A cp
tar_runs=()
into_runs=()
out_runs=()
for ((i = 0; i < runs; i++)); do
    rm -rf "$work/tarout"
    mkdir "$work/tarout"
    drop_caches
    t0=$(now)
    tar -C "$work/tree" -c . | tar -C "$work/tarout" -x
    t1=$(now)
    tar_runs+=("$(echo "$t1 - $t0" | bc -l)")

    timeout 600 "$nook" exec bench rm -rf /tree
    drop_caches
    t0=$(now)
    timeout 600 "$nook" cp "$work/tree" bench:/tree
    t1=$(now)
    into_runs+=("$(echo "$t1 - $t0" | bc -l)")

    rm -rf "$work/out"
    drop_caches
    t0=$(now)
    timeout 600 "$nook" cp bench:/tree "$work/out"
    t1=$(now)
    out_runs+=("$(echo "$t1 - $t0" | bc -l)")
done
cmp "$work/tree/large" "$work/out/large"
diff -r "$work/tree" "$work/out" >/dev/null
cp[tar]=$(best "${tar_runs[@]}")
cp[into]=$(best "${into_runs[@]}")
cp[out]=$(best "${out_runs[@]}")

ratio() { echo "scale=2; $1 / $2" | bc -l; }
printf '\nnook %s, Linux %s, best of %s runs\n\n' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(uname -r)" "$runs"
echo "| I/O | host directory (s) | volume (s) | volume / host |"
echo "|---|---|---|---|"
for name in write read small; do
    label=$name
    case $name in
    write) label="sequential write, 1 GiB" ;;
    read) label="sequential read, 1 GiB" ;;
    small) label="10 000 small files, write + read" ;;
    esac
    printf '| %s | %.3f | %.3f | %sx |\n' "$label" "${host[$name]}" "${volume[$name]}" "$(ratio "${volume[$name]}" "${host[$name]}")"
done
echo
echo "| copy of a 1 GiB tree | seconds | / tar -c \\| tar -x |"
echo "|---|---|---|"
printf '| tar -c \\| tar -x | %.3f | 1.00x |\n' "${cp[tar]}"
printf '| nook cp HOST CONTAINER: | %.3f | %sx |\n' "${cp[into]}" "$(ratio "${cp[into]}" "${cp[tar]}")"
printf '| nook cp CONTAINER: HOST | %.3f | %sx |\n' "${cp[out]}" "$(ratio "${cp[out]}" "${cp[tar]}")"
