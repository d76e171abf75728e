#!/usr/bin/env bash
# Run nook's whole test suite: formatting, lints, unit and whole-program tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/common.sh

timed install_packages
timed cargo fmt --all --check
timed cargo clippy --workspace --all-targets -- -D warnings
timed cargo test --workspace
timed tests/erofs/check.sh

# Guests: in the nested KVM rig unless /dev/kvm here is VT-x/AMD-V (see tests/rig/README.md).
# One L1 serves every script below: their work directories go under one temporary directory,
# which it shares read-write; each script's rig run is then a command handed to it, not a boot.
# What they run in it is built first, so that L1 never sees a binary replaced under it.
timed cargo build --quiet --release --locked -p nook -p nook-vmm
timed agent/build-static.sh >/dev/null
timed guest-kernel/build.sh >/dev/null
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/nook-tests.XXXXXX")
export TMPDIR
# Run as root, the scripts hand their work directories to an unprivileged test user.
chmod 0755 "$TMPDIR"
rig=$(export NOOK_RIG_MEM=${NOOK_RIG_MEM:-4096}; timed tests/rig/run.sh --serve --rw "$TMPDIR")
# shellcheck disable=SC2064 # the rig and directory are fixed now
trap "status=\$?; [ -z '$rig' ] || tests/rig/run.sh --stop '$rig'
    [ \$status -ne 0 ] || rm -rf '$TMPDIR'" EXIT
[ -z "$rig" ] || export NOOK_RIG_SERVER=$rig

timed tests/vm/kernel-boot.sh
timed tests/vm/agent-boot.sh
timed tests/vm/vmm-boot.sh
timed tests/vm/vmm-agent.sh
timed tests/vm/run-vm.sh
timed tests/vm/containers-vm.sh
timed tests/vm/security-vm.sh
timed tests/vm/network-vm.sh
timed tests/vm/volumes-vm.sh
timed tests/vm/limits.sh
timed tests/vm/warm-vm.sh
timed tests/vm/oci-vm.sh
timed tests/vm/bench.sh
timed tests/vm/tour.sh
