#!/usr/bin/env bash
# Boots nook's guest kernel with nook's VMM (vmm/, binary nook-vmm) inside the nested KVM rig:
# a busybox initramfs answers over the agent channel (virtio-console), reads a read-only EROFS
# disk (vda), writes a file on an ext4 disk (vdb, checked with debugfs afterwards) and resets the
# VM through the i8042; with 1 vCPU/128 MiB and 2 vCPUs/1 GiB. See vmm/tests/rig_boot.rs.
#
#   tests/vm/vmm-boot.sh            the boot test
#   tests/vm/vmm-boot.sh --bench N  instead: N alternating runs of nook-vmm and QEMU microvm, timing
#                                   VMM start to the guest's ready line (split into the time to
#                                   the guest's first instruction and the guest's own boot, by
#                                   the guest's time-stamp counter) and the VMM's own RSS
#
# Environment: NOOK_KERNEL (a vmlinux; default: guest-kernel/build.sh), NOOK_VMM_BOOT_SERIAL=1
# (kernel console into serial-*.log in the work directory, kept on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
filter=boots_the_guest_kernel_in_every_shape
bench_runs=
if [ "${1:-}" = --bench ]; then
    bench_runs=${2:-5}
    [[ "$bench_runs" =~ ^[1-9][0-9]*$ ]] || { echo "vmm-boot: --bench needs a run count" >&2; exit 1; }
    filter=bench_start_to_ready_against_qemu
fi

die() {
    echo "vmm-boot: error: $*" >&2
    exit 1
}
for tool in cpio mkfs.erofs mkfs.ext4 debugfs busybox cc; do
    command -v "$tool" >/dev/null || die "'$tool' is missing; run tests/setup.sh"
done
[ -x tests/rig/run.sh ] || die "tests/rig/run.sh is missing (the nested KVM rig)"

kernel=${NOOK_KERNEL:-}
if [ -z "$kernel" ]; then
    [ -x guest-kernel/build.sh ] || die "set NOOK_KERNEL or provide guest-kernel/build.sh"
    kernel=$(guest-kernel/build.sh | tail -n1)
fi
[ -f "$kernel" ] || die "kernel $kernel does not exist"

work=$(mktemp -d "${TMPDIR:-/tmp}/nook-vmm-boot.XXXXXX")
trap 'status=$?; [ $status -eq 0 ] && rm -rf "$work" || echo "vmm-boot: files kept in $work" >&2' EXIT
cp "$kernel" "$work/vmlinux"

# The guest: busybox as /init, speaking a line protocol on the agent's virtio-serial port.
mkdir -p "$work/initrd/bin" "$work/initrd/dev" "$work/initrd/proc" "$work/initrd/sys" "$work/initrd/ro" "$work/initrd/rw"
cp "$(command -v busybox)" "$work/initrd/bin/busybox"
cat >"$work/initrd/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs dev /dev
$B mount -t sysfs sys /sys
# The channel: the virtio-serial port nook-vmm names nook.agent (no udev here to link it
# under /dev/virtio-ports). The driver creates it after the device's control messages, which
# may come after /init starts. Kept open for the whole run, like the agent: the driver drops
# what the host sends while the guest has the port closed. A write waits until the host's end
# is open.
port=
while [ -z "$port" ]; do
    for p in /sys/class/virtio-ports/*; do
        [ "$($B cat "$p/name" 2>/dev/null)" = nook.agent ] && [ -c "/dev/${p##*/}" ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] || $B usleep 2000
done
exec 3<>"$port"
say() { echo "$*" >&3; }
say ready
# The guest's time-stamp counter (zero when the VMM created or reset the vCPU), read right after
# the ready line: how much of the host's start-to-ready time was the guest's own boot.
/bin/tsc >&3
read -r line <&3
say "pong:$line"
say "cpus=$($B grep -c ^processor /proc/cpuinfo)"
say "memkb=$($B awk '/MemTotal/ {print $2}' /proc/meminfo)"
$B mount -t erofs -o ro /dev/vda /ro && say "erofs=$($B cat /ro/hello.txt)"
if $B mount -t ext4 /dev/vdb /rw; then
    echo "persisted by nook" >/rw/persist.txt && $B umount /rw && say "ext4=ok"
fi
if $B dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null; then say vda-write=allowed; else say vda-write=refused; fi
$B sync
say done
$B reboot -f
INIT
chmod +x "$work/initrd/init"
cat >"$work/tsc.c" <<'TSC'
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
int main(void) {
    printf("tsc %llu\n", (unsigned long long)__rdtsc());
    fflush(stdout);
    double t0 = now();
    unsigned long long c0 = __rdtsc();
    struct timespec pause = {0, 100000000};
    nanosleep(&pause, NULL);
    double t1 = now();
    unsigned long long c1 = __rdtsc();
    printf("tsc_hz %.0f\n", (c1 - c0) / (t1 - t0));
    return 0;
}
TSC
cc -O2 -static -s -o "$work/initrd/bin/tsc" "$work/tsc.c" || die "cannot build the guest's TSC reader"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"

mkdir -p "$work/rootfs"
echo "hello from erofs" >"$work/rootfs/hello.txt"
mkfs.erofs --quiet "$work/rootfs.erofs" "$work/rootfs" >/dev/null
truncate -s 64M "$work/upper.ext4"
mkfs.ext4 -q -F "$work/upper.ext4"

# Build the test binary here (fast), run it in the rig.
test_bin=$(workspace_executable test rig_boot --release) || die "could not build the rig_boot test"
cargo build --release --locked -p nook -p nook-vmm 2>/dev/null

NOOK_VMM_BOOT_DIR=$work NOOK_VMM_BENCH_RUNS=$bench_runs tests/rig/run.sh --rw "$work" --timeout 1800 -- \
    "$test_bin" --exact "$filter" --nocapture --test-threads 1
echo "vmm-boot: ok"
