#!/usr/bin/env bash
# The microVM column end to end with QEMU's microvm machine as the reference VMM: nook's guest
# kernel, the agent initramfs (nook's own cpio writer), the busybox image's EROFS from
# `nook image rootfs`, and an ext4 writable disk. Through the agent channel (virtio-console to a
# Unix socket, nook-agent's host client in tests/src/bin/nook-agent-host.rs) the host sees
#   busybox sh -c 'echo hello; echo err >&2; exit 3'
# print hello on stdout, err on stderr and exit 3; a file the container writes is still there on
# a second boot with the same writable disk and absent with a fresh disk.
# Runs the guests in the nested rig unless /dev/kvm here is VT-x/AMD-V (tests/rig/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

if [ "${1:-}" = --in-rig ]; then
    work=$2
    [ -c /dev/kvm ] || vm_die "no /dev/kvm where the guests should boot"
    # Unix sockets live on L1's own tmpfs, not on the shared 9p directory.
    sockets=$(mktemp -d)
    n=0
    # boot DISK ARGV...: one guest running ARGV; its stdout, stderr and status go to $work/<n>.*
    boot() {
        local disk=$1
        shift
        n=$((n + 1))
        local rc=0
        "$work/nook-agent-host" run --socket "$sockets/agent-$n.sock" --vmm-log "$work/vmm-$n.log" \
            --timeout 300 --times "$work/times-$n.json" --cmd "$@" -- \
            qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -nodefaults -no-user-config \
            -display none -no-reboot -m 512 -smp 1 -device i8042 \
            -kernel "$work/vmlinux" -initrd "$work/initramfs.cpio" \
            -append "quiet reboot=k panic=-1 rdinit=/init nook.upper=vdb" \
            -drive id=ro,file="$work/rootfs.erofs",format=raw,if=none,readonly=on \
            -device virtio-blk-device,drive=ro \
            -drive id=rw,file="$disk",format=raw,if=none \
            -device virtio-blk-device,drive=rw \
            -chardev socket,id=agent,path="$sockets/agent-$n.sock" \
            -device virtio-serial-device,max_ports=2 -device virtserialport,chardev=agent,name=nook.agent \
            >"$work/$n.out" 2>"$work/$n.err" || rc=$?
        echo "$rc" >"$work/$n.rc"
        echo "boot $n ($*): exit $rc, $(cat "$work/times-$n.json" 2>/dev/null || echo "no times")"
    }
    boot "$work/upper-a.ext4" busybox sh -c 'echo hello; echo err >&2; exit 3'
    boot "$work/upper-a.ext4" busybox sh -c 'echo kept >/persisted.txt'
    boot "$work/upper-a.ext4" busybox cat /persisted.txt
    boot "$work/upper-b.ext4" busybox cat /persisted.txt
    exit 0
fi

for tool in mkfs.ext4 cargo; do
    command -v "$tool" >/dev/null || vm_die "'$tool' is missing; run tests/setup.sh"
done
kernel=$(vm_kernel)
agent=$(vm_agent)
workspace_executable bin nook >/dev/null || vm_die "cargo build failed"
workspace_executable bin nook-agent-host >/dev/null || vm_die "cargo build failed"
target=$(vm_target_dir)

work=$(mktemp -d "${TMPDIR:-/tmp}/nook-agent-boot.XXXXXX")
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$work"; else echo "agent-boot: files kept in $work" >&2; fi' EXIT
cp "$kernel" "$work/vmlinux"
cp "$target/debug/nook-agent-host" "$work/nook-agent-host"
"$work/nook-agent-host" initramfs "$agent" "$work/initramfs.cpio"

export NOOK_ROOT=$work/store
"$target/debug/nook" image default >/dev/null || vm_die "nook image default failed"
rootfs=$("$target/debug/nook" image rootfs busybox | tail -n1)
[ -f "$rootfs" ] || vm_die "nook image rootfs busybox printed '$rootfs', which is not a file"
cp "$rootfs" "$work/rootfs.erofs"
for d in a b; do
    truncate -s 256M "$work/upper-$d.ext4"
    mkfs.ext4 -q -F "$work/upper-$d.ext4"
done

tests/rig/run.sh --rw "$work" -- tests/vm/agent-boot.sh --in-rig "$work" || vm_die "the guest runs failed"

fails=0
check() { # N WHAT EXPECTED ACTUAL
    if [ "$3" = "$4" ]; then
        echo "ok: boot $1 $2 = $(printf %q "$4")"
    else
        echo "FAIL: boot $1 $2: expected $(printf %q "$3"), got $(printf %q "$4")" >&2
        fails=$((fails + 1))
    fi
}
check 1 stdout hello "$(cat "$work/1.out")"
check 1 stderr err "$(cat "$work/1.err")"
check 1 status 3 "$(cat "$work/1.rc")"
check 2 status 0 "$(cat "$work/2.rc")"
check 3 "stdout (same disk)" kept "$(cat "$work/3.out")"
check 3 status 0 "$(cat "$work/3.rc")"
check 4 "stdout (fresh disk)" "" "$(cat "$work/4.out")"
check 4 status 1 "$(cat "$work/4.rc")"
if ! grep -q "No such file" "$work/4.err"; then
    echo "FAIL: boot 4 stderr does not say the file is missing: $(cat "$work/4.err")" >&2
    fails=$((fails + 1))
fi
if [ "$fails" -ne 0 ]; then
    for i in 1 2 3 4; do
        echo "--- boot $i: stderr, VMM log ---" >&2
        cat "$work/$i.err" "$work/vmm-$i.log" >&2 2>/dev/null || true
    done
    vm_die "$fails check(s) failed"
fi
echo "agent-boot: PASS"
