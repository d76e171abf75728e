#!/usr/bin/env bash
# Shared directories in a VM (virtio-fs), run by an unprivileged user inside the nested KVM rig
# (natively on a VT-x/AMD-V host): virtiofsd started by the runtime's code in its own user
# namespace, nook-vmm's vhost-user-fs devices, nook's kernel and the agent's mounts. See
# tests/tests/vmm_fs_boot.rs for what it shows: a bind-mounted directory both ways, a read-only
# share refusing writes, a tmpfs of the size asked, a volume seen by the next VM, and a VM
# stopped with a clear error when its virtiofsd dies. Then nook's flags as that user: -v, :ro,
# a single file both ways and read-only, named volumes, --tmpfs, a guest user other than root writing to shares, `nook cp` into a
# --read-only container, a full volume, a missing bind source, and `nook cp` both ways, running
# and stopped, through hostile symlinks.
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
    vm_user_kvm
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
    # A single file, both ways, its siblings out of the guest's reach; read-only refused.
    as_user "echo host line >'$base/host/one'"
    out=$(nook run --rm -v "$base/host/one:/etc/one.conf" busybox sh -c \
        'cat /etc/one.conf; echo guest line >>/etc/one.conf; cat /proc/mounts | grep -c virtiofs')
    [ "$out" = "host line
1" ] || vm_die "nook -v FILE: '$out'"
    [ "$(cat "$base/host/one")" = "host line
guest line" ] || vm_die "nook -v FILE: the host file is '$(cat "$base/host/one")'"
    out=$(nook run --rm -v "$base/host/one:/deep/er/one.conf:ro" busybox sh -c \
        'cat /deep/er/one.conf; echo x >>/deep/er/one.conf' 2>&1) || true
    grep -q "guest line" <<<"$out" && grep -q "Read-only file system" <<<"$out" ||
        vm_die "nook -v FILE:ro: '$out'"
    [ "$(wc -l <"$base/host/one")" = 2 ] || vm_die "nook -v FILE:ro: the host file changed"
    nook run --rm -v keep:/v busybox sh -c 'echo kept >/v/f' >/dev/null
    out=$(nook run --rm -v keep:/v busybox cat /v/f)
    [ "$out" = kept ] || vm_die "nook -v NAME: the next container read '$out'"
    out=$(nook run --rm --tmpfs /t:size=8m,mode=700 busybox sh -c 'df -k /t | awk "NR==2 {print \$2}"; stat -c %a /t')
    [ "$out" = "8192
700" ] || vm_die "nook --tmpfs: '$out'"
    [ -z "$(pgrep -u "$TEST_USER" virtiofsd || true)" ] || vm_die "virtiofsd left behind"
    echo "volumes-vm: nook -v DIR, -v DIR:ro, -v FILE, -v FILE:ro, -v NAME across containers, --tmpfs: ok" >&2
    guest_users "$base"
    cp_read_only "$base"
    full_volume "$base"
    cp_round_trip "$base"
    cp_hostile "$base"
    [ -z "$(pgrep -u "$TEST_USER" virtiofsd || true)" ] || vm_die "virtiofsd left behind"
}

# As the user: runs a shell command.
as_user() {
    runuser -u "$TEST_USER" -- sh -c "$1"
}

# Every entry below $1: path, type, mode, link count, size and checksum or link target.
describe() {
    (cd "$1" && find . -mindepth 1 | sort | while read -r p; do
        if [ -L "$p" ]; then
            echo "$p link $(readlink "$p")"
        elif [ -d "$p" ]; then
            echo "$p dir $(stat -c %a "$p")"
        else
            echo "$p file $(stat -c '%a %h %s' "$p") $(md5sum <"$p" | cut -c1-32)"
        fi
    done)
}

# A guest user other than root writes to a share as the namespace column's container user
# does: virtiofsd's namespace maps guest ids 1... to the user's subordinate ids, so what guest
# uid 1000 writes belongs to subordinate id 1000 - 1 + the range's start on the host.
guest_users() {
    local base=$1 sub out
    sub=$(awk -F: -v u="$TEST_USER" '$1 == u { print $2 }' /etc/subuid)
    [ -n "$sub" ] || vm_die "guest users: $TEST_USER has no subordinate ids in /etc/subuid"
    nook run --rm -v mine:/v busybox sh -c 'mkdir /v/own && chown 1000:1000 /v/own' >/dev/null
    out=$(nook run --rm --user 1000:1000 -v mine:/v busybox sh -c \
        'echo mine >/v/own/f && stat -c "%u:%g" /v/own/f && cat /v/own/f')
    [ "$out" = "1000:1000
mine" ] || vm_die "guest users: --user 1000 writing to a volume: '$out'"
    mkdir -p "$base/shared"
    chmod 1777 "$base/shared"
    out=$(nook run --rm --user 1000 -v "$base/shared:/s" busybox sh -c 'echo hi >/s/u && cat /s/u' 2>&1)
    [ "$out" = hi ] || vm_die "guest users: --user 1000 writing to a bind mount: '$out'"
    [ "$(stat -c %u "$base/shared/u")" = $((sub + 999)) ] ||
        vm_die "guest users: the host sees uid $(stat -c %u "$base/shared/u"), not $((sub + 999))"
    out=$(nook run --rm --user 1000 -v "$base/host:/data" busybox sh -c 'echo x >/data/nope' 2>&1) &&
        vm_die "guest users: uid 1000 wrote into the user's own 755 directory"
    grep -q "Permission denied" <<<"$out" || vm_die "guest users: refused write: '$out'"
    echo "volumes-vm: --user 1000 writes to a volume and a 1777 bind mount (subordinate id $((sub + 999)) on the host), not to a 755 one: ok" >&2
}

# nook cp into a --read-only container, stopped as when running: refused into its root, let
# through into a writable bind mount, refused into a read-only one.
cp_read_only() {
    local base=$1 out
    as_user "echo payload >'$base/payload'"
    nook create --name sealed --read-only -v "$base/host:/data" -v "$base/host:/rodata:ro" \
        busybox true >/dev/null
    out=$(nook cp "$base/payload" sealed:/payload 2>&1) && vm_die "cp into a stopped --read-only root succeeded"
    grep -q "container rootfs is marked read-only" <<<"$out" || vm_die "cp into a --read-only root: '$out'"
    out=$(nook cp "$base/payload" sealed:/rodata/ 2>&1) && vm_die "cp into a :ro bind mount succeeded"
    grep -q "mounted volume is marked read-only" <<<"$out" || vm_die "cp into a :ro bind mount: '$out'"
    [ ! -e "$base/host/payload" ] || vm_die "cp into a :ro bind mount wrote the host file"
    nook cp "$base/payload" sealed:/data/
    [ "$(cat "$base/host/payload")" = payload ] || vm_die "cp into a --read-only container's volume"
    rm -f "$base/host/payload"
    nook rm sealed >/dev/null
    echo "volumes-vm: cp into a stopped --read-only container: refused into its root and a :ro mount, into a volume: ok" >&2
}

# A small tmpfs as a bind source: ENOSPC in the container, and the volume works again once
# emptied. A bind source that does not exist is refused at create.
full_volume() {
    local base=$1 out rc=0
    mkdir -p "$base/small"
    mount -t tmpfs -o size=1m tmpfs "$base/small"
    chown "$TEST_USER" "$base/small"
    out=$(nook run --rm -v "$base/small:/small" busybox sh -c \
        'dd if=/dev/zero of=/small/f bs=1M count=4 2>&1; echo "dd exit $?"')
    grep -q "No space left on device" <<<"$out" || vm_die "full volume: '$out'"
    out=$(nook run --rm -v "$base/small:/small" busybox sh -c 'rm /small/f && echo ok >/small/g && cat /small/g')
    [ "$out" = ok ] || vm_die "full volume, emptied: '$out'"
    umount "$base/small"
    out=$(nook create -v /nonexistent:/x busybox true 2>&1) || rc=$?
    [ "$rc" = 125 ] || vm_die "create -v /nonexistent:/x exited $rc: '$out'"
    grep -q "bind source path does not exist: /nonexistent" <<<"$out" ||
        vm_die "create -v /nonexistent:/x: '$out'"
    echo "volumes-vm: a full volume gives ENOSPC and recovers; a missing bind source is refused (125): ok" >&2
}

# nook cp both ways, running and stopped, with a 100 MiB file, a symlink, a hard link, modes, a
# sub-directory, -a, tar streams and volumes.
cp_round_trip() {
    local base=$1 tree=$1/tree want got out uid
    as_user "mkdir -p '$tree/sub/deeper' '$base/out' && head -c 104857600 /dev/urandom >'$tree/big' &&
        printf '#!/bin/sh\necho hi\n' >'$tree/sub/script' && chmod 750 '$tree/sub/script' &&
        echo s >'$tree/sub/deeper/secret' && chmod 600 '$tree/sub/deeper/secret' &&
        chmod 711 '$tree/sub/deeper' && ln '$tree/sub/script' '$tree/hardlink' &&
        ln -s sub/script '$tree/symlink'"
    want=$(describe "$tree")
    grep -q "^./big file 644 1 104857600 " <<<"$want" || vm_die "cp: the tree is not what it should be: $want"
    nook run -d --name box -v "$base/host:/data" busybox sleep 600 >/dev/null
    local start=$SECONDS
    nook cp "$tree" box:/copied
    echo "volumes-vm: cp of the tree into a running VM: $((SECONDS - start)) s" >&2
    out=$(nook exec box sh -c 'stat -c "%a %u" /copied/sub/script; readlink /copied/symlink; md5sum /copied/big | cut -c1-32')
    [ "$out" = "750 0
sub/script
$(md5sum <"$tree/big" | cut -c1-32)" ] || vm_die "cp into a running VM: '$out'"
    start=$SECONDS
    nook cp box:/copied "$base/out"
    echo "volumes-vm: cp of the tree out of a running VM: $((SECONDS - start)) s" >&2
    got=$(describe "$base/out/copied")
    [ "$got" = "$want" ] || vm_die "cp out of a running VM differs: $(diff <(echo "$want") <(echo "$got"))"
    [ "$(stat -c %i "$base/out/copied/hardlink")" = "$(stat -c %i "$base/out/copied/sub/script")" ] ||
        vm_die "cp out of a running VM: the hard link was not kept"
    # -a keeps the container's owners (mapped through the user's subordinate ids).
    nook exec box chown 1234:1234 /copied/sub/script
    nook cp box:/copied/sub/script "$base/out/plain"
    nook cp -a box:/copied/sub/script "$base/out/archived"
    [ "$(stat -c %u "$base/out/plain")" = "$(id -u "$TEST_USER")" ] || vm_die "cp: the copy is not the user's"
    uid=$(stat -c %u "$base/out/archived")
    [ "$uid" != "$(id -u "$TEST_USER")" ] && [ "$uid" != 0 ] || vm_die "cp -a: owner $uid"
    # Tar streams out and in, and a volume seen through the running guest.
    nook cp box:/copied/sub - >"$base/out/sub.tar"
    out=$(tar -tf "$base/out/sub.tar" | sed 's:/$::' | sort | tr '\n' ' ')
    [ "$out" = "sub sub/deeper sub/deeper/secret sub/script " ] || vm_die "cp to -: '$out'"
    nook cp - box:/tmp <"$base/out/sub.tar"
    [ "$(nook exec box cat /tmp/sub/script)" = "$(printf '#!/bin/sh\necho hi')" ] || vm_die "cp from -"
    nook cp "$tree/sub/script" box:/data/from-cp
    [ "$(cat "$base/host/from-cp")" = "$(cat "$tree/sub/script")" ] || vm_die "cp into a volume of a running VM"
    echo "volumes-vm: cp into and out of a running VM (tree, -a, -, a volume): ok" >&2

    nook stop -t 0 box >/dev/null
    start=$SECONDS
    nook cp box:/copied/. "$base/out/stopped"
    echo "volumes-vm: cp of the tree out of a stopped VM container: $((SECONDS - start)) s" >&2
    got=$(describe "$base/out/stopped")
    [ "$got" = "$want" ] || vm_die "cp out of a stopped VM differs: $(diff <(echo "$want") <(echo "$got"))"
    start=$SECONDS
    nook cp "$tree" box:/copied2
    echo "volumes-vm: cp of the tree into a stopped VM container: $((SECONDS - start)) s" >&2
    nook cp box:/copied2 "$base/out/stopped2"
    got=$(describe "$base/out/stopped2")
    [ "$got" = "$want" ] || vm_die "cp into a stopped VM differs: $(diff <(echo "$want") <(echo "$got"))"
    nook cp -a box:/copied/sub/script "$base/out/archived-stopped"
    [ "$(stat -c %u "$base/out/archived-stopped")" = "$uid" ] || vm_die "cp -a from a stopped VM"
    nook cp "$tree/sub/script" box:/data/from-stopped
    [ -f "$base/host/from-stopped" ] || vm_die "cp into a volume of a stopped VM container"
    nook start box >/dev/null
    out=$(nook exec box sh -c 'md5sum /copied2/big | cut -c1-32; cat /data/from-stopped')
    [ "$out" = "$(md5sum <"$tree/big" | cut -c1-32)
$(cat "$tree/sub/script")" ] || vm_die "after cp into the stopped container: '$out'"
    nook rm -f box >/dev/null
    echo "volumes-vm: cp into and out of a stopped VM container (copy-only boot, -a, a volume): ok" >&2
}

# Symlinks inside the container pointing at / and climbing out: reads and writes through them
# stay inside the container, running and stopped.
cp_hostile() {
    local base=$1 outside=$1/outside got=$1/got state src follow dst out rel i
    as_user "mkdir -p '$outside' '$base/victim' && echo 'host secret' >'$outside/secret' &&
        echo payload >'$base/victim/payload'"
    rel=${outside#/}
    nook run -d --name evil busybox sh -c "mkdir -p /$rel && echo decoy >/$rel/secret &&
        ln -s / /root-link && ln -s ../../../../../../../.. /up && ln -s $outside /abs-dir &&
        ln -s $outside/secret /abs-file && touch /ready && sleep 600" >/dev/null
    for i in $(seq 60); do
        nook exec evil test -e /ready && break
        sleep 1
    done
    for state in running stopped; do
        for src in "/up/$rel/secret" "/root-link/$rel/secret" /abs-dir/secret "-L /abs-file"; do
            follow=
            [ "${src#-L }" != "$src" ] && follow=-L && src=${src#-L }
            nook cp $follow "evil:$src" "$got" 2>/dev/null || true
            out=$(cat "$got" 2>/dev/null || true)
            rm -rf "$got"
            [ "$out" != "host secret" ] || vm_die "cp $state: evil:$src read a host file"
            [ "$out" = decoy ] || vm_die "cp $state: evil:$src gave '$out'"
        done
        nook cp evil:/abs-file "$got"
        [ -L "$got" ] || vm_die "cp $state: a symlink was followed without -L"
        rm -f "$got"
        for dst in /abs-dir/planted "/up/$rel/planted" "/root-link/$rel/"; do
            nook cp "$base/victim/payload" "evil:$dst" 2>/dev/null || true
        done
        (cd "$base/victim" && tar -cf - payload) | nook cp - evil:/abs-dir 2>/dev/null || true
        [ "$(ls "$outside")" = secret ] || vm_die "cp $state wrote outside the container: $(ls "$outside")"
        [ "$(cat "$outside/secret")" = "host secret" ] || vm_die "cp $state changed a host file"
        [ "$state" = running ] && nook stop -t 0 evil >/dev/null
    done
    nook cp "evil:/$rel" "$base/victim/inside"
    for i in planted payload; do
        [ "$(cat "$base/victim/inside/$i")" = payload ] || vm_die "cp: $i did not land inside the container"
    done
    [ "$(cat "$base/victim/inside/secret")" = decoy ] || vm_die "cp: the container's decoy changed"
    # A malformed tar from the user is refused with a clear error.
    out=$(head -c 4096 /dev/zero | tr '\0' U | nook cp - evil:/tmp 2>&1) && vm_die "cp of garbage succeeded"
    grep -q "cannot extract the tar stream" <<<"$out" || vm_die "cp of garbage: '$out'"
    nook rm -f evil >/dev/null
    echo "volumes-vm: cp through hostile symlinks, running and stopped, and a malformed tar: ok" >&2
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-volumes-vm
    exit 0
fi

for tool in mkfs.erofs mkfs.ext4 busybox runuser; do
    command -v "$tool" >/dev/null || vm_die "'$tool' is missing; run tests/setup.sh"
done
virtiofsd=${NOOK_VIRTIOFSD:-$(install_virtiofsd)}
[ -x "$virtiofsd" ] || vm_die "virtiofsd $virtiofsd is not an executable"
vm_user_work volumes-vm
cp "$virtiofsd" "$WORK/bin/virtiofsd"
mkinitramfs=$(workspace_executable example mkinitramfs) || vm_die "could not build mkinitramfs"
"$mkinitramfs" "$WORK/bin/nook-agent" "$WORK/agent.cpio" >/dev/null
test_bin=$(workspace_executable test vmm_fs_boot) || vm_die "could not build the vmm_fs_boot test"
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

tests/rig/run.sh --rw "$WORK" --timeout 2700 -- "$PWD/tests/vm/volumes-vm.sh" --in-rig
echo "volumes-vm: ok"
