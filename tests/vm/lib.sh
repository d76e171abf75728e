# Shared by the tests/vm/ scripts. Source it from the repository root after tests/lib/common.sh.
# These scripts run in two halves: the outer half prepares files on this machine, then runs the
# script again through tests/rig/run.sh (nested rig, or natively on a VT-x/AMD-V host) where QEMU
# microvm boots guests with KVM.

vm_die() {
    echo "$(basename "$0"): FAIL: $*" >&2
    exit 1
}
vm_log() { echo "$(basename "$0"): $*" >&2; }

# Cargo's target directory (CARGO_TARGET_DIR or the workspace's target/).
vm_target_dir() {
    cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# Path of nook's guest kernel (built and cached by guest-kernel/build.sh).
vm_kernel() {
    local out
    out=$(guest-kernel/build.sh) || vm_die "guest-kernel/build.sh failed"
    out=$(tail -n1 <<<"$out")
    [ -f "$out" ] || vm_die "guest-kernel/build.sh printed '$out', which is not a file"
    echo "$out"
}

# Path of nook's static guest agent (built by agent/build-static.sh).
vm_agent() {
    local out
    out=$(agent/build-static.sh) || vm_die "agent/build-static.sh failed"
    out=$(tail -n1 <<<"$out")
    [ -x "$out" ] || vm_die "agent/build-static.sh printed '$out', which is not an executable"
    echo "$out"
}

# Debian's cloud kernel (bzImage) and its modules, fetched rootless and cached, for comparisons.
# Prints the directory holding vmlinuz and modules/.
vm_debian_cloud_kernel() {
    local cache pkg dir tmp
    cache=$(nook_cache_dir)/debian-cloud-kernel
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
    [ -n "$pkg" ] || vm_die "apt-cache cannot resolve linux-image-cloud-amd64 (run apt-get update)"
    dir=$cache/$pkg
    if [ ! -f "$dir/.nook-complete" ]; then
        mkdir -p "$cache"
        tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
        (cd "$tmp" && timeout 600 apt-get download "$pkg" >&2) || vm_die "apt-get download $pkg failed"
        dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
        mkdir -p "$tmp/out"
        cp "$tmp"/x/boot/vmlinuz-* "$tmp/out/vmlinuz"
        cp "$tmp"/x/boot/config-* "$tmp/out/config"
        mv "$tmp"/x/lib/modules/* "$tmp/out/modules"
        touch "$tmp/out/.nook-complete"
        rm -rf "$dir"
        mv -T "$tmp/out" "$dir"
        rm -rf "$tmp"
    fi
    echo "$dir"
}

# vm_busybox_initramfs DIR OUT: packs DIR (which holds /init) with a static busybox as an
# uncompressed cpio newc archive.
vm_busybox_initramfs() {
    local dir=$1 out=$2
    mkdir -p "$dir/bin"
    cp "$(command -v busybox)" "$dir/bin/busybox"
    chmod +x "$dir/init"
    (cd "$dir" && find . | cpio -o -H newc --quiet >"$out") || vm_die "cannot pack $out"
}

# vm_microvm ARGS...: QEMU's microvm machine (the reference VMM) with KVM, no firmware tables
# (acpi=off: only then QEMU passes the virtio-mmio devices on the kernel command line), no
# default devices. Callers add -kernel, -initrd, -append, disks and consoles.
vm_microvm() {
    qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -nodefaults -no-user-config \
        -display none -no-reboot "$@"
}

# vm_user_work NAME TOOL...: the host half of the scripts that run nook as an unprivileged user
# in the rig. Picks that user (as root `nooktest`, created like the whole-program tests' one;
# otherwise the caller), checks TOOLs, builds nook and nook-vmm, and copies them, the static
# agent and the guest kernel (NOOK_KERNEL, else guest-kernel/build.sh) into bin/ of a fresh work
# directory that user can read wherever the checkout lives. Sets and exports TEST_USER and WORK;
# the directory is removed when the script succeeds and kept (and named) when it fails.
vm_user_work() {
    local name=$1 tool kernel agent target
    shift
    if [ "$(id -u)" -eq 0 ]; then
        TEST_USER=nooktest
        id "$TEST_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$TEST_USER"
    else
        TEST_USER=$(id -un)
    fi
    for tool in "$@"; do
        command -v "$tool" >/dev/null || vm_die "'$tool' is missing; run tests/setup.sh"
    done
    kernel=${NOOK_KERNEL:-$(vm_kernel)}
    [ -f "$kernel" ] || vm_die "kernel $kernel does not exist"
    agent=$(vm_agent)
    cargo build --release -p nook -p nook-vmm >&2
    target=$(vm_target_dir)
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/nook-$name.XXXXXX")
    # shellcheck disable=SC2064 # the name and directory are fixed now
    trap "status=\$?; [ \$status -eq 0 ] && rm -rf '$WORK' || echo '$name: files kept in $WORK' >&2" EXIT
    chmod 755 "$WORK"
    mkdir "$WORK/bin"
    cp "$target/release/nook" "$target/release/nook-vmm" "$agent" "$WORK/bin/"
    cp "$kernel" "$WORK/bin/vmlinux"
    chmod -R a+rX "$WORK/bin"
    export WORK TEST_USER
}

# vm_user_kvm: in the rig, lets TEST_USER open /dev/kvm, as a distribution's `kvm` group does.
vm_user_kvm() {
    chown "root:$(id -gn "$TEST_USER")" /dev/kvm
    chmod 660 /dev/kvm
}

# rig_clean DIR: after a script's checks passed in the rig, removes its directory on L1's own
# /tmp. That /tmp is L1's memory, which every later script served by the same L1 needs: the
# trees volumes-vm copies and each script's warm-start templates left there once starved a
# later script's VMs (a template build failing, a VM killed).
rig_clean() {
    case $1 in
    /tmp/nook-?*) rm -rf "$1" ;;
    *) vm_die "rig_clean: $1 is not a directory of L1's /tmp" ;;
    esac
}
