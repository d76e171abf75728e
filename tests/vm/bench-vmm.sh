#!/usr/bin/env bash
# VMM benchmark in one rig run (or natively on a VT-x/AMD-V host): RUNS alternating boots of
# nook-vmm and QEMU microvm with the same kernel, initramfs, disks, 1 vCPU and 256 MiB, timing
# VMM start to the guest's ready line on the agent channel, and each VMM's RSS outside guest RAM.
#
#   tests/vm/bench-vmm.sh [RUNS]    (default 5)
set -euo pipefail
exec "$(dirname "$0")/vmm-boot.sh" --bench "${1:-5}"
