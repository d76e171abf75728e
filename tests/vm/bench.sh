#!/usr/bin/env bash
# `nook bench` with the VM column, in the nested KVM rig (natively on a VT-x/AMD-V host):
#   nook bench --isolation vm,vm-cold,container --peers qemu,runc,crun --runs N --json ... --svg ...
# then checks the report: the vm (warm start), vm-cold, container and qemu targets ran, and every
# VM run has its eight phases in order (warm runs restored, cold ones booted a kernel) (tests/src/bin/nook-bench-check.rs); runc and crun are measured where they can
# run and listed as skipped with their reason where they cannot. The table, JSON and SVG are kept
# in BENCH_OUT (a directory) when set, for docs/isolation.md and docs/bench.svg.
#
#   tests/vm/bench.sh [RUNS]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

in_rig() {
    # The container column needs an overlayfs upper off the 9p share, and the agent socket a
    # local directory: the store and the runtime directory live on the rig's own /tmp.
    # The cache too: warm starts map their template's memory from it, which must not be a 9p
    # file.
    export NOOK_ROOT=/tmp/nook-bench-store XDG_RUNTIME_DIR=/tmp/nook-bench-run
    export XDG_CACHE_HOME=/tmp/nook-bench-cache
    mkdir -p "$XDG_RUNTIME_DIR"
    "$NOOK_BIN" image default >/dev/null
    "$NOOK_BIN" bench --isolation vm,vm-cold,container --peers qemu,runc,crun --runs "$RUNS" --warmup 1 \
        --json "$WORK/bench.json" --svg "$WORK/bench.svg" >"$WORK/bench.txt"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    exit 0
fi

runs=${1:-3}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || vm_die "RUNS must be a positive number, not '$runs'"
kernel=$(vm_kernel)
agent=$(vm_agent)
cargo build --quiet --release -p nook -p nook-vmm || vm_die "cargo build failed"
workspace_executable bin nook-bench-check >/dev/null || vm_die "cargo build failed"
target=$(vm_target_dir)
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-bench.XXXXXX")
trap 'status=$?; [ $status -eq 0 ] && rm -rf "$work" || echo "bench: files kept in $work" >&2' EXIT
export NOOK_KERNEL=$kernel NOOK_AGENT=$agent NOOK_BIN=$target/release/nook WORK=$work RUNS=$runs

# The store, the unpacked bundles of runc and crun and the rootfs caches live on L1's tmpfs.
export NOOK_RIG_MEM=${NOOK_RIG_MEM:-4096}
tests/rig/run.sh --rw "$work" --timeout 1700 -- "$PWD/tests/vm/bench.sh" --in-rig ||
    vm_die "nook bench failed in the rig"
cat "$work/bench.txt"
"$target/debug/nook-bench-check" "$work/bench.json" vm vm-cold container qemu || vm_die "the report does not hold"
if [ -n "${BENCH_OUT:-}" ]; then
    mkdir -p "$BENCH_OUT"
    cp "$work/bench.json" "$work/bench.svg" "$work/bench.txt" "$BENCH_OUT/"
    vm_log "report kept in $BENCH_OUT"
fi
echo "bench: ok"
