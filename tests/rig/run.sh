#!/usr/bin/env bash
# tests/rig/run.sh: run a command where /dev/kvm can boot real Linux guests.
#
#   tests/rig/run.sh [--rw DIR]... [--timeout SECS] [--] CMD [ARG]...
#   tests/rig/run.sh --serve [--rw DIR]... [--timeout SECS]   (prints a rig's directory)
#   tests/rig/run.sh --stop RIGDIR
#
# If this machine's /dev/kvm is hardware virtualization (VT-x/AMD-V), CMD runs here, natively.
# Otherwise (no /dev/kvm, or a PVM /dev/kvm that cannot boot standard guests) CMD runs inside the
# nested rig: an L1 Linux under QEMU TCG emulating an AMD CPU with SVM + nested paging, whose own
# /dev/kvm is hardware-style and boots standard guests. L1 sees this machine's whole filesystem
# read-only (9p), each --rw DIR read-write at the same path, a private /tmp, and this shell's
# environment and working directory. CMD's stdout, stderr and exit status come back as its own.
# See tests/rig/README.md.
#
# One L1 for many commands: `--serve` boots an L1 that stays up and runs, one at a time, the
# commands other invocations hand it; it prints the rig's directory and returns once L1 serves
# (nothing, on a host that runs commands natively). With NOOK_RIG_SERVER set to that directory,
# this script hands CMD to that L1 instead of booting one, when each --rw DIR lies inside a
# directory the L1 shares read-write (it boots its own otherwise, and says so). Between two
# commands the L1 kills what the previous one left running. `--stop RIGDIR` powers it off.
#
# Environment:
#   NOOK_RIG_SERVER           a directory printed by --serve: hand commands to that L1
#   NOOK_RIG_STALL_SECS       seconds without a heartbeat from L1 before it counts as stalled and the
#                             command runs again in a fresh L1 of its own (default 300)
#   NOOK_RIG_ATTEMPTS         how many L1s a command may run in when they stall (default 3)
#   NOOK_RIG=auto|rig|native  auto (default) decides from /dev/kvm; rig forces the nested rig;
#                             native forces a native run (refused where /dev/kvm is PVM)
#   NOOK_RIG_MEM              L1 memory in MiB (default 2048)
#   NOOK_RIG_CPUS             L1 vCPUs (default 1)
#   NOOK_RIG_BOOT_TIMEOUT     seconds for L1 to come up to the point of running CMD (default 180)
#   NOOK_RIG_KEEP=1           keep the run directory (console log, initramfs) for debugging
#
# Exit status: CMD's; 125 with a "rig: error:" line on stderr when the rig itself fails.
set -euo pipefail
# This run's own arguments, for a run again in a fresh L1 after a stall.
rig_args=("$@")
rig_attempt=${NOOK_RIG_ATTEMPT:-1}

rig_die() {
    echo "rig: error: $*" >&2
    exit 125
}
rig_log() { echo "rig: $*" >&2; }

# rig_console DIR: the last lines of the L1 console (and QEMU's own messages) of rig DIR.
rig_console() {
    echo "rig: --- last lines of the L1 console ---" >&2
    tail -n 30 "$1/console.log" >&2 2>/dev/null || true
    # TCG lists the host CPU features it does not emulate: noise, not the cause of a failure.
    if grep -qv "TCG doesn't support requested feature" "$1/qemu.log" 2>/dev/null; then
        echo "rig: --- qemu ---" >&2
        grep -v "TCG doesn't support requested feature" "$1/qemu.log" | tail -n 10 >&2
    fi
}

# rig_stop RIGDIR: asks a serving L1 to power off once its current command (if any) is done,
# waits for it, kills QEMU after 60 s, and removes the rig's directory.
rig_stop() {
    local dir=$1 pid i
    [ -f "$dir/qemu.pid" ] || rig_die "$dir is not the directory of a serving rig (no qemu.pid)"
    pid=$(cat "$dir/qemu.pid")
    touch "$dir/results/stop"
    for ((i = 0; i < 120; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill "$pid" 2>/dev/null; then rig_log "the serving L1 did not power off within 60 s: QEMU killed"; fi
    if [ "${NOOK_RIG_KEEP:-0}" = 1 ]; then rig_log "kept $dir"; else rm -rf "$dir"; fi
}

# rig_command_script CMD...: the command as L1 runs it: this shell's environment (less what
# belongs to this machine's session or to the rig), its working directory, then CMD, run by this
# machine's own bash.
rig_command_script() {
    export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|TMPDIR|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS|SSH_[A-Z_]*|TERM|NOOK_RIG_SERVER)(=|$)'
    echo "export NOOK_IN_RIG=1 TERM=dumb"
    printf 'cd -- %q || exit 125\n' "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    echo
}

# rig_hand_over RIGDIR CMD...: runs CMD in the serving L1 of RIGDIR and exits with its status.
rig_hand_over() {
    local dir=$1 pid id new entry start rc
    shift
    pid=$(cat "$dir/qemu.pid")
    # One command at a time: the L1 runs them in order, and each caller waits for its own.
    exec 8>"$dir/hand-over.lock"
    flock 8
    id=$(date +%s%N)
    new=$dir/results/queue/.$id
    entry=$dir/results/queue/$id
    mkdir -p "$new"
    rig_command_script "$@" >"$new/cmd.sh"
    echo "$timeout_secs" >"$new/timeout"
    mv "$new" "$entry"
    start=$(date +%s)
    while [ ! -f "$entry/status" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rig_console "$dir"
            rig_die "the serving L1 stopped before the command finished"
        fi
        # 9p writes take this machine's clock: a heartbeat older than 5 minutes is an L1 whose
        # timers stopped. Its command cannot go on; it runs again in an L1 of its own.
        if [ $(($(date +%s) - $(stat -c %Y "$dir/results/heartbeat"))) -gt "${NOOK_RIG_STALL_SECS:-300}" ]; then
            cat "$entry/stdout" 2>/dev/null
            cat "$entry/stderr" >&2 2>/dev/null
            rig_console "$dir"
            kill "$pid" 2>/dev/null
            rig_log "!!! the serving L1 stalled (no heartbeat for ${NOOK_RIG_STALL_SECS:-300} s: its timers stopped);"
            rig_log "!!! the command above did not finish there and runs again in a fresh L1 of its own"
            flock -u 8
            return 1
        fi
        # L1 enforces the deadline itself; this one only catches an L1 that no longer can.
        if [ $(($(date +%s) - start)) -ge $((timeout_secs + 60)) ]; then
            rig_console "$dir"
            rig_die "the serving L1 did not end the command within ${timeout_secs} s"
        fi
        sleep 0.5
    done
    cat "$entry/stdout"
    cat "$entry/stderr" >&2
    rc=$(cat "$entry/status")
    [ ! -s "$entry/leftovers" ] ||
        rig_log "killed what the command left running in L1:$(tr '\n' ';' <"$entry/leftovers")"
    rm -rf "$entry"
    [ "$rc" != 124 ] || rig_die "the command did not finish within ${timeout_secs} s"
    rig_log "the command took $(($(date +%s) - start)) s in the serving L1"
    exit "$rc"
}

timeout_secs=1800
rw_dirs=()
serve=0
while [ $# -gt 0 ]; do
    case "$1" in
    --serve)
        serve=1
        shift
        ;;
    --stop)
        [ $# -eq 2 ] || rig_die "usage: tests/rig/run.sh --stop RIGDIR"
        rig_stop "$2"
        exit 0
        ;;
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
if [ "$serve" = 1 ]; then
    [ $# -eq 0 ] || rig_die "--serve takes no command"
    # A rig that serves a whole test run: its overall deadline is the run's.
    [ "$timeout_secs" != 1800 ] || timeout_secs=14400
else
    [ $# -gt 0 ] || rig_die "no command given (usage: tests/rig/run.sh [--rw DIR]... [--timeout SECS] [--] CMD...)"
fi

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
    # Nothing to serve: commands run here, one by one, without a rig.
    [ "$serve" = 0 ] || exit 0
    export NOOK_IN_RIG=0
    exec timeout --kill-after=10 "$timeout_secs" "$@"
fi

# A serving L1 runs CMD when it shares every --rw DIR read-write (the directory or one above it).
if [ "$serve" = 0 ] && [ -n "${NOOK_RIG_SERVER:-}" ]; then
    [ -f "$NOOK_RIG_SERVER/qemu.pid" ] && [ -f "$NOOK_RIG_SERVER/shares" ] ||
        rig_die "NOOK_RIG_SERVER=$NOOK_RIG_SERVER is not the directory of a serving rig"
    shared_all=1
    if ! kill -0 "$(cat "$NOOK_RIG_SERVER/qemu.pid")" 2>/dev/null; then
        rig_log "the serving L1 of $NOOK_RIG_SERVER is no longer running: booting an L1 for this command"
        shared_all=0
    fi
    for d in "${rw_dirs[@]}"; do
        [ "$shared_all" = 1 ] || break
        shared=0
        while IFS= read -r s; do
            case "$d/" in "$s"/*) shared=1 ;; esac
        done <"$NOOK_RIG_SERVER/shares"
        if [ "$shared" = 0 ]; then
            rig_log "the serving L1 does not share $d: booting an L1 for this command"
            shared_all=0
            break
        fi
    done
    [ "$shared_all" = 0 ] || rig_hand_over "$NOOK_RIG_SERVER" "$@" || true
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

if [ "$serve" = 1 ]; then
    # PID 1 of a serving L1: runs the commands handed over in results/queue, in order, each
    # under its own deadline, and kills what one leaves running before the next starts.
    cat >"$run/results/serve.sh" <<'SERVE'
#!/bin/bash
results=/.nook-rig/results
queue=$results/queue
mkdir -p "$queue"
# leftovers: kills every process but this one (kernel threads have no command line) and prints
# the command line of each.
leftovers() {
    local p cmd
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" != 1 ] || continue
        cmd=
        IFS= read -r -d '' cmd <"$p/cmdline" 2>/dev/null
        [ -n "$cmd" ] || continue
        kill -9 "${p#/proc/}" 2>/dev/null && echo " $cmd"
    done
}
echo serving >"$results/stage"
: >"$results/heartbeat"
while [ ! -e "$results/stop" ]; do
    next=
    for d in "$queue"/[0-9]*; do
        if [ -f "$d/cmd.sh" ] && [ ! -e "$d/status" ]; then
            next=$d
            break
        fi
    done
    if [ -z "$next" ]; then
        idle=$((${idle:-0} + 1))
        [ $((idle % 25)) != 0 ] || : >"$results/heartbeat"
        sleep 0.2
        continue
    fi
    read -r secs <"$next/timeout"
    # This machine's / is mounted with cache=loose: forget the unused dentries and inodes, so
    # that a file replaced here since L1 booted or ran the last command (/etc/passwd after a
    # useradd, a rebuilt binary) is looked up again rather than seen as it was.
    echo 2 >/proc/sys/vm/drop_caches
    timeout --kill-after=10 "$secs" /bin/bash "$next/cmd.sh" </dev/null >"$next/stdout" 2>"$next/stderr" &
    pid=$!
    # A heartbeat for the caller: an L1 whose timers stop (a rare stall of the emulation) stops
    # writing it, where a command that only waits does not.
    beat=0
    while read -r _ _ state _ 2>/dev/null <"/proc/$pid/stat" && [ "$state" != Z ]; do
        [ $((beat++ % 10)) != 0 ] || : >"$results/heartbeat"
        sleep 0.5
    done
    wait "$pid"
    echo $? >"$next/status.tmp"
    leftovers >"$next/leftovers"
    mv "$next/status.tmp" "$next/status"
done
sync
exec /.nook-rig/busybox reboot -f
SERVE
else
    rig_command_script "$@" >"$run/results/cmd.sh"
fi

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
for f in cmd.sh serve.sh; do
    [ ! -f "/results/$f" ] || cp "/results/$f" "/newroot/.nook-rig/$f"
done
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
[ ! -f .nook-rig/serve.sh ] || exec chroot . /bin/bash /.nook-rig/serve.sh
# The command, with a heartbeat for the caller as a serving L1 keeps one (see serve.sh).
exec chroot . /.nook-rig/busybox sh -c '
    r=/.nook-rig/results
    /bin/bash /.nook-rig/cmd.sh </dev/null >$r/stdout 2>$r/stderr &
    pid=$!
    while [ -e /proc/$pid ] && ! grep -q "^State:.Z" /proc/$pid/status 2>/dev/null; do
        : >$r/heartbeat
        sleep 5
    done
    wait $pid
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
# A serving L1 outlives this script: its QEMU gets no descriptor of the caller's (which would keep
# a caller's `$(...)` waiting) and its pid goes into the rig's directory for rig_stop.
timeout --kill-after=10 "$timeout_secs" qemu-system-x86_64 \
    -M q35 -accel tcg -cpu EPYC-v3,+svm,+npt \
    -m "${NOOK_RIG_MEM:-2048}" -smp "${NOOK_RIG_CPUS:-1}" \
    -display none -monitor none -serial "file:$run/console.log" -no-reboot \
    -kernel "$l1_dir/vmlinuz" -initrd "$run/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
    "${virtfs[@]}" </dev/null >"$run/qemu.log" 2>&1 8>&- 9>&- &
qemu_pid=$!
show_console() { rig_console "$run"; }

if [ "$serve" = 1 ]; then
    while ! grep -qs serving "$run/results/stage"; do
        if ! kill -0 "$qemu_pid" 2>/dev/null; then
            show_console
            rig_die "L1 stopped before it served (stage: $(cat "$run/results/stage" 2>/dev/null || echo none))"
        fi
        if [ -f "$run/results/error" ] || [ $(($(date +%s) - start)) -ge "$boot_timeout" ]; then
            show_console
            rig_die "L1 did not come up within ${boot_timeout} s (stage: $(cat "$run/results/stage" 2>/dev/null || echo none); $(cat "$run/results/error" 2>/dev/null))"
        fi
        sleep 0.5
    done
    echo "$qemu_pid" >"$run/qemu.pid"
    printf '%s\n' "${rw_dirs[@]}" >"$run/shares"
    trap - EXIT
    rig_log "L1 serves commands from $run (up in $(($(date +%s) - start)) s)"
    echo "$run"
    exit 0
fi

# Wait for L1 to start the command (boot deadline), then for the command to end (overall deadline).
# An L1 whose heartbeat stops has stalled (see tests/rig/README.md): the command runs again in a
# fresh L1, up to NOOK_RIG_ATTEMPTS L1s in all.
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ ! -f "$run/results/stage" ] || ! grep -q running "$run/results/stage"; then
        if [ $(($(date +%s) - start)) -ge "$boot_timeout" ]; then
            show_console
            rig_die "L1 did not come up within ${boot_timeout} s (stage: $(cat "$run/results/stage" 2>/dev/null || echo none))"
        fi
    elif [ -f "$run/results/heartbeat" ] && [ ! -f "$run/results/status" ] &&
        [ $(($(date +%s) - $(stat -c %Y "$run/results/heartbeat"))) -gt "${NOOK_RIG_STALL_SECS:-300}" ]; then
        cat "$run/results/stdout" 2>/dev/null || true
        cat "$run/results/stderr" >&2 2>/dev/null || true
        show_console
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
        [ "$rig_attempt" -lt "${NOOK_RIG_ATTEMPTS:-3}" ] ||
            rig_die "L1 stalled (no heartbeat for ${NOOK_RIG_STALL_SECS:-300} s) in each of $rig_attempt attempts"
        rig_log "!!! L1 stalled (no heartbeat for ${NOOK_RIG_STALL_SECS:-300} s: its timers stopped);"
        rig_log "!!! the command above did not finish there and runs again in a fresh L1 (attempt $((rig_attempt + 1)))"
        cleanup
        trap - EXIT
        NOOK_RIG_ATTEMPT=$((rig_attempt + 1)) exec "$0" "${rig_args[@]}"
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
