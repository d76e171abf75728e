#!/usr/bin/env bash
# Build nook's guest kernel: Debian's linux-source-6.1, `make tinyconfig` + nook.config merged on
# top + olddefconfig, then an ELF vmlinux with a PVH entry point. The result is cached under
#   ${XDG_CACHE_HOME:-~/.cache}/nook/kernel/<key>/vmlinux
# where <key> hashes the source package version, the fragment and this script, so a change to any
# of them builds a new kernel. Progress goes to stderr; the last line on stdout is the vmlinux path.
#
# Environment: NOOK_KERNEL_JOBS (default: nproc) parallel make jobs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/nook.config
script=$here/build.sh
pkg=linux-source-6.1
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nook/kernel
jobs=${NOOK_KERNEL_JOBS:-$(nproc)}

log() { echo "guest-kernel: $*" >&2; }
die() {
    echo "guest-kernel: error: $*" >&2
    exit 1
}

for tool in make gcc flex bison bc xz tar readelf sha256sum flock; do
    command -v "$tool" >/dev/null || die "'$tool' is missing; run tests/setup.sh (it installs the build dependencies)"
done
[ -f "$fragment" ] || die "config fragment $fragment is missing"
mkdir -p "$cache"

# The source: the installed package's tarball, else the package fetched rootless into the cache.
tarball=/usr/src/$pkg.tar.xz
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && [ -f "$tarball" ]; then
    version=$(dpkg-query -W -f='${Version}' "$pkg")
else
    debdir=$cache/deb
    mkdir -p "$debdir"
    log "$pkg is not installed; fetching it with apt-get download"
    (cd "$debdir" && apt-get download "$pkg" >&2) || die "could not download $pkg (is the Debian archive reachable?)"
    deb=$(ls -t "$debdir"/"$pkg"_*.deb | head -n1)
    version=$(dpkg-deb -f "$deb" Version)
    tarball=$debdir/$pkg-$version.tar.xz
    if [ ! -f "$tarball" ]; then
        dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$pkg.tar.xz" >"$tarball.tmp" ||
            die "$deb does not contain usr/src/$pkg.tar.xz"
        mv "$tarball.tmp" "$tarball"
    fi
fi

key=$({
    echo "$pkg $version"
    cat "$fragment" "$script"
} | sha256sum | cut -c1-16)
out=$cache/$key
# nook finds the kernel of the latest build through this pointer (runtime/src/isolation/vm/kernel.rs).
record_latest() {
    echo "$key" >"$cache/.latest.tmp"
    mv -f "$cache/.latest.tmp" "$cache/latest"
}
if [ -f "$out/vmlinux" ] && [ -f "$out/config" ]; then
    log "cached kernel for $pkg $version, key $key"
    record_latest
    echo "$out/vmlinux"
    exit 0
fi

# One build at a time per cache: concurrent callers wait, then find the result cached.
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/vmlinux" ]; then
    record_latest
    echo "$out/vmlinux"
    exit 0
fi

src=$cache/src/$pkg-$version
if [ ! -f "$src/.nook-extracted" ]; then
    log "extracting $tarball"
    rm -rf "$src"
    mkdir -p "$src"
    tar -xJf "$tarball" -C "$src" --strip-components=1
    touch "$src/.nook-extracted"
fi

# The object tree is shared by all keys of one source version: a fragment change rebuilds only
# what the changed options touch.
obj=$cache/obj/$pkg-$version
mkdir -p "$obj"
kmake() { make -C "$src" O="$obj" ARCH=x86_64 "$@" >&2; }

log "configuring (tinyconfig + $(basename "$fragment"))"
rm -f "$obj/.config"
kmake -s tinyconfig
(cd "$obj" && KCONFIG_CONFIG="$obj/.config" "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment" >&2)
kmake -s olddefconfig

# kconfig silently drops options whose dependencies are unmet: check every line of the fragment.
missing=()
while IFS= read -r line; do
    case "$line" in
    CONFIG_*=*)
        grep -qxF -- "$line" "$obj/.config" || missing+=("$line (final: $(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo "absent"))")
        ;;
    "# CONFIG_"*" is not set")
        opt=${line#\# }
        opt=${opt%% *}
        if grep -qE "^$opt=" "$obj/.config"; then
            missing+=("$line (final: $(grep -E "^$opt=" "$obj/.config"))")
        fi
        ;;
    esac
done <"$fragment"
if [ "${#missing[@]}" -ne 0 ]; then
    printf 'guest-kernel: error: option not as asked: %s\n' "${missing[@]}" >&2
    die "the final .config differs from $(basename "$fragment") in ${#missing[@]} option(s); a dependency is probably missing from the fragment"
fi

log "building vmlinux with $jobs jobs (several minutes)"
start=$(date +%s)
kmake -j"$jobs" vmlinux
log "built in $(($(date +%s) - start)) s"

# The VMM enters the kernel through PVH: the ELF must carry the Xen PHYS32_ENTRY note (type 0x12).
readelf -n "$obj/vmlinux" | grep -A1 -E '^\s*Xen' | grep -qiE '0x00000012|PHYS32_ENTRY' ||
    die "$obj/vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"

tmp=$cache/.tmp-$key
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$obj/vmlinux" "$tmp/vmlinux"
cp "$obj/.config" "$tmp/config"
echo "$pkg $version" >"$tmp/source"
rm -rf "$out"
mv -T "$tmp" "$out"
record_latest
log "kernel cached under $out ($(du -h "$out/vmlinux" | cut -f1))"
echo "$out/vmlinux"
