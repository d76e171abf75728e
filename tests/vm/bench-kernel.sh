#!/usr/bin/env bash
# Boot-time benchmark of nook's guest kernel against Debian's cloud kernel, in one run of the rig
# (or natively on a VT-x/AMD-V host): the same VMM (QEMU microvm with KVM), memory, vCPUs, disks
# (the busybox image's EROFS from `nook image rootfs` and an ext4 writable disk), agent and
# command line, booted alternately RUNS times each to the agent's ready message (root filesystem
# mounted and entered). Debian's kernel has virtio-mmio, virtio-blk, virtio-console, erofs and
# overlayfs as modules, so its initramfs first loads them with busybox and then execs the same
# agent as PID 1, as any Debian-kernel microVM must. Reports host milliseconds from the VMM's start
# to the ready message and the guest's own timestamps, per run and as medians, and the ratio
# against the goal (<= 0.25).
#
#   tests/vm/bench-kernel.sh [RUNS]       (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

# boot_once KERNEL INITRAMFS WORK ACPI: prints "<host ms to ready> <guest ms to agent> <guest ms to root ready>".
boot_once() {
    local kernel=$1 initrd=$2 work=$3 acpi=$4 sockets times rc=0
    # The i8042 options spare Debian's i8042 driver its slow probing (nook's kernel has no such
    # driver and ignores them); Firecracker recommends the same for its guests.
    local append="quiet reboot=k panic=-1 rdinit=/init nook.upper=vdb i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd" debug=()
    # QEMU's own start-up is paid by every kernel alike: spare it the option ROMs, the RTC and
    # (unless debugging) the serial port, none of which either kernel needs to boot.
    local machine="microvm,acpi=$acpi,x-option-roms=off,rtc=off,isa-serial=off"
    # NOOK_BENCH_DEBUG=1: kernel and agent log on the serial port, in serial.log (slows the boot).
    if [ "${NOOK_BENCH_DEBUG:-0}" = 1 ]; then
        append="console=ttyS0 printk.time=1 nook.debug ${append#quiet }"
        debug=(-serial "file:$work/serial.log")
        machine=${machine%,isa-serial=off}
    fi
    sockets=$(mktemp -d)
    times=$work/times.json
    rm -f "$times"
    cp "$work/upper.ext4" "$work/upper-run.ext4"
    "$work/nook-agent-host" run --socket "$sockets/agent.sock" --vmm-log "$work/vmm.log" \
        --timeout 300 --times "$times" --cmd true -- \
        qemu-system-x86_64 -M "$machine" -enable-kvm -cpu host -nodefaults -no-user-config \
        -display none -no-reboot -m 512 -smp 1 -device i8042 \
        -kernel "$kernel" -initrd "$initrd" \
        -append "$append" "${debug[@]}" \
        -drive id=ro,file="$work/rootfs.erofs",format=raw,if=none,readonly=on \
        -device virtio-blk-device,drive=ro \
        -drive id=rw,file="$work/upper-run.ext4",format=raw,if=none \
        -device virtio-blk-device,drive=rw \
        -chardev socket,id=agent,path="$sockets/agent.sock" \
        -device virtio-serial-device,max_ports=2 -device virtserialport,chardev=agent,name=nook.agent >&2 || rc=$?
    rm -rf "$sockets"
    if [ "$rc" -ne 0 ] || [ ! -f "$times" ]; then
        tail -n 20 "$work/vmm.log" >&2
        [ ! -f "$work/serial.log" ] || tail -n 40 "$work/serial.log" >&2
        vm_die "$kernel did not boot to the agent and run true (exit $rc)"
    fi
    sed -E 's/.*"guest_agent_start_ns":([0-9]+).*"guest_root_ready_ns":([0-9]+).*"host_ready_ms":([0-9]+).*/\3 \1 \2/' "$times" |
        awk '{ printf "%d %d %d\n", $1, $2 / 1000000, $3 / 1000000 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [ "${1:-}" = --in-rig ]; then
    shared=$2 runs=$3
    [ -c /dev/kvm ] || vm_die "no /dev/kvm where the guests should boot"
    # Boot from a local copy: the shared directory is 9p in the rig, and reading kernels, initramfs
    # and disks through it is a cost of the rig, paid by every kernel alike, not of a kernel.
    work=$(mktemp -d)
    trap 'cp "$work"/serial.log "$work"/vmm.log "$shared"/ 2>/dev/null || true; rm -rf "$work"' EXIT
    cp "$shared"/{nook-vmlinux,nook.cpio,debian-vmlinux,debian-vmlinuz,debian.cpio,rootfs.erofs,nook-agent-host} "$work"/
    cp --sparse=always "$shared/upper.ext4" "$work"/
    declare -A host=() agent=() root=()
    read -r -a kernels <<<"${NOOK_BENCH_KERNELS:-nook debian debian-bzimage}"
    for i in $(seq 1 "$runs"); do
        for k in "${kernels[@]}"; do
            case $k in
            nook) r=$(boot_once "$work/nook-vmlinux" "$work/nook.cpio" "$work" off) ;;
            debian) r=$(boot_once "$work/debian-vmlinux" "$work/debian.cpio" "$work" on) ;;
            debian-bzimage) r=$(boot_once "$work/debian-vmlinuz" "$work/debian.cpio" "$work" on) ;;
            esac
            read -r h a g <<<"$r"
            echo "run $i $k: ready after ${h} ms (host); guest: agent at ${a} ms, root ready at ${g} ms"
            host[$k]+="$h "
            agent[$k]+="$a "
            root[$k]+="$g "
        done
    done
    med() { tr ' ' '\n' <<<"$1" | grep . | median; }
    echo
    printf '%-16s %18s %20s %24s\n' kernel "host ms to ready" "guest ms to agent" "guest ms to root ready"
    for k in "${kernels[@]}"; do
        printf '%-16s %18s %20s %24s\n' "$k" "$(med "${host[$k]}")" "$(med "${agent[$k]}")" "$(med "${root[$k]}")"
    done
    echo "(medians of $runs runs)"
    if [ -n "${host[nook]:-}" ] && [ -n "${host[debian]:-}" ]; then
        awk -v n="$(med "${host[nook]}")" -v d="$(med "${host[debian]}")" 'BEGIN {
            printf "ratio nook/debian, host ms to ready (both PVH vmlinux): %.3f (goal <= 0.25: %s)\n", n / d, (n / d <= 0.25) ? "met" : "NOT met" }'
    fi
    if [ -n "${host[nook]:-}" ] && [ -n "${host[debian-bzimage]:-}" ]; then
        awk -v n="$(med "${host[nook]}")" -v b="$(med "${host[debian-bzimage]}")" 'BEGIN {
            printf "ratio nook/debian, host ms to ready (Debian bzImage):   %.3f\n", n / b }'
    fi
    exit 0
fi

runs=${1:-5}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || vm_die "RUNS must be a positive number, not '$runs'"
kernel=$(vm_kernel)
cloud=$(vm_debian_cloud_kernel)
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-bench-kernel.XXXXXX")
if [ "${NOOK_VM_KEEP:-0}" = 1 ]; then vm_log "keeping $work"; else trap 'rm -rf "$work"' EXIT; fi

cp "$kernel" "$work/nook-vmlinux"
cp "$cloud/vmlinuz" "$work/debian-vmlinuz"
# The same boot path for both kernels: Debian's bzImage payload is an ELF vmlinux with a PVH note.
src=$(ls -d "$(nook_cache_dir)"/kernel/src/linux-source-*/ | head -n1)
[ -x "$src/scripts/extract-vmlinux" ] || vm_die "no extracted kernel source in the cache (run guest-kernel/build.sh)"
"$src/scripts/extract-vmlinux" "$cloud/vmlinuz" >"$work/debian-vmlinux" || vm_die "cannot extract Debian's vmlinux"
readelf -n "$work/debian-vmlinux" | grep -qi '0x00000012' || vm_die "Debian's vmlinux has no PVH entry note"

agent=$(vm_agent)
cargo build --quiet -p nook --bin nook -p nook-tests --bin nook-agent-host || vm_die "cargo build failed"
target=$(vm_target_dir)
cp "$target/debug/nook-agent-host" "$work/nook-agent-host"
export NOOK_ROOT=$work/store
"$target/debug/nook" image default >/dev/null || vm_die "nook image default failed"
cp "$("$target/debug/nook" image rootfs busybox | tail -n1)" "$work/rootfs.erofs" || vm_die "nook image rootfs busybox failed"
truncate -s 256M "$work/upper.ext4"
mkfs.ext4 -q -F "$work/upper.ext4"

# nook's kernel: the agent initramfs exactly as nook writes it.
"$work/nook-agent-host" initramfs "$agent" "$work/nook.cpio"

# Debian's kernel: busybox loads the modules (dependencies first, from each .ko's depends=
# string), then execs the same agent as PID 1. Its virtio_mmio lacks VIRTIO_MMIO_CMDLINE_DEVICES,
# so it finds the devices through ACPI: Debian boots with microvm's ACPI tables on (acpi=on),
# nook's kernel (no ACPI) with them off and the devices on its command line.
mkdir -p "$work/debian-root/mods" "$work/debian-root/proc" "$work/debian-root/dev" \
    "$work/debian-root/sys" "$work/debian-root/run" "$work/debian-root/tmp"
cp "$agent" "$work/debian-root/nook-agent"
cat >"$work/debian-root/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
for m in $($B cat /modules); do
    $B insmod "/mods/$m.ko" || echo "insmod $m failed"
done
$B umount /proc
exec /nook-agent
INIT
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
for m in virtio_mmio virtio_blk virtio_console erofs overlay; do add "$m"; done
for n in "${order[@]}"; do cp "${ko[$n]}" "$work/debian-root/mods/$n.ko"; done
echo "${order[*]}" >"$work/debian-root/modules"
vm_busybox_initramfs "$work/debian-root" "$work/debian.cpio"

echo "nook kernel:   $kernel ($(du -h "$kernel" | cut -f1) ELF), initramfs $(du -h "$work/nook.cpio" | cut -f1)"
echo "Debian kernel: $(basename "$cloud") ($(du -h "$cloud/vmlinuz" | cut -f1) bzImage), initramfs $(du -h "$work/debian.cpio" | cut -f1) with ${order[*]}"
tests/rig/run.sh --rw "$work" -- tests/vm/bench-kernel.sh --in-rig "$work" "$runs"
