#!/usr/bin/env bash
# Shared directories in a VM (virtio-fs), run by an unprivileged user inside the nested KVM rig
# (natively on a VT-x/AMD-V host): virtiofsd started by the runtime's code in its own user
# namespace, nook-vmm's vhost-user-fs devices, nook's kernel and the agent's mounts. See
# tests/tests/vmm_fs_boot.rs for what it shows: a bind-mounted directory both ways, a read-only
# share refusing writes, a tmpfs of the size asked, a volume seen by the next VM, and a VM
# stopped with a clear error when its virtiofsd dies.
#
# As root the user `nooktest` is created (as the other tests/vm scripts do); otherwise the calling
# user runs the VMs. Environment: NOOK_KERNEL (default: guest-kernel/build.sh), NOOK_VIRTIOFSD
# (default: the pinned build tests/setup.sh installs).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

# Sockets and shared directories on the rig's own /tmp: the work directory is a 9p export.
in_rig() {
    local base=/tmp/nook-volumes-vm
    rm -rf "$base"
    mkdir -p "$base"
    cp -r "$WORK"/bin "$WORK"/image.erofs "$WORK"/upper.ext4 "$WORK"/agent.cpio "$base/"
    cp "$base/bin/vmlinux" "$base/vmlinux"
    chown -R "$TEST_USER" "$base"
    chown "root:$(id -gn "$TEST_USER")" /dev/kvm
    chmod 660 /dev/kvm
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$base" \
        NOOK_VMM_FS_DIR="$base" NOOK_VMM_BIN="$base/bin/nook-vmm" \
        NOOK_VIRTIOFSD="$base/bin/virtiofsd" RUST_BACKTRACE=1 \
        "$base/bin/vmm_fs_boot" --exact shared_directories_in_a_vm --nocapture --test-threads 1
    cli "$base"
}

# The same through nook's flags, as the unprivileged user.
cli() {
    local top=$1 base=$1/cli out
    mkdir -p "$base/run" "$base/host"
    chown -R "$TEST_USER" "$base"
    nook() {
        runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
            HOME="$base" NOOK_ROOT="$base/root" XDG_RUNTIME_DIR="$base/run" \
            XDG_CACHE_HOME="$base/cache" NOOK_KERNEL="$top/bin/vmlinux" \
            NOOK_AGENT="$top/bin/nook-agent" NOOK_VIRTIOFSD="$top/bin/virtiofsd" NOOK_ISOLATION=vm \
            timeout -k 10 600 "$top/bin/nook" "$@"
    }
    nook image default >/dev/null
    runuser -u "$TEST_USER" -- sh -c "echo from the host >'$base/host/in'"
    out=$(nook run --rm -v "$base/host:/data" busybox sh -c 'cat /data/in; echo from the vm >/data/out')
    [ "$out" = "from the host" ] || vm_die "nook -v: read '$out'"
    [ "$(cat "$base/host/out")" = "from the vm" ] || vm_die "nook -v: the host does not see the container's file"
    out=$(nook run --rm -v "$base/host:/data:ro" busybox sh -c 'echo x >/data/in; cat /data/in' 2>&1) || true
    grep -q "Read-only file system" <<<"$out" || vm_die "nook -v :ro: '$out'"
    [ "$(cat "$base/host/in")" = "from the host" ] || vm_die "nook -v :ro: the host file changed"
    nook run --rm -v keep:/v busybox sh -c 'echo kept >/v/f' >/dev/null
    out=$(nook run --rm -v keep:/v busybox cat /v/f)
    [ "$out" = kept ] || vm_die "nook -v NAME: the next container read '$out'"
    out=$(nook run --rm --tmpfs /t:size=8m,mode=700 busybox sh -c 'df -k /t | awk "NR==2 {print \$2}"; stat -c %a /t')
    [ "$out" = "8192
700" ] || vm_die "nook --tmpfs: '$out'"
    [ -z "$(pgrep -u "$TEST_USER" virtiofsd || true)" ] || vm_die "virtiofsd left behind"
    echo "volumes-vm: nook -v DIR, -v DIR:ro, -v NAME across containers, --tmpfs: ok" >&2
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    exit 0
fi

for tool in mkfs.erofs mkfs.ext4 busybox runuser; do
    command -v "$tool" >/dev/null || vm_die "'$tool' is missing; run tests/setup.sh"
done
virtiofsd=${NOOK_VIRTIOFSD:-$(install_virtiofsd)}
[ -x "$virtiofsd" ] || vm_die "virtiofsd $virtiofsd is not an executable"
vm_user_work volumes-vm
cp "$virtiofsd" "$WORK/bin/virtiofsd"
cargo run -q -p nook --example mkinitramfs -- "$WORK/bin/nook-agent" "$WORK/agent.cpio" >/dev/null
test_bin=$(cargo test -p nook-tests --test vmm_fs_boot --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*vmm_fs_boot[^"]*\)".*/\1/p' | tail -n1)
[ -x "$test_bin" ] || vm_die "could not build the vmm_fs_boot test"
cp "$test_bin" "$WORK/bin/vmm_fs_boot"

# The image: a static busybox with the applets the test's scripts use.
mkdir -p "$WORK/image/bin" "$WORK/image/etc" "$WORK/image/tmp"
cp "$(command -v busybox)" "$WORK/image/bin/busybox"
for applet in sh echo cat ls sleep touch grep df awk stat cut tr; do
    ln -s busybox "$WORK/image/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$WORK/image/etc/passwd"
echo "root:x:0:" >"$WORK/image/etc/group"
mkfs.erofs --quiet "$WORK/image.erofs" "$WORK/image" >/dev/null
truncate -s 64M "$WORK/upper.ext4"
mkfs.ext4 -q -F "$WORK/upper.ext4"
chown -R "$TEST_USER" "$WORK"
chmod -R a+rX "$WORK"

tests/rig/run.sh --rw "$WORK" --timeout 1800 -- "$PWD/tests/vm/volumes-vm.sh" --in-rig
echo "volumes-vm: ok"
