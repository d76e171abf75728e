#!/usr/bin/env bash
# The VM column's part of docs/tour.md (its ```console rig block: the guest's `uname -r` differs
# from the host's; a --rm VM container's files do not outlive it), run in the nested KVM rig
# (natively on a VT-x/AMD-V host) by tests/src/bin/nook-tour-check.rs. The rest of the tour
# runs in `cargo test` (tests/tests/tour.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

if [ "${1:-}" = --in-rig ]; then
    export NOOK_ROOT=/tmp/nook-tour-store XDG_RUNTIME_DIR=/tmp/nook-tour-run XDG_CACHE_HOME=$WORK/cache
    mkdir -p "$XDG_RUNTIME_DIR"
    "$NOOK_BIN" image default >/dev/null
    exec "$TOUR_CHECK" docs/tour.md rig
fi

kernel=$(vm_kernel)
agent=$(vm_agent)
cargo build --quiet --release -p nook -p nook-vmm || vm_die "cargo build failed"
workspace_executable bin nook-tour-check >/dev/null || vm_die "cargo build failed"
target=$(vm_target_dir)
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-tour.XXXXXX")
trap 'status=$?; [ $status -eq 0 ] && rm -rf "$work" || echo "tour: files kept in $work" >&2' EXIT
export NOOK_KERNEL=$kernel NOOK_AGENT=$agent NOOK_BIN=$target/release/nook WORK=$work
export TOUR_CHECK=$target/debug/nook-tour-check
tests/rig/run.sh --rw "$work" --timeout 1200 -- "$PWD/tests/vm/tour.sh" --in-rig || vm_die "the tour's VM block failed"
echo "tour: ok"
