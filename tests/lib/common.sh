# Shared by tests/setup.sh and tests/run.sh. Source it from the repository root.

# Debian packages nook, its guest kernel build and its tests need.
NOOK_APT_PACKAGES=(
    build-essential pkg-config ca-certificates
    e2fsprogs erofs-utils busybox-static cpio zstd gzip tar acl uidmap
    flex bison bc libelf-dev libssl-dev linux-source-6.1
    qemu-system-x86 skopeo umoci debootstrap runc hyperfine time crun
    docker-registry apache2-utils openssl
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

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
