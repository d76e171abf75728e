#!/usr/bin/env bash
# What the resource limits cost (issue 19's bound: at most 10%): `nook run --rm busybox true`
# with and without `--memory 256m --pids-limit 256`, alternated round by round, in the namespace
# column and the VM column, in one boot of the rig's L1. The limits must really be applied: L1
# runs cgroup v2 alone, and the script delegates a subtree to the user there as systemd would
# (tests/lib/cgroup.sh), so the namespace column makes each container's cgroup and writes its
# limits; the VM column sizes the VM and has the agent set pids.max in the guest. Prints each
# median, the ratio with/without per column and the raw times. The timed runs start from one
# shell of the user's: a runuser per run would add its PAM session (0.4 s in L1) to both arms.
#
#   tests/bench/limits.sh [ROUNDS]        (default 11)
#
# Containers run with --network none (L1 has no tun device for pasta; the limits need no
# network). As root the commands run as the test user `nooktest` (as the tests/vm scripts do);
# otherwise as the caller, whose subtree the rig must already delegate. Environment: NOOK_KERNEL
# (default: guest-kernel/build.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/lib/bench.sh
. tests/lib/cgroup.sh
. tests/vm/lib.sh

die() {
    echo "bench-limits: FAIL: $*" >&2
    exit 1
}
log() { echo "bench-limits: $*" >&2; }

# nook as the unprivileged user, with its store, caches, sockets and config on L1's own /tmp.
nook() {
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$BASE" \
        NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" XDG_CACHE_HOME="$BASE/cache" \
        XDG_CONFIG_HOME="$BASE/config" NOOK_KERNEL="$BASE/bin/vmlinux" \
        NOOK_AGENT="$BASE/bin/nook-agent" timeout -k 10 600 "$BASE/bin/nook" "$@"
}

# The timed runs: started from one shell of the user's, so that no runuser (its PAM session
# costs more than a namespace container under TCG) is inside the times.
measure() {
    COLUMN=$1
    plain() { "$BASE/bin/nook" run --rm --network none --isolation="$COLUMN" busybox true; }
    limited() {
        "$BASE/bin/nook" run --rm --network none --isolation="$COLUMN" --memory 256m \
            --pids-limit 256 busybox true
    }
    bench_alternate "$ROUNDS" "$2" plain limited
}

# column NAME: checks that the limits hold in that column, then measures.
column() {
    COLUMN=$1
    local out id
    if [ "$COLUMN" = container ]; then
        out=$(nook run -d --network none --memory 256m --pids-limit 256 busybox sleep 600 2>&1)
        id=$(tail -n1 <<<"$out")
        grep -q "not enforced" <<<"$out" && die "the limits are not applied: $out"
        [ "$(cat "$CGROUP_DELEGATED/nook-$id/pids.max")" = 256 ] ||
            die "no pids.max 256 in $CGROUP_DELEGATED/nook-$id"
        [ "$(cat "$CGROUP_DELEGATED/nook-$id/memory.max")" = 268435456 ] ||
            die "no memory.max 256 MiB in $CGROUP_DELEGATED/nook-$id"
        nook rm -f "$id" >/dev/null
    else
        out=$(nook run --rm --network none --isolation=vm --memory 256m --pids-limit 256 busybox \
            cat /sys/fs/cgroup/nook-container/pids.max)
        [ "$out" = 256 ] || die "the guest's pids.max is not 256: $out"
    fi
    local dir=$BASE/times-$COLUMN
    mkdir -p "$dir"
    chown "$TEST_USER" "$dir"
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$BASE" \
        NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" XDG_CACHE_HOME="$BASE/cache" \
        XDG_CONFIG_HOME="$BASE/config" NOOK_KERNEL="$BASE/bin/vmlinux" \
        NOOK_AGENT="$BASE/bin/nook-agent" BASE="$BASE" ROUNDS="$ROUNDS" \
        bash -c ". '$BASE/bench.sh'; $(declare -f measure); measure $COLUMN '$dir'"
    local p l
    p=$(bench_median "$dir/plain.us")
    l=$(bench_median "$dir/limited.us")
    echo "column $COLUMN: $ROUNDS rounds alternated"
    echo "  without limits                      median ${p} ms"
    echo "  --memory 256m --pids-limit 256      median ${l} ms"
    awk -v a="$l" -v b="$p" 'BEGIN { printf "  ratio with/without: %.3f (%+.1f%%)\n", a / b, (a / b - 1) * 100 }'
    echo "  without ms: $(bench_ms "$dir/plain.us")"
    echo "  with ms:    $(bench_ms "$dir/limited.us")"
}

in_rig() {
    BASE=/tmp/nook-bench-limits
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run"
    cp "$WORK"/bin/* "$BASE/bin/"
    cp tests/lib/bench.sh "$BASE/bench.sh"
    chown -R "$TEST_USER" "$BASE"
    chown "root:$(id -gn "$TEST_USER")" /dev/kvm
    chmod 660 /dev/kvm
    cgroup_delegate "$TEST_USER" "$BASE/config"
    nook image default >/dev/null
    nook info | grep -q "Delegated: $CGROUP_DELEGATED" || die "nook info names no delegation"
    echo "L1: $(nproc) vCPU, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB, kernel $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    column container
    column vm
    echo "L1 load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [ "${1:-}" = --in-rig ]; then
    ROUNDS=$2
    in_rig
    exit 0
fi

rounds=${1:-11}
vm_user_work bench-limits mkfs.ext4 busybox runuser
echo "host: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
tests/rig/run.sh --rw "$WORK" --timeout 3000 -- "$PWD/tests/bench/limits.sh" --in-rig "$rounds"
echo "host load after: $(cut -d' ' -f1-3 /proc/loadavg)"
