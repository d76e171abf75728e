#!/usr/bin/env bash
# Start-up benchmark of the namespace column: `nook run --rm busybox true` against `runc run`
# of the same root filesystem as an OCI bundle (rootless, `runc spec --rootless`), alternated
# round by round, both as the same unprivileged user. Prints each median and the ratio.
#
#   tests/bench/run-vs-runc.sh [ROUNDS]        (default 30; NOOK_BIN overrides the binary)
#
# As root, the commands run as the test user `nooktest` (created, with subordinate ids, as the
# whole-program tests do); as another user, as that user.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds="${1:-30}"
user=nooktest

if [ "${1:-}" = "--inner" ]; then
    work="$2"
    rounds="$3"
    export NOOK_ROOT="$work/root"
    nook="$work/nook"
    "$nook" image default >/dev/null
    # The same files for both: the busybox image's filesystem, exported by nook.
    "$nook" create --name bench-src busybox true >/dev/null
    "$nook" export -o "$work/rootfs.tar" bench-src
    "$nook" rm bench-src >/dev/null
    mkdir -p "$work/bundle/rootfs"
    tar -C "$work/bundle/rootfs" -xf "$work/rootfs.tar"
    runc spec --rootless --bundle "$work/bundle"
    sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' "$work/bundle/config.json"
    grep -q '"true"' "$work/bundle/config.json" || { echo "cannot set the bundle's command" >&2; exit 1; }
    # No network, like runc's rootless spec (tests/bench/network.sh measures the default one).
    run_nook() { "$nook" run --rm --network none busybox true; }
    n=0
    run_runc() { n=$((n + 1)); runc --root "$work/runc-state" run --bundle "$work/bundle" "bench-$$-$n"; }
    # Warm-up: the image tree is unpacked on first use; caches settle.
    for _ in 1 2 3; do run_nook; run_runc; done
    : >"$work/nook.ms"
    : >"$work/runc.ms"
    for _ in $(seq "$rounds"); do
        t0=$(date +%s%N); run_nook; t1=$(date +%s%N); run_runc; t2=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 )) >>"$work/nook.ms"
        echo $(( (t2 - t1) / 1000 )) >>"$work/runc.ms"
    done
    median() { sort -n "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'; }
    nm=$(median "$work/nook.ms")
    rm_=$(median "$work/runc.ms")
    echo "rounds: $rounds (alternated), user: $(id -un), runc: $(runc --version | head -1)"
    echo "nook run --rm busybox true   median ${nm} ms"
    echo "runc run (rootless bundle)   median ${rm_} ms"
    awk -v a="$nm" -v b="$rm_" 'BEGIN { printf "ratio nook/runc: %.2fx\n", a / b }'
    exit 0
fi

command -v runc >/dev/null || { echo "runc is not installed (tests/setup.sh installs it)" >&2; exit 1; }
if [ -n "${NOOK_BIN:-}" ]; then
    bin="$NOOK_BIN"
else
    cargo build --quiet --release -p nook --bin nook
    bin="${CARGO_TARGET_DIR:-target}/release/nook"
fi
work=$(mktemp -d /tmp/nook-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp "$bin" "$work/nook"
cp "$0" "$work/bench.sh"
chmod 755 "$work/nook" "$work/bench.sh"
if [ "$(id -u)" -eq 0 ]; then
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
    for f in /etc/subuid /etc/subgid; do
        grep -q "^$user:" "$f" 2>/dev/null || echo "$user:400000:65536" >>"$f"
    done
    chown "$user:" "$work"
    runuser -u "$user" -- env -i PATH="$PATH" HOME="$work" bash "$work/bench.sh" --inner "$work" "$rounds"
else
    bash "$work/bench.sh" --inner "$work" "$rounds"
fi
