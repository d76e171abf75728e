#!/usr/bin/env bash
# Checks of the EROFS writer that plain `cargo test` skips: a debootstrap root filesystem and a
# file over 4 GiB, each checked by fsck.erofs, the erofs-rs reader and a kernel loop mount
# compared with GNU tar's extraction; and, not run as root, the root-only parts of the ordinary
# EROFS tests (their loop mounts and GNU tar comparisons), which `cargo test` says it left out.
# debootstrap and the loop mounts need real root: run as a normal user (as the README's commands
# are), the script builds as that user and runs only those steps through `sudo -n`.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh

if [ "$(id -u)" -eq 0 ]; then
    fixture=$(tests/fixtures/debootstrap.sh)
    NOOK_DEBOOTSTRAP_TAR="$fixture" cargo test --workspace --test rootfs_heavy -- --ignored --test-threads=1
    exit 0
fi

sudo -n true || { echo "!!! tests/erofs/check.sh: needs passwordless sudo for debootstrap and loop mounts" >&2; exit 1; }
# The fixture lands in this user's cache and is handed back to this user.
fixture=$(sudo -n env HOME="$HOME" XDG_CACHE_HOME="$(dirname "$(nook_cache_dir)")" tests/fixtures/debootstrap.sh)
sudo -n chown -R "$(id -u):$(id -g)" "$(dirname "$fixture")"
# test_binary NAME: the path of the runtime's integration test binary NAME, built as this user.
test_binary() {
    workspace_executable test "$1" || { echo "!!! tests/erofs/check.sh: cannot find the $1 test binary" >&2; exit 1; }
}
erofs=$(test_binary rootfs_erofs)
heavy=$(test_binary rootfs_heavy)
# From the package directory, as cargo test runs them.
cd runtime
echo "tests/erofs/check.sh: running $erofs as root (sudo -n) for its loop mounts" >&2
sudo -n env TMPDIR="${TMPDIR:-/tmp}" "$erofs" --test-threads=1
echo "tests/erofs/check.sh: running $heavy as root (sudo -n) for the loop mounts" >&2
sudo -n env NOOK_DEBOOTSTRAP_TAR="$fixture" TMPDIR="${TMPDIR:-/tmp}" "$heavy" --ignored --test-threads=1
