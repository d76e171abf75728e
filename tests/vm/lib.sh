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
