#!/usr/bin/env bash
# Run nook's whole test suite: formatting, lints, unit and whole-program tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/common.sh

install_packages
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
tests/erofs/check.sh

# Guests: in the nested KVM rig unless /dev/kvm here is VT-x/AMD-V (see tests/rig/README.md).
tests/vm/kernel-boot.sh
tests/vm/agent-boot.sh
tests/vm/vmm-boot.sh
tests/vm/vmm-agent.sh
tests/vm/run-vm.sh
tests/vm/containers-vm.sh
tests/vm/security-vm.sh
tests/vm/network-vm.sh
tests/vm/volumes-vm.sh
tests/vm/limits.sh
tests/vm/warm-vm.sh
tests/vm/oci-vm.sh
tests/vm/bench.sh
tests/vm/tour.sh
