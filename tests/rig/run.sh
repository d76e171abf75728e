#!/usr/bin/env bash
# tests/rig/run.sh: run a command where /dev/kvm can boot real Linux guests.
#
#   tests/rig/run.sh [--rw DIR]... [--timeout SECS] [--] CMD [ARG]...
#
# If this machine's /dev/kvm is hardware virtualization (VT-x/AMD-V), CMD runs here, natively.
# Otherwise (no /dev/kvm, or a PVM /dev/kvm that cannot boot standard guests) CMD runs inside the
# nested rig: an L1 Linux under QEMU TCG emulating an AMD CPU with SVM + nested paging, whose own
# /dev/kvm is hardware-style and boots standard guests. L1 sees this machine's whole filesystem
# read-only (9p), each --rw DIR read-write at the same path, a private /tmp, and this shell's
# environment and working directory. CMD's stdout, stderr and exit status come back as its own.
# See tests/rig/README.md.
#
# Environment:
#   NOOK_RIG=auto|rig|native  auto (default) decides from /dev/kvm; rig forces the nested rig;
#                             native forces a native run (refused where /dev/kvm is PVM)
#   NOOK_RIG_MEM              L1 memory in MiB (default 2048)
#   NOOK_RIG_CPUS             L1 vCPUs (default 1)
#   NOOK_RIG_BOOT_TIMEOUT     seconds for L1 to come up to the point of running CMD (default 180)
#   NOOK_RIG_KEEP=1           keep the run directory (console log, initramfs) for debugging
#
# Exit status: CMD's; 125 with a "rig: error:" line on stderr when the rig itself fails.
set -euo pipefail

rig_die() {
    echo "rig: error: $*" >&2
    exit 125
}
rig_log() { echo "rig: $*" >&2; }

timeout_secs=1800
rw_dirs=()
while [ $# -gt 0 ]; do
    case "$1" in
    --rw)
        [ $# -ge 2 ] || rig_die "--rw needs a directory"
        [ -d "$2" ] || rig_die "--rw $2: not a directory"
        rw_dirs+=("$(cd "$2" && pwd -P)")
        shift 2
        ;;
    --timeout)
        [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || rig_die "--timeout needs a number of seconds"
        timeout_secs=$2
        shift 2
        ;;
    --)
        shift
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 0
        ;;
    -*) rig_die "unknown option $1 (see --help)" ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || rig_die "no command given (usage: tests/rig/run.sh [--rw DIR]... [--timeout SECS] [--] CMD...)"

# L1 mounts its own /tmp, /var/tmp and /run over the host's: a checkout or working directory
# under one of them (a CI clone in /tmp, say) would be invisible there. Share such a directory
# read-write at the same path, before the --rw ones so that a --rw inside it stays visible.
auto_dirs=()
share_if_private() {
    local d r
    d=$(cd "$1" 2>/dev/null && pwd -P) || return 0
    case "$d/" in
    /tmp/?* | /var/tmp/?* | /run/?*) ;;
    *) return 0 ;;
    esac
    for r in "${auto_dirs[@]}"; do
        case "$d/" in "$r"/*) return 0 ;; esac
    done
    auto_dirs+=("$d")
}
share_if_private "$(dirname "$0")/../.."
share_if_private "$PWD"
rw_dirs=("${auto_dirs[@]}" "${rw_dirs[@]}")

# --- Where to run --------------------------------------------------------------------------------

# Prints "native" when /dev/kvm here boots standard guests, else the reason it does not.
kvm_native_check() {
    if [ -d /sys/module/kvm_pvm ]; then
        echo "/dev/kvm is PVM (kvm_pvm), which cannot boot standard guest kernels"
    elif [ ! -e /dev/kvm ]; then
        echo "there is no /dev/kvm"
    elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        echo "/dev/kvm is not readable and writable by $(id -un)"
    elif ! grep -qw -e vmx -e svm /proc/cpuinfo; then
        echo "the CPU shows neither vmx nor svm"
    else
        echo native
    fi
}

mode=${NOOK_RIG:-auto}
case "$mode" in
auto)
    why=$(kvm_native_check)
    if [ "$why" = native ]; then
        mode=native
    else
        rig_log "running in the nested rig: $why"
        mode=rig
    fi
    ;;
native)
    [ ! -d /sys/module/kvm_pvm ] || rig_die "NOOK_RIG=native refused: /dev/kvm is PVM and cannot boot standard guests"
    ;;
rig) ;;
*) rig_die "NOOK_RIG=$mode: expected auto, rig or native" ;;
esac

if [ "$mode" = native ]; then
    export NOOK_IN_RIG=0
    exec timeout --kill-after=10 "$timeout_secs" "$@"
fi

# --- The L1 kernel: Debian's generic kernel (it has 9p), fetched rootless and cached -------------

for tool in qemu-system-x86_64 busybox cpio apt-get apt-cache dpkg-deb timeout sha256sum; do
    command -v "$tool" >/dev/null || rig_die "'$tool' is missing; run tests/setup.sh"
done
busybox_bin=$(command -v busybox)
file "$busybox_bin" 2>/dev/null | grep -q 'statically linked' ||
    ldd "$busybox_bin" 2>&1 | grep -q 'not a dynamic executable' ||
    rig_die "$busybox_bin is not static; install busybox-static"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/nook/rig
mkdir -p "$cache"

l1_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
[ -n "$l1_pkg" ] || rig_die "apt-cache cannot resolve linux-image-amd64 to a kernel package (run apt-get update)"
l1_dir=$cache/$l1_pkg
if [ ! -f "$l1_dir/.nook-complete" ]; then
    exec 9>"$cache/.lock"
    flock 9
    if [ ! -f "$l1_dir/.nook-complete" ]; then
        rig_log "fetching $l1_pkg (L1 kernel, once)"
        tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
        (cd "$tmp" && timeout 600 apt-get download "$l1_pkg" >&2) || rig_die "apt-get download $l1_pkg failed"
        dpkg-deb -x "$tmp"/"$l1_pkg"_*.deb "$tmp/x"
        mkdir -p "$tmp/out"
        cp "$tmp"/x/boot/vmlinuz-* "$tmp/out/vmlinuz"
        mv "$tmp"/x/lib/modules/* "$tmp/out/modules"
        touch "$tmp/out/.nook-complete"
        rm -rf "$l1_dir"
        mv -T "$tmp/out" "$l1_dir"
        rm -rf "$tmp"
    fi
    exec 9>&-
fi

# Modules L1 needs, and the order to load them in: each .ko's own `depends=` (the .deb ships no
# modules.dep) decides, so a kernel update that adds a dependency still loads.
# 9pnet_virtio is the transport 9p asks for at mount time (no depends= link to it); overlay is
# for the namespace column of commands run there; dummy gives L1 a stand-in outside route (below).
wanted=(virtio_pci 9pnet_virtio 9p kvm-amd overlay dummy)
declare -A ko_path=()
while IFS= read -r f; do
    n=${f##*/}
    n=${n%.ko}
    ko_path[${n//-/_}]=$f
done < <(find "$l1_dir/modules" -name '*.ko')
[ "${#ko_path[@]}" -gt 0 ] || rig_die "$l1_dir/modules holds no .ko files (compressed modules are not supported)"
order=()
declare -A seen=()
add_module() {
    local n=${1//-/_} dep deps
    [ -z "${seen[$n]:-}" ] || return 0
    seen[$n]=1
    [ -n "${ko_path[$n]:-}" ] || rig_die "module $n is not in $l1_pkg"
    deps=$(tr '\0' '\n' <"${ko_path[$n]}" | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do add_module "$dep"; done
    order+=("$n")
}
for m in "${wanted[@]}"; do add_module "$m"; done

# --- The run directory: initramfs, command script, results (shared with L1 read-write) -----------

run=$(mktemp -d "${TMPDIR:-/tmp}/nook-rig.XXXXXX")
qemu_pid=
cleanup() {
    [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
    if [ "${NOOK_RIG_KEEP:-0}" = 1 ]; then rig_log "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
mkdir -p "$run/results" "$run/initramfs/bin" "$run/initramfs/mods"

# The command as L1 runs it: this shell's environment (less what belongs to this machine's
# session), its working directory, then CMD, run by this machine's own bash.
{
    export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|TMPDIR|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS|SSH_[A-Z_]*|TERM)(=|$)'
    echo "export NOOK_IN_RIG=1 TERM=dumb"
    printf 'cd -- %q || exit 125\n' "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    echo
} >"$run/results/cmd.sh"

cp "$busybox_bin" "$run/initramfs/bin/busybox"
for n in "${order[@]}"; do cp "${ko_path[$n]}" "$run/initramfs/mods/$n.ko"; done
echo "${order[*]}" >"$run/initramfs/modules"
rw_i=0
for d in "${rw_dirs[@]}"; do
    echo "rw$rw_i $d" >>"$run/initramfs/rw"
    rw_i=$((rw_i + 1))
done
touch "$run/initramfs/rw"
cat >"$run/initramfs/init" <<'INIT'
#!/bin/busybox sh
# L1's PID 1: load modules, mount this machine's / (ro) and the shares, chroot, run the command.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /host /results /newroot /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
stage() { echo "$1" >/results/stage 2>/dev/null; echo "rig-l1: $1"; }
fail() {
    echo "rig-l1: error: $1"
    echo "$1" >/results/error 2>/dev/null
    sync
    reboot -f
}
for m in $(cat /modules); do
    insmod "/mods/$m.ko" || fail "insmod $m failed"
done
# The 9p devices appear when virtio-pci has probed them: retry for a few seconds.
mount9p() {
    i=0
    until mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$3" "$1" "$2" 2>/tmp/mount.err; do
        i=$((i + 1))
        [ $i -lt 50 ] || fail "cannot mount 9p share $1 on $2: $(cat /tmp/mount.err)"
        sleep 0.1
    done
}
mount9p results /results rw
stage "modules loaded"
mount9p hostroot /host ro,cache=loose
mount -t tmpfs -o mode=0755 root /newroot
for p in /host/* /host/.[!.]*; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    n=${p#/host/}
    case "$n" in proc | sys | dev | run | tmp) continue ;; esac
    if [ -L "$p" ]; then
        ln -s "$(readlink "$p")" "/newroot/$n"
    elif [ -d "$p" ]; then
        mkdir "/newroot/$n" && mount --rbind "$p" "/newroot/$n" || fail "cannot bind $n"
    fi
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/run /newroot/tmp /newroot/.nook-rig
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
ln -sf /proc/self/fd /newroot/dev/fd
ln -sf /proc/self/fd/0 /newroot/dev/stdin
ln -sf /proc/self/fd/1 /newroot/dev/stdout
ln -sf /proc/self/fd/2 /newroot/dev/stderr
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
mount -t tmpfs -o mode=0755 run /newroot/run
[ ! -d /newroot/var/tmp ] || mount -t tmpfs -o mode=1777 vartmp /newroot/var/tmp
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>/dev/null
while read -r tag dir; do
    mkdir -p "/newroot$dir" 2>/dev/null
    mount9p "$tag" "/newroot$dir" rw
done </rw
cp /results/cmd.sh /newroot/.nook-rig/cmd.sh
[ -c /dev/kvm ] || fail "/dev/kvm is missing after loading kvm-amd (does the L1 CPU have svm?)"
ip link set lo up 2>/dev/null
# L1 has no network device. User-mode network stacks (passt for a VM's virtio-net, pasta for a
# namespace) take the host's route as the outside and refuse to start without one: a dummy
# interface on TEST-NET-1 gives them one; traffic of the tests stays on 127.0.0.1.
ip link add nook-out0 type dummy || fail "cannot add the stand-in outside interface"
ip addr add 192.0.2.1/24 dev nook-out0 && ip link set nook-out0 up &&
    ip route add default via 192.0.2.254 || fail "cannot give L1 its stand-in default route"
stage "running"
# Make the new root the namespace's root (switch_root's way: move it over /, then chroot into
# it), not a chroot below the initramfs: the kernel refuses new user namespaces to a chrooted
# process, and the namespace column of the commands run here needs them. The results share comes
# along under /.nook-rig, and so does this initramfs' busybox for the rest of the script.
mkdir -p /newroot/.nook-rig/results
cp /bin/busybox /newroot/.nook-rig/busybox || fail "cannot copy busybox into the new root"
mount --bind /results /newroot/.nook-rig/results || fail "cannot bind the results share"
cd /newroot || fail "cannot enter the new root"
mount --move . / || fail "cannot move the new root over /"
exec chroot . /.nook-rig/busybox sh -c '
    /bin/bash /.nook-rig/cmd.sh </dev/null >/.nook-rig/results/stdout 2>/.nook-rig/results/stderr
    echo $? >/.nook-rig/results/status.tmp
    mv /.nook-rig/results/status.tmp /.nook-rig/results/status
    sync
    /.nook-rig/busybox reboot -f'
INIT
chmod +x "$run/initramfs/init"
(cd "$run/initramfs" && find . | cpio -o -H newc --quiet >"$run/initramfs.cpio") || rig_die "cannot pack the L1 initramfs"

# --- Boot L1 --------------------------------------------------------------------------------------

virtfs=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on"
    -virtfs "local,path=$run/results,mount_tag=results,security_model=none")
rw_i=0
for d in "${rw_dirs[@]}"; do
    virtfs+=(-virtfs "local,path=$d,mount_tag=rw$rw_i,security_model=none")
    rw_i=$((rw_i + 1))
done

boot_timeout=${NOOK_RIG_BOOT_TIMEOUT:-180}
start=$(date +%s)
timeout --kill-after=10 "$timeout_secs" qemu-system-x86_64 \
    -M q35 -accel tcg -cpu EPYC-v3,+svm,+npt \
    -m "${NOOK_RIG_MEM:-2048}" -smp "${NOOK_RIG_CPUS:-1}" \
    -display none -monitor none -serial "file:$run/console.log" -no-reboot \
    -kernel "$l1_dir/vmlinuz" -initrd "$run/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
    "${virtfs[@]}" </dev/null >"$run/qemu.log" 2>&1 &
qemu_pid=$!

show_console() {
    echo "rig: --- last lines of the L1 console ---" >&2
    tail -n 30 "$run/console.log" >&2 2>/dev/null || true
    # TCG lists the host CPU features it does not emulate: noise, not the cause of a failure.
    if grep -qv "TCG doesn't support requested feature" "$run/qemu.log" 2>/dev/null; then
        echo "rig: --- qemu ---" >&2
        grep -v "TCG doesn't support requested feature" "$run/qemu.log" | tail -n 10 >&2
    fi
}

# Wait for L1 to start the command (boot deadline), then for the command to end (overall deadline).
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ ! -f "$run/results/stage" ] || ! grep -q running "$run/results/stage"; then
        if [ $(($(date +%s) - start)) -ge "$boot_timeout" ]; then
            show_console
            rig_die "L1 did not come up within ${boot_timeout} s (stage: $(cat "$run/results/stage" 2>/dev/null || echo none))"
        fi
    fi
    sleep 0.5
done
wait "$qemu_pid" && qemu_rc=0 || qemu_rc=$?
qemu_pid=

[ ! -f "$run/results/stdout" ] || cat "$run/results/stdout"
[ ! -f "$run/results/stderr" ] || cat "$run/results/stderr" >&2
if [ -f "$run/results/error" ]; then
    show_console
    rig_die "L1 failed: $(cat "$run/results/error")"
fi
if [ ! -f "$run/results/status" ]; then
    show_console
    if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
        rig_die "the command did not finish within ${timeout_secs} s"
    fi
    rig_die "L1 stopped (qemu exit $qemu_rc) before the command finished (stage: $(cat "$run/results/stage" 2>/dev/null || echo none))"
fi
rig_log "L1 run took $(($(date +%s) - start)) s"
exit "$(cat "$run/results/status")"
