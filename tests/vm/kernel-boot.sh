#!/usr/bin/env bash
# Boots nook's guest kernel under QEMU microvm with KVM (in the nested rig where this machine's
# /dev/kvm cannot boot Linux) and checks what the agent will rely on: PVH entry, 2 vCPUs (MP
# table), virtio-mmio devices from the command line, virtio-blk disks with an EROFS image and an
# ext4 disk, overlayfs, tmpfs, namespaces, cgroup2, the virtio-console channel (/dev/hvc0), and
# the reboot=k exit. The guest's /init is a busybox script; its results are checked here.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

if [ "${1:-}" = --in-rig ]; then
    work=$2
    kernel=$3
    [ -c /dev/kvm ] || vm_die "no /dev/kvm where the guest should boot"
    start=$(date +%s%N)
    timeout 240 qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -nodefaults \
        -no-user-config -display none -no-reboot -m 256 -smp 1 -device i8042 \
        -kernel "$kernel" -initrd "$work/initramfs.cpio" \
        -append "console=ttyS0 reboot=k panic=-1 rdinit=/init" \
        -serial "file:$work/serial.log" \
        -drive id=ro,file="$work/image.erofs",format=raw,if=none,readonly=on \
        -device virtio-blk-device,drive=ro \
        -drive id=rw,file="$work/disk.ext4",format=raw,if=none \
        -device virtio-blk-device,drive=rw \
        -chardev file,id=agent,path="$work/hvc.log" \
        -device virtio-serial-device,max_ports=1 -device virtconsole,chardev=agent ||
        vm_die "qemu microvm failed or timed out (exit $?)"
    echo "guest boot to power-off: $((($(date +%s%N) - start) / 1000000)) ms"
    exit 0
fi

for tool in mkfs.erofs mkfs.ext4 debugfs cpio busybox; do
    command -v "$tool" >/dev/null || vm_die "'$tool' is missing; run tests/setup.sh"
done
kernel=$(vm_kernel)
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-kernel-boot.XXXXXX")
if [ "${NOOK_VM_KEEP:-0}" = 1 ]; then vm_log "keeping $work"; else trap 'rm -rf "$work"' EXIT; fi

mkdir -p "$work/image" "$work/root"
echo "from the erofs image" >"$work/image/marker"
mkfs.erofs --quiet "$work/image.erofs" "$work/image" >/dev/null || vm_die "mkfs.erofs failed"
truncate -s 64M "$work/disk.ext4"
mkfs.ext4 -q -F "$work/disk.ext4" || vm_die "mkfs.ext4 failed"

cat >"$work/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "nook-boot: $*"; }
mkdir -p /proc /sys /dev /ro /rw /ovl /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say "init running"
say "cpus $(grep -c ^processor /proc/cpuinfo)"
for fs in erofs ext4 overlay tmpfs cgroup2 devpts; do
    grep -qw "$fs" /proc/filesystems && say "fs $fs"
done
mount -t erofs -o ro /dev/vda /ro && say "erofs says: $(cat /ro/marker)"
mount -t ext4 /dev/vdb /rw && echo "written by the guest" >/rw/from-guest && say "ext4 written"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work overlay /ovl &&
    echo changed >/ovl/marker && say "overlay upper: $(cat /rw/upper/marker), lower: $(cat /ro/marker)"
umount /ovl
mount -t tmpfs tmp /tmp && say "tmpfs mounted"
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && say "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
unshare -m -u -i -p -n -f sh -c 'hostname inner && echo "nook-boot: namespaces ok as $(hostname) pid $$"'
grep -q '^Seccomp:' /proc/self/status && say "seccomp present"
[ -c /dev/hvc0 ] && echo "hello over hvc0" >/dev/hvc0 && say "hvc0 written"
umount /rw
sync
say "powering off"
reboot -f
INIT
vm_busybox_initramfs "$work/root" "$work/initramfs.cpio"

if ! tests/rig/run.sh --rw "$work" -- tests/vm/kernel-boot.sh --in-rig "$work" "$kernel"; then
    echo "--- guest serial log ---" >&2
    tail -n 40 "$work/serial.log" >&2 || true
    vm_die "the guest run failed"
fi

serial=$work/serial.log
[ -f "$serial" ] || vm_die "no serial log"
fails=0
expect() {
    if grep -qF -- "$1" "$2"; then
        echo "ok: $1"
    else
        echo "FAIL: '$1' not in $(basename "$2")" >&2
        fails=$((fails + 1))
    fi
}
for line in "nook-boot: init running" "nook-boot: fs erofs" "nook-boot: fs ext4" \
    "nook-boot: fs overlay" "nook-boot: fs tmpfs" "nook-boot: fs cgroup2" "nook-boot: fs devpts" \
    "nook-boot: erofs says: from the erofs image" "nook-boot: ext4 written" \
    "nook-boot: overlay upper: changed, lower: from the erofs image" "nook-boot: tmpfs mounted" \
    "nook-boot: cgroup2 controllers:" "nook-boot: namespaces ok as inner pid 1" \
    "nook-boot: seccomp present" "nook-boot: hvc0 written" "nook-boot: powering off"; do
    expect "$line" "$serial"
done
expect "hello over hvc0" "$work/hvc.log"
got=$(debugfs -R "cat /from-guest" "$work/disk.ext4" 2>/dev/null)
if [ "$got" = "written by the guest" ]; then echo "ok: the host reads the guest's file from the ext4 disk"; else
    echo "FAIL: /from-guest on the ext4 disk holds '$got'" >&2
    fails=$((fails + 1))
fi
if [ "$fails" -ne 0 ]; then
    echo "--- guest serial log ---" >&2
    cat "$serial" >&2
    vm_die "$fails check(s) failed"
fi
echo "kernel-boot: PASS"
