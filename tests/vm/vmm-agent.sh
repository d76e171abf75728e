#!/usr/bin/env bash
# nook's VMM + nook's kernel + nook's agent, in the nested KVM rig (natively on VT-x/AMD-V): the
# agent boots from the initramfs nook writes, mounts a busybox EROFS image (vda) and an ext4
# writable disk (vdb) and runs `sh -c 'echo hello; echo err >&2; exit 3'`, with 1 vCPU/128 MiB
# and 2 vCPUs/1 GiB. See tests/tests/vmm_agent_boot.rs.
#
# Environment: NOOK_KERNEL (a vmlinux; default: guest-kernel/build.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "vmm-agent: error: $*" >&2
    exit 1
}
for tool in mkfs.erofs mkfs.ext4 debugfs busybox; do
    command -v "$tool" >/dev/null || die "'$tool' is missing; run tests/setup.sh"
done

kernel=${NOOK_KERNEL:-$(guest-kernel/build.sh | tail -n1)}
[ -f "$kernel" ] || die "kernel $kernel does not exist"
agent=$(vm_agent)

work=$(mktemp -d "${TMPDIR:-/tmp}/nook-vmm-agent.XXXXXX")
trap 'status=$?; [ $status -eq 0 ] && rm -rf "$work" || echo "vmm-agent: files kept in $work" >&2' EXIT
cp "$kernel" "$work/vmlinux"
mkinitramfs=$(workspace_executable example mkinitramfs) || die "could not build mkinitramfs"
"$mkinitramfs" "$agent" "$work/agent.cpio" >/dev/null

# The image: a static busybox with its applets.
mkdir -p "$work/image/bin" "$work/image/etc" "$work/image/tmp"
cp "$(command -v busybox)" "$work/image/bin/busybox"
for applet in sh echo cat ls; do ln -s busybox "$work/image/bin/$applet"; done
echo "root:x:0:0:root:/root:/bin/sh" >"$work/image/etc/passwd"
echo "root:x:0:" >"$work/image/etc/group"
mkfs.erofs --quiet "$work/image.erofs" "$work/image" >/dev/null
truncate -s 64M "$work/upper.ext4"
mkfs.ext4 -q -F "$work/upper.ext4"

cargo build -q --release --locked -p nook -p nook-vmm
vmm=$(vm_target_dir)/release/nook-vmm
test_bin=$(workspace_executable test vmm_agent_boot) || die "could not build the vmm_agent_boot test"

NOOK_VMM_AGENT_DIR=$work NOOK_VMM_BIN=$vmm tests/rig/run.sh --rw "$work" --timeout 1800 -- \
    "$test_bin" --exact agent_runs_a_container_command_under_nook_vmm --nocapture --test-threads 1
echo "vmm-agent: ok"
