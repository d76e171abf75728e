#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for nook and run the main job on the built-in default.
# Installs the apt packages nook and its tests need (as root, or through sudo), builds nook,
# creates the built-in default image busybox:latest (from Debian's busybox-static), shows it and
# runs a container of it.
# Safe to rerun: the default image is reproducible, so a second run changes nothing, and slow
# artifacts are cached under ~/.cache/nook.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/common.sh

install_packages
# The guest kernel for --isolation=vm (cached: a rerun only prints its path).
guest-kernel/build.sh
# The static guest agent (PID 1 of every VM); nook finds it through its build directory.
agent/build-static.sh >/dev/null
cargo build --release --workspace
nook=target/release/nook

"$nook" image default
"$nook" images
"$nook" inspect busybox
echo "EROFS root filesystem for VMs: $("$nook" image rootfs busybox)"
# A container of the default image, in the namespace column (the default isolation).
"$nook" run --rm busybox sh -c 'echo "hello from a container: $(hostname), $(id -u):$(id -g)"'
