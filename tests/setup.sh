#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for nook and run the main job on the built-in default.
# Run it as the normal user who will use nook: it installs the apt packages nook and its tests
# need (through sudo), leaves the machine ready for that user (the kvm group, /dev/net/tun,
# subordinate ids: each change is printed), builds and installs nook under ~/.local (install.sh),
# creates the built-in default image busybox:latest (from Debian's busybox-static), shows it and
# runs a container of it with the installed nook, from another directory, in a new login shell.
# Safe to rerun: the default image is reproducible, so a second run changes nothing, and slow
# artifacts are cached under ~/.cache/nook.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/common.sh

timed install_packages
prepare_host
timed install_virtiofsd >/dev/null
# Builds (release binaries, the static agent, the guest kernel: cached) and installs.
timed ./install.sh --prefix "$HOME/.local"
nook=$HOME/.local/bin/nook

"$nook" image default
"$nook" images
"$nook" inspect busybox
echo "EROFS root filesystem for VMs: $("$nook" image rootfs busybox)"
"$nook" info
# A container of the default image, in the namespace column (the default isolation), the way a
# user runs it: a new login shell, in the home directory, with nothing of this checkout around.
cd "$HOME"
env -i HOME="$HOME" USER="$(id -un)" LOGNAME="$(id -un)" PATH=/usr/local/bin:/usr/bin:/bin \
    bash -lc 'PATH=$HOME/.local/bin:$PATH; command -v nook; nook run --rm busybox sh -c '\''echo "hello from a container: $(hostname), $(id -u):$(id -g)"'\'''
