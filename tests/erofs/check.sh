#!/usr/bin/env bash
# Heavy checks of the EROFS writer that plain `cargo test` skips: a debootstrap root
# filesystem and a file over 4 GiB, each checked by fsck.erofs, the erofs-rs reader and (as
# root) a kernel loop mount compared with GNU tar's extraction.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "!!! tests/erofs/check.sh: not root: the debootstrap fixture and the mount checks need root" >&2
    exit 1
fi
fixture=$(tests/fixtures/debootstrap.sh)
NOOK_DEBOOTSTRAP_TAR="$fixture" cargo test -p nook --test rootfs_heavy -- --ignored --test-threads=1
