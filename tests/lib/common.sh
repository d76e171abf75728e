# Shared by tests/setup.sh and tests/run.sh. Source it from the repository root.

# Debian packages nook, its guest kernel build and its tests need.
NOOK_APT_PACKAGES=(
    build-essential pkg-config ca-certificates
    e2fsprogs erofs-utils busybox-static cpio zstd gzip tar acl uidmap
    flex bison bc libelf-dev libssl-dev linux-source-6.1
    qemu-system-x86 skopeo umoci debootstrap runc hyperfine time crun
    podman conmon slirp4netns containerd
    docker-registry apache2-utils openssl passt
    libseccomp-dev libcap-ng-dev
)

# The Rust virtiofsd (the VM column's virtio-fs backend): Debian 12 has no package, so it is
# built from crates.io at this pinned release into the cache, once per version. nook finds it
# there (runtime/src/isolation/vm/virtiofsd.rs holds the same version).
NOOK_VIRTIOFSD_VERSION=1.14.0

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian keeps the administration tools the test scripts call themselves (mkfs.ext4, mkfs.erofs,
# fsck.erofs, debugfs) in /usr/sbin and /sbin, which a normal user's PATH lacks. nook itself
# searches those directories on its own, and its tests hand it a PATH without them.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac

install_packages() {
    local missing=()
    local p
    for p in "${NOOK_APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    echo "nook: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Where slow artifacts are cached, keyed by their inputs.
nook_cache_dir() {
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/nook"
}

# Builds the pinned virtiofsd into the cache when missing (its build dependencies come with
# install_packages); prints its path.
install_virtiofsd() {
    local root bin
    root=$(nook_cache_dir)/virtiofsd-$NOOK_VIRTIOFSD_VERSION
    bin=$root/bin/virtiofsd
    if [ ! -x "$bin" ]; then
        echo "nook: building virtiofsd $NOOK_VIRTIOFSD_VERSION into $root (a few minutes)" >&2
        cargo install --quiet --locked --version "$NOOK_VIRTIOFSD_VERSION" --root "$root" virtiofsd >&2
    fi
    echo "$bin"
}

# Prints one change made to the machine.
host_change() { echo "nook: setup: $*" >&2; }

# Leaves the machine ready for a normal user where the distribution's defaults allow it, and
# prints each change: /dev/kvm owned by the kvm group (a udev rule keeps it so after a reboot)
# with the user in that group, /dev/net/tun usable by everyone (mode 0666, as on normal
# distributions), and subordinate uid/gid ranges for the user (rootless containers map them).
prepare_host() {
    local user
    user=$(id -un)
    if [ -e /dev/kvm ]; then
        if ! getent group kvm >/dev/null; then
            as_root groupadd --system kvm
            host_change "created the kvm group"
        fi
        if [ "$(stat -c %G /dev/kvm)" != kvm ] || [ "$(stat -c %a /dev/kvm)" != 660 ]; then
            as_root chgrp kvm /dev/kvm
            as_root chmod 0660 /dev/kvm
            host_change "/dev/kvm now belongs to the kvm group, mode 0660"
        fi
        if [ -d /etc/udev ] && [ ! -f /etc/udev/rules.d/60-nook-kvm.rules ]; then
            as_root mkdir -p /etc/udev/rules.d
            echo 'KERNEL=="kvm", GROUP="kvm", MODE="0660"' |
                as_root tee /etc/udev/rules.d/60-nook-kvm.rules >/dev/null
            host_change "added /etc/udev/rules.d/60-nook-kvm.rules (keeps that after a reboot)"
        fi
        if [ "$user" != root ] && ! id -nG "$user" | tr ' ' '\n' | grep -qx kvm; then
            as_root usermod --append --groups kvm "$user"
            host_change "added $user to the kvm group: log in again (or run 'newgrp kvm') to use /dev/kvm"
        fi
    fi
    if [ -e /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
        as_root chmod 0666 /dev/net/tun
        host_change "/dev/net/tun is now mode 0666, as on normal distributions"
        if [ -d /etc/udev ] && [ ! -f /etc/udev/rules.d/60-nook-tun.rules ]; then
            echo 'KERNEL=="tun", MODE="0666"' |
                as_root tee /etc/udev/rules.d/60-nook-tun.rules >/dev/null
            host_change "added /etc/udev/rules.d/60-nook-tun.rules"
        fi
    fi
    if [ "$user" != root ]; then
        local file flag start
        for file in /etc/subuid /etc/subgid; do
            if ! grep -q "^$user:\|^$(id -u):" "$file" 2>/dev/null; then
                flag=--add-subuids
                [ "$file" = /etc/subgid ] && flag=--add-subgids
                # The first 65536 ids after every range already given out.
                start=$(cat /etc/subuid /etc/subgid 2>/dev/null |
                    awk -F: 'BEGIN { m = 100000 } $2 + $3 > m { m = $2 + $3 } END { print m }')
                as_root usermod "$flag" "$start-$((start + 65535))" "$user"
                host_change "gave $user the subordinate ids $start-$((start + 65535)) in $file"
            fi
        done
    fi
}

# timed CMD...: runs CMD, then says how long it took (where a run's time goes, step by step).
timed() {
    local start=$SECONDS
    "$@"
    echo "nook: timed: $* took $((SECONDS - start)) s" >&2
}

# workspace_executable KIND NAME [CARGO-ARG]...: builds what `cargo test --workspace` builds and
# prints the path of its KIND (bin, example or test) NAME. The scripts' builds select the whole
# workspace and its tests on purpose: a narrower selection (`-p nook-tests --bin X`) makes cargo
# resolve other features of shared dependencies and compile most of the workspace once more.
workspace_executable() {
    local kind=$1 name=$2 only=() exe
    shift 2
    [ "$kind" != test ] || only=(--test "$name")
    exe=$(cargo test --workspace --locked "$@" "${only[@]}" --no-run --message-format=json |
        grep "\"kind\":\[\"$kind\"\]" | grep "\"name\":\"$name\"" | grep '"test":'"$([ "$kind" = test ] && echo true || echo false)" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
    [ -x "$exe" ] || {
        echo "nook: cannot build the workspace's $kind $name" >&2
        return 1
    }
    echo "$exe"
}
