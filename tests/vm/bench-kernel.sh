#!/usr/bin/env bash
# Boot-time benchmark of nook's guest kernel against Debian's cloud kernel, in one run of the rig
# (or natively on a VT-x/AMD-V host): the same VMM (QEMU microvm with KVM), memory, vCPUs, disks
# and command line, booted alternately RUNS times each to the point where /init has its disks
# (Debian's kernel must first load virtio-mmio and virtio-blk from the initramfs, as a real
# Debian-kernel microVM must). Reports host-side milliseconds from QEMU start to that point and
# the guest's own uptime there, per run and as medians, and the ratio against the goal (<= 0.25).
#
#   tests/vm/bench-kernel.sh [RUNS]       (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

# boot_once KERNEL INITRAMFS WORK: prints "<host ms> <guest uptime s>".
boot_once() {
    local kernel=$1 initrd=$2 work=$3 t0 t1= up= line log=$work/last-boot.log
    : >"$log"
    t0=$(date +%s%N)
    while IFS= read -r line; do
        echo "$line" >>"$log"
        case "$line" in
        *nook-bench-ready*)
            t1=$(date +%s%N)
            up=${line##* }
            ;;
        esac
    done < <(timeout 300 qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -nodefaults \
        -no-user-config -display none -no-reboot -m 512 -smp 1 -device i8042 \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 quiet reboot=k panic=-1 rdinit=/init" \
        -serial stdio \
        -drive id=ro,file="$work/image.erofs",format=raw,if=none,readonly=on \
        -device virtio-blk-device,drive=ro \
        -drive id=rw,file="$work/disk.ext4",format=raw,if=none \
        -device virtio-blk-device,drive=rw </dev/null 2>&1)
    if [ -z "$t1" ]; then
        tail -n 20 "$log" >&2
        vm_die "$kernel did not reach /init with its disks"
    fi
    echo "$(((t1 - t0) / 1000000)) $up"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [ "${1:-}" = --in-rig ]; then
    work=$2 runs=$3
    [ -c /dev/kvm ] || vm_die "no /dev/kvm where the guests should boot"
    declare -A host=() guest=()
    for i in $(seq 1 "$runs"); do
        for k in nook debian debian-bzimage; do
            case $k in
            nook) r=$(boot_once "$work/nook-vmlinux" "$work/nook.cpio" "$work") ;;
            debian) r=$(boot_once "$work/debian-vmlinux" "$work/debian.cpio" "$work") ;;
            debian-bzimage) r=$(boot_once "$work/debian-vmlinuz" "$work/debian.cpio" "$work") ;;
            esac
            echo "run $i $k: ${r% *} ms host, ${r#* } s guest uptime"
            host[$k]+="${r% *} "
            guest[$k]+="${r#* } "
        done
    done
    echo
    printf '%-16s %14s %20s\n' kernel "host ms (med)" "guest uptime s (med)"
    for k in nook debian debian-bzimage; do
        printf '%-16s %14s %20s\n' "$k" "$(tr ' ' '\n' <<<"${host[$k]}" | grep . | median)" \
            "$(tr ' ' '\n' <<<"${guest[$k]}" | grep . | median)"
    done
    n=$(tr ' ' '\n' <<<"${host[nook]}" | grep . | median)
    d=$(tr ' ' '\n' <<<"${host[debian]}" | grep . | median)
    b=$(tr ' ' '\n' <<<"${host[debian-bzimage]}" | grep . | median)
    awk -v n="$n" -v d="$d" -v b="$b" 'BEGIN {
        printf "ratio nook/debian (both PVH vmlinux): %.3f (goal <= 0.25: %s)\n", n / d, (n / d <= 0.25) ? "met" : "NOT met"
        printf "ratio nook/debian (Debian bzImage):   %.3f\n", n / b }'
    exit 0
fi

runs=${1:-5}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || vm_die "RUNS must be a positive number, not '$runs'"
kernel=$(vm_kernel)
cloud=$(vm_debian_cloud_kernel)
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-bench-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT

cp "$kernel" "$work/nook-vmlinux"
cp "$cloud/vmlinuz" "$work/debian-vmlinuz"
# The same boot path for both kernels: Debian's bzImage payload is an ELF vmlinux with a PVH note.
src=$(ls -d "$(nook_cache_dir)"/kernel/src/linux-source-*/ | head -n1)
[ -x "$src/scripts/extract-vmlinux" ] || vm_die "no extracted kernel source in the cache (run guest-kernel/build.sh)"
"$src/scripts/extract-vmlinux" "$cloud/vmlinuz" >"$work/debian-vmlinux" || vm_die "cannot extract Debian's vmlinux"
readelf -n "$work/debian-vmlinux" | grep -qi '0x00000012' || vm_die "Debian's vmlinux has no PVH entry note"

mkdir -p "$work/image"
echo bench >"$work/image/marker"
mkfs.erofs --quiet "$work/image.erofs" "$work/image" >/dev/null
truncate -s 64M "$work/disk.ext4"
mkfs.ext4 -q -F "$work/disk.ext4"

# /init: (Debian only) load the virtio modules, wait for both disks, report the uptime.
init_script() {
    cat <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules 2>/dev/null); do
    args=
    [ "$m" = virtio_mmio ] && args=$(/bin/busybox tr ' ' '\n' </proc/cmdline | /bin/busybox sed -n 's/^virtio_mmio\.//p')
    /bin/busybox insmod "/mods/$m.ko" $args || echo "insmod $m failed"
done
i=0
until [ -b /dev/vda ] && [ -b /dev/vdb ]; do
    i=$((i + 1))
    [ $i -lt 20000 ] || break
done
read up idle </proc/uptime
echo "nook-bench-ready $up"
/bin/busybox reboot -f
INIT
}
mkdir -p "$work/nook-root/proc" "$work/nook-root/dev" "$work/debian-root/proc" "$work/debian-root/dev" "$work/debian-root/mods"
init_script >"$work/nook-root/init"
init_script >"$work/debian-root/init"
# Debian's modules for the disks, dependencies first (from each .ko's depends= string).
declare -A ko=() seen=()
while IFS= read -r f; do
    n=${f##*/}
    n=${n%.ko}
    ko[${n//-/_}]=$f
done < <(find "$cloud/modules" -name '*.ko')
order=()
add() {
    local n=$1 d
    [ -z "${seen[$n]:-}" ] || return 0
    seen[$n]=1
    [ -n "${ko[$n]:-}" ] || vm_die "Debian's cloud kernel has no module $n"
    for d in $(tr '\0' '\n' <"${ko[$n]}" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '); do add "$d"; done
    order+=("$n")
}
add virtio_mmio
add virtio_blk
for n in "${order[@]}"; do cp "${ko[$n]}" "$work/debian-root/mods/$n.ko"; done
echo "${order[*]}" >"$work/debian-root/modules"
vm_busybox_initramfs "$work/nook-root" "$work/nook.cpio"
vm_busybox_initramfs "$work/debian-root" "$work/debian.cpio"

echo "nook kernel:   $kernel ($(du -h "$kernel" | cut -f1) ELF)"
echo "Debian kernel: $(basename "$cloud") ($(du -h "$cloud/vmlinuz" | cut -f1) bzImage, modules: ${order[*]})"
tests/rig/run.sh --rw "$work" -- tests/vm/bench-kernel.sh --in-rig "$work" "$runs"
