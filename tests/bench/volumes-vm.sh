#!/usr/bin/env bash
# I/O through a shared directory (virtio-fs) in a VM container against QEMU, in the nested KVM
# rig (natively on a VT-x/AMD-V host), as an unprivileged user, alternated round by round:
# - nook: `nook run --rm --isolation=vm --network none -v DIR:/data busybox sh -c SCRIPT`: nook's
#   VMM and its vhost-user-fs device, the virtiofsd nook starts with its own arguments;
# - QEMU: microvm with guest RAM in a shared memfd, `-chardev socket` and
#   `-device vhost-user-fs-device` (QEMU's default queue size), the same virtiofsd binary started
#   with the arguments nook gives it (runtime/src/isolation/vm/virtiofsd.rs), the same guest
#   kernel, memory (256 MiB) and vCPUs (1) as nook's default VM, and a busybox /init that mounts
#   the tag at /data and runs the same SCRIPT.
# Each round boots each VM twice: once to write (BYTES with `dd bs=1M conv=fsync`, then FILES
# small files and a `sync`), once more to read them back (`dd` of the big file, `cat` of the small
# ones), so the reads start from a cold guest page cache without dropping caches in the guest.
# Every phase is timed inside the guest by busybox's `time` (10 ms resolution), so boot time is
# not in the figures. DIR lies on the rig's own /tmp (a tmpfs): what is measured is the path
# guest -> virtio-fs -> virtiofsd, not a disk. Under the rig's emulation only the ratios mean
# anything.
#
# Then `nook cp` of a tree (CP_MIB MiB: three quarters in one file, the rest in files of 100 KiB
# in 8 directories, the 1 GiB tree of tests/bench/volumes.sh scaled down) into and out of a
# running VM container, against `tar -C tree -c . | tar -C out -x` of the same tree on the
# machine that runs the VMs, CP_ROUNDS times alternated, each copy checked with `cmp` and
# `diff -r`.
#
#   tests/bench/volumes-vm.sh [ROUNDS] [BYTES] [FILES] [CP_MIB] [CP_ROUNDS]
#       defaults 4, 67108864 (64 MiB), 1000, 32, 3; BYTES a multiple of 1 MiB; ROUNDS 0 runs
#       only the copies, CP_MIB 0 only the I/O (each says so in its output)
# The defaults fit the rig, where a small file costs about 80 ms per write and per read and a
# MiB about 0.5 s to write; the issue's 1 GiB and 10 000 files are for a native KVM host.
# Environment: NOOK_KERNEL (default: guest-kernel/build.sh), NOOK_VIRTIOFSD (default: the pinned
# build tests/setup.sh installs), NOOK_RIG_MEM (default: 2048 MiB plus BYTES and 3 CP_MIB).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

PHASES="seqwrite smallwrite seqread smallread"

die() {
    echo "volumes-vm bench: FAIL: $*" >&2
    if [ -n "${BASE:-}" ]; then
        for f in "$BASE"/root/containers/*/vmm.log "$BASE"/root/containers/*/virtiofsd-*.log \
            "$BASE"/peer-*.log "$BASE"/out-*.txt; do
            [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    exit 1
}
# In the rig, progress also goes to the shared work directory, readable while the rig runs.
log() { echo "volumes-vm bench: $*" | tee -a "${WORK:-/dev/null}/progress.log" >&2; }

as_user() {
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
        HOME="$BASE" NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" \
        XDG_CACHE_HOME="$BASE/cache" NOOK_KERNEL="$BASE/bin/vmlinux" \
        NOOK_AGENT="$BASE/bin/nook-agent" NOOK_VIRTIOFSD="$BASE/bin/virtiofsd" \
        NOOK_ISOLATION=vm "$@"
}
nook() { as_user timeout -k 10 1200 "$BASE/bin/nook" "$@"; }

# wait_for CMD TEXT: until TEXT shows in what the command prints (at most 60 s).
wait_for() {
    local i
    for i in $(seq 600); do
        if eval "$1" 2>/dev/null | grep -q "$2"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# median FILE: of the numbers in FILE, one a line (the mean of the middle two for an even count).
median() { sort -n "$1" | awk '{a[NR]=$1} END {print NR % 2 ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }

# io_script write|read: the guest's I/O in /data, each phase timed by busybox's `time`, which
# prints `nook-bench PHASE SECONDS` on stderr.
io_script() {
    local mib=$((BYTES / 1048576))
    case $1 in
    write)
        cat <<EOF
cd /data || exit 1
time -f 'nook-bench seqwrite %e' sh -c 'dd if=/dev/zero of=big bs=1048576 count=$mib conv=fsync' || exit 1
mkdir small || exit 1
time -f 'nook-bench smallwrite %e' sh -c 'cd small && i=0 && while [ \$i -lt $FILES ]; do echo \$i >f\$i || exit 1; i=\$((i+1)); done && sync' || exit 1
echo nook-bench-done
EOF
        ;;
    read)
        cat <<EOF
cd /data || exit 1
time -f 'nook-bench seqread %e' sh -c 'dd if=big of=/dev/null bs=1048576' || exit 1
time -f 'nook-bench smallread %e' sh -c 'cd small && cat f* >/dev/null' || exit 1
echo nook-bench-done
EOF
        ;;
    esac
}

# record SIDE OUTPUT-FILE: appends each phase's milliseconds to $BASE/SIDE.PHASE.
record() {
    local side=$1 out=$2 phase ms
    grep -q nook-bench-done "$out" || die "$side: the guest's script did not finish: $(tail -n 5 "$out")"
    for phase in $PHASES; do
        ms=$(awk -v p="$phase" '$1 == "nook-bench" && $2 == p { printf "%d\n", $3 * 1000 + 0.5 }' "$out")
        [ -n "$ms" ] || continue
        echo "$ms" >>"$BASE/$side.$phase"
    done
}

# check_written: the host sees what the guest wrote; then clean_data empties the directory.
check_written() {
    local size count
    size=$(stat -c %s "$BASE/data/big")
    count=$(find "$BASE/data/small" -type f | wc -l)
    [ "$size" = "$BYTES" ] && [ "$count" = "$FILES" ] ||
        die "$1: the host sees a file of $size bytes and $count small files, not $BYTES and $FILES"
    [ "$(stat -c %U "$BASE/data/big")" = "$TEST_USER" ] || die "$1: the big file is not the user's"
}
clean_data() {
    rm -rf "$BASE/data"
    mkdir "$BASE/data"
    chown "$TEST_USER" "$BASE/data"
}

# One round of nook: writes, then reads in a second container (a fresh VM).
round_nook() {
    local mode out
    for mode in write read; do
        out=$BASE/out-nook-$mode.txt
        nook run --rm --network none -v "$BASE/data:/data" busybox sh -c "$(io_script $mode)" \
            >"$out" 2>&1 || die "nook run ($mode) failed: $(tail -n 5 "$out")"
        record nook "$out"
        if [ $mode = write ]; then
            check_written nook
        fi
    done
    clean_data
}

# id_maps: virtiofsd's --uid-map and --gid-map as nook passes them: the user as root, guest ids
# 1... as its subordinate ids when it has them (and newuidmap is installed).
id_maps() {
    local su sg
    echo "--uid-map=:0:$(id -u "$TEST_USER"):1:"
    su=$(awk -F: -v u="$TEST_USER" '$1 == u { print $2 ":" $3 }' /etc/subuid)
    sg=$(awk -F: -v u="$TEST_USER" '$1 == u { print $2 ":" $3 }' /etc/subgid)
    if [ -n "$su" ] && [ -n "$sg" ] && command -v newuidmap >/dev/null && command -v newgidmap >/dev/null; then
        echo "--uid-map=:1:$su:"
    fi
    echo "--gid-map=:0:$(id -g "$TEST_USER"):1:"
    if [ -n "$su" ] && [ -n "$sg" ] && command -v newuidmap >/dev/null && command -v newgidmap >/dev/null; then
        echo "--gid-map=:1:$sg:"
    fi
}

# One boot of QEMU with virtiofsd serving $BASE/data; its /init runs the MODE script.
boot_qemu() {
    local mode=$1 socket=$BASE/run/peer-fs.sock out=$BASE/out-qemu-$1.txt fsd_pid
    rm -f "$socket" "$out"
    # The arguments nook gives virtiofsd (virtiofsd::args) for a read-write share as a normal user.
    as_user "$BASE/bin/virtiofsd" "--socket-path=$socket" "--shared-dir=$BASE/data" \
        --sandbox=namespace --log-level=error $(id_maps) \
        </dev/null >/dev/null 2>"$BASE/peer-virtiofsd.log" &
    fsd_pid=$!
    wait_for "ls $socket" peer-fs.sock || die "virtiofsd never made its socket"
    as_user timeout 1200 qemu-system-x86_64 -M microvm,acpi=off,memory-backend=mem \
        -object memory-backend-memfd,id=mem,size=256M,share=on -enable-kvm -cpu host -nodefaults \
        -no-user-config -display none -no-reboot -m 256 -smp 1 -device i8042 \
        -kernel "$BASE/bin/vmlinux" -initrd "$BASE/peer-$mode.cpio" \
        -append "console=ttyS0 reboot=k panic=-1 rdinit=/init quiet" \
        -serial "file:$out" \
        -chardev "socket,id=fs0,path=$socket" -device vhost-user-fs-device,chardev=fs0,tag=data \
        >/dev/null 2>"$BASE/peer-qemu.log" || die "QEMU ($mode) failed: $(tail -n 5 "$BASE/peer-qemu.log")"
    # virtiofsd exits when QEMU's connection closes.
    wait "$fsd_pid" || true
    record qemu "$out"
}
round_qemu() {
    boot_qemu write
    check_written QEMU
    boot_qemu read
    clean_data
}

# peer_initramfs MODE: a busybox /init that mounts the tag `data` at /data, runs the MODE script
# as nook's container does (sh -c), and powers off.
peer_initramfs() {
    local dir=$BASE/peer-$1
    mkdir -p "$dir"
    {
        cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /data
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t virtiofs data /data || echo "nook-bench: mount failed"
INIT
        echo 'sh /io.sh'
        echo 'reboot -f'
    } >"$dir/init"
    io_script "$1" >"$dir/io.sh"
    vm_busybox_initramfs "$dir" "$BASE/peer-$1.cpio"
}

in_rig() {
    BASE=/tmp/nook-bench-volumes-vm
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run" "$BASE/data"
    cp "$WORK"/bin/* "$BASE/bin/"
    peer_initramfs write
    peer_initramfs read
    chown -R "$TEST_USER" "$BASE"
    chown "root:$(id -gn "$TEST_USER")" /dev/kvm
    chmod 660 /dev/kvm
    nook image default >/dev/null
    if [ "$ROUNDS" = 0 ]; then
        echo "virtio-fs I/O against QEMU: not measured (ROUNDS 0)"
    else
        io_rounds
    fi
    if [ "$CP_MIB" = 0 ]; then
        echo "nook cp: not measured (CP_MIB 0)"
    else
        cp_bench
    fi
}

# The I/O rounds, nook and QEMU alternated, and their medians.
io_rounds() {
    log "$BYTES bytes and $FILES small files per round, $ROUNDS rounds"
    local i phase
    for i in $(seq "$ROUNDS"); do
        # Alternating which goes first (an even ROUNDS gives each the first place equally often):
        # in the rig the second VM of a round often ran slower or faster by a third.
        if ((i % 2 == 1)); then
            round_nook
            round_qemu
        else
            round_qemu
            round_nook
        fi
        log "round $i: $(for phase in $PHASES; do
            printf '%s nook %s ms QEMU %s ms; ' "$phase" "$(tail -n1 "$BASE/nook.$phase")" "$(tail -n1 "$BASE/qemu.$phase")"
        done)"
    done
    echo "virtio-fs in a VM: $BYTES bytes and $FILES small files through a shared directory on" \
        "the rig's tmpfs, timed in the guest, medians of $ROUNDS rounds"
    echo "phase       nook (ms)  QEMU (ms)  nook / QEMU (at most 1.00x: as fast as QEMU)"
    local a b
    for phase in $PHASES; do
        a=$(median "$BASE/nook.$phase")
        b=$(median "$BASE/qemu.$phase")
        awk -v p="$phase" -v a="$a" -v b="$b" 'BEGIN { printf "%-10s %10d %10d  %.2fx\n", p, a, b, a / b }'
    done
    echo "each round (ms; odd rounds ran nook first):"
    for phase in $PHASES; do
        echo "  $phase: nook $(paste -sd' ' "$BASE/nook.$phase"), QEMU $(paste -sd' ' "$BASE/qemu.$phase")"
    done
}

# make_tree DIR MIB: a tree of MIB MiB, three quarters in one file, the rest in 100 KiB files
# in 8 directories.
make_tree() {
    local dir=$1 mib=$2 d f small
    mkdir -p "$dir"
    head -c $((mib * 3 / 4 << 20)) /dev/urandom >"$dir/large"
    small=$(((mib << 20) / 4 / 102400 / 8))
    for d in $(seq 8); do
        mkdir "$dir/d$d"
        for f in $(seq "$small"); do
            head -c 102400 /dev/urandom >"$dir/d$d/f$f"
        done
    done
}

# ms_since NANOSECONDS: milliseconds since that `date +%s%N`.
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# nook cp of a CP_MIB tree into and out of a running VM container, against a tar pipe here.
cp_bench() {
    local tree=$BASE/cptree out=$BASE/cpout tarout=$BASE/cptar i t0 ready
    rm -rf "$tree" "$out" "$tarout" "$BASE"/cp.*
    make_tree "$tree" "$CP_MIB"
    chown -R "$TEST_USER" "$tree"
    nook run -d --name cpbench --network none busybox sh -c 'touch /ready; sleep 1d' >/dev/null ||
        die "cannot start the cp container"
    ready=
    for i in $(seq 120); do
        nook exec cpbench test -e /ready 2>/dev/null && ready=1 && break
        sleep 1
    done
    [ -n "$ready" ] || die "the cp container never became ready"
    log "cp: a $CP_MIB MiB tree ($(find "$tree" -type f | wc -l) files), $CP_ROUNDS rounds"
    for i in $(seq "$CP_ROUNDS"); do
        rm -rf "$tarout" "$out"
        mkdir "$tarout"
        chown "$TEST_USER" "$tarout"
        t0=$(date +%s%N)
        as_user sh -c "tar -C '$tree' -c . | tar -C '$tarout' -x" || die "tar pipe failed"
        ms_since "$t0" >>"$BASE/cp.tar"
        nook exec cpbench rm -rf /tree >/dev/null
        t0=$(date +%s%N)
        nook cp "$tree" cpbench:/tree || die "nook cp into the container failed"
        ms_since "$t0" >>"$BASE/cp.into"
        t0=$(date +%s%N)
        nook cp cpbench:/tree "$out" || die "nook cp out of the container failed"
        ms_since "$t0" >>"$BASE/cp.out"
        cmp "$tree/large" "$out/large" || die "cp: the large file differs after the round trip"
        diff -r "$tree" "$out" >/dev/null || die "cp: the tree differs after the round trip"
        diff -r "$tree" "$tarout" >/dev/null || die "cp: the tar pipe's copy differs"
        log "cp round $i: tar $(tail -n1 "$BASE/cp.tar") ms, into $(tail -n1 "$BASE/cp.into") ms, out $(tail -n1 "$BASE/cp.out") ms"
    done
    nook rm -f cpbench >/dev/null
    echo "nook cp of a $CP_MIB MiB tree with a running VM container, medians of $CP_ROUNDS rounds"
    echo "copy                      ms  / tar -c | tar -x (goal: at most 1.20x)"
    local tar
    tar=$(median "$BASE/cp.tar")
    for i in tar into out; do
        awk -v n="$i" -v a="$(median "$BASE/cp.$i")" -v b="$tar" \
            'BEGIN { printf "%-20s %8d  %.2fx\n", (n == "tar" ? "tar -c | tar -x" : "nook cp " n), a, a / b }'
    done
    echo "each round (ms): tar $(paste -sd' ' "$BASE/cp.tar"), into $(paste -sd' ' "$BASE/cp.into"), out $(paste -sd' ' "$BASE/cp.out")"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    exit 0
fi

ROUNDS=${1:-4}
BYTES=${2:-67108864}
FILES=${3:-1000}
CP_MIB=${4:-32}
CP_ROUNDS=${5:-3}
[[ "$ROUNDS" =~ ^[0-9]+$ ]] || vm_die "ROUNDS must be a number, not '$ROUNDS'"
[[ "$CP_MIB" =~ ^[0-9]+$ ]] || vm_die "CP_MIB must be a number, not '$CP_MIB'"
[[ "$CP_ROUNDS" =~ ^[1-9][0-9]*$ ]] || vm_die "CP_ROUNDS must be a positive number, not '$CP_ROUNDS'"
[ "$ROUNDS" != 0 ] || [ "$CP_MIB" != 0 ] || vm_die "ROUNDS and CP_MIB are both 0: nothing to measure"
[[ "$BYTES" =~ ^[1-9][0-9]*$ ]] && ((BYTES % 1048576 == 0)) ||
    vm_die "BYTES must be a positive multiple of 1048576, not '$BYTES'"
[[ "$FILES" =~ ^[1-9][0-9]*$ ]] || vm_die "FILES must be a positive number, not '$FILES'"
virtiofsd=${NOOK_VIRTIOFSD:-$(install_virtiofsd)}
[ -x "$virtiofsd" ] || vm_die "virtiofsd $virtiofsd is not an executable"
vm_user_work bench-volumes-vm qemu-system-x86_64 busybox cpio runuser
cp "$virtiofsd" "$WORK/bin/virtiofsd"
export ROUNDS BYTES FILES CP_MIB CP_ROUNDS
NOOK_RIG_MEM=${NOOK_RIG_MEM:-$((2048 + BYTES / 1048576 + 3 * CP_MIB))} tests/rig/run.sh --rw "$WORK" \
    --timeout 3500 -- "$PWD/tests/bench/volumes-vm.sh" --in-rig | tee "$WORK/result.txt" ||
    vm_die "the bench failed in the rig"
[ "$ROUNDS" = 0 ] || grep -q "^smallread .*x$" "$WORK/result.txt" || vm_die "the bench printed no ratio"
[ "$CP_MIB" = 0 ] || grep -q "^nook cp out .*x$" "$WORK/result.txt" || vm_die "the bench printed no cp ratio"
