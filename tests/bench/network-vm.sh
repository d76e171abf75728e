#!/usr/bin/env bash
# Bulk TCP into a VM container against QEMU, in the nested KVM rig (natively on a VT-x/AMD-V
# host), as an unprivileged user, alternated round by round: BYTES (default 2 MiB) sent by the
# host to 127.0.0.1:PORT and read by busybox `nc -l` in the guest,
# - nook: `nook run -d --isolation=vm -p 127.0.0.1:PORT:5001 busybox nc -l -p 5001`: nook's VMM
#   and its virtio-net device, passt behind it over its unix socket;
# - QEMU: microvm with `-netdev stream` to passt (`passt -t 127.0.0.1/PORT:5001`, the addresses
#   nook gives passt) and `-device virtio-net-device`, the same guest kernel, memory and vCPUs,
#   and a busybox /init that configures eth0 as nook's agent does and runs the same `nc`.
# Both start timing at the connect and stop when the guest's nc has read everything and closed.
# Both guests' nc keep their standard input open: busybox nc shuts its side of the connection
# down at the end of its input, and Debian 12's passt stops forwarding into a guest connection
# that is half-closed that way (see docs/networking.md). Under the rig's emulation only the
# ratio means anything.
#
#   tests/bench/network-vm.sh [ROUNDS] [BYTES]   (defaults 3 and 33554432: under the rig's
#                                                emulation 32 MiB takes each about 20 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "network-vm bench: FAIL: $*" >&2
    if [ -n "${BASE:-}" ]; then
        for f in "$BASE"/root/containers/*/vmm.log "$BASE"/run/nook/net/*.log "$BASE"/peer-*.log; do
            [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    exit 1
}
# In the rig, progress also goes to the shared work directory, readable while the rig runs.
log() { echo "network-vm bench: $*" | tee -a "${WORK:-/dev/null}/progress.log" >&2; }

as_user() {
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
        HOME="$BASE" NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" \
        XDG_CACHE_HOME="$BASE/cache" NOOK_KERNEL="$BASE/bin/vmlinux" \
        NOOK_AGENT="$BASE/bin/nook-agent" NOOK_ISOLATION=vm "$@"
}
nook() { as_user timeout -k 10 600 "$BASE/bin/nook" "$@"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for FILE|CMD TEXT: until TEXT shows in what the command prints (at most 300 s).
wait_for() {
    local i
    for i in $(seq 3000); do
        if eval "$1" 2>/dev/null | grep -q "$2"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# send PORT: BYTES zeros to 127.0.0.1:PORT until the guest's nc has read them all and closed;
# prints the ms taken.
send() {
    python3 - "$1" "$BYTES" <<'PY'
import socket, sys, time
port, total = int(sys.argv[1]), int(sys.argv[2])
buf = bytes(1 << 20)
start = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
sent = 0
while sent < total:
    chunk = buf[: min(len(buf), total - sent)]
    s.sendall(chunk)
    sent += len(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)  # the receiver closes once it has read everything
print(int((time.monotonic() - start) * 1000))
PY
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One round of nook: prints the ms.
round_nook() {
    local port ms
    port=$(free_port)
    nook run -d --name bulk -p "127.0.0.1:$port:5001" busybox \
        sh -c 'echo listening; sleep 1000000 | nc -l -p 5001 >/dev/null' >/dev/null ||
        die "nook run failed"
    wait_for "nook logs bulk" listening || die "the nook guest never listened"
    log "nook: the guest listens on 127.0.0.1:$port"
    sleep 1
    ms=$(timeout 600 bash -c "$(declare -f send); BYTES=$BYTES; send $port") ||
        die "sending to the nook guest failed or stalled"
    cp "$BASE"/root/containers/*/vmm.log "$BASE/nook-vmm.log" 2>/dev/null || true
    nook rm -f bulk >/dev/null
    echo "$ms"
}

# One round of QEMU with passt: prints the ms.
round_qemu() {
    local port socket ms qemu_pid
    port=$(free_port)
    socket=$BASE/run/peer.sock
    rm -f "$socket" "$BASE/peer-console.log"
    # The arguments nook gives passt (NetworkSpec::stack_args), with this port.
    as_user passt --quiet --foreground --one-off --socket "$socket" --address 10.88.0.2 \
        --netmask 16 --gateway 10.88.0.1 --dns-forward 10.88.0.3 --mtu 65520 --no-map-gw \
        --udp-ports none --tcp-ports "127.0.0.1/$port:5001" >/dev/null 2>"$BASE/peer-passt.log" &
    wait_for "ls $socket" peer.sock || die "passt never made its socket"
    as_user timeout 600 qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -nodefaults \
        -no-user-config -display none -no-reboot -m 256 -smp 1 -device i8042 \
        -kernel "$BASE/bin/vmlinux" -initrd "$BASE/peer.cpio" \
        -append "console=ttyS0 reboot=k panic=-1 rdinit=/init quiet" \
        -serial "file:$BASE/peer-console.log" \
        -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$socket" \
        -device virtio-net-device,netdev=n0 >/dev/null 2>"$BASE/peer-qemu.log" &
    qemu_pid=$!
    wait_for "cat $BASE/peer-console.log" nook-peer-listening || die "the QEMU guest never listened"
    log "QEMU: the guest listens on 127.0.0.1:$port"
    sleep 1
    ms=$(timeout 600 bash -c "$(declare -f send); BYTES=$BYTES; send $port") ||
        die "sending to the QEMU guest failed or stalled"
    wait "$qemu_pid" || die "QEMU failed: $(tail -n 5 "$BASE/peer-qemu.log")"
    wait
    echo "$ms"
}

in_rig() {
    ip route show default | grep -q . || die "L1 has no default route (tests/rig/run.sh gives it one)"
    BASE=/tmp/nook-bench-net-vm
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run" "$BASE/peer"
    cp "$WORK"/bin/* "$BASE/bin/"
    cat >"$BASE/peer/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
ip link set lo up
ip link set eth0 mtu 65520 up
ip addr add 10.88.0.2/16 dev eth0
ip route add default via 10.88.0.1
echo nook-peer-listening
nc -l -p 5001 >/dev/null
reboot -f
INIT
    vm_busybox_initramfs "$BASE/peer" "$BASE/peer.cpio"
    chown -R "$TEST_USER" "$BASE"
    chown "root:$(id -gn "$TEST_USER")" /dev/kvm
    chmod 660 /dev/kvm
    nook image default >/dev/null
    log "sending $BYTES bytes per round, $ROUNDS rounds"
    : >"$BASE/nook.ms"
    : >"$BASE/qemu.ms"
    local i
    for i in $(seq "$ROUNDS"); do
        round_nook >>"$BASE/nook.ms"
        round_qemu >>"$BASE/qemu.ms"
        log "round $i: nook $(tail -n1 "$BASE/nook.ms") ms, QEMU $(tail -n1 "$BASE/qemu.ms") ms"
    done
    local a b
    a=$(median "$BASE/nook.ms")
    b=$(median "$BASE/qemu.ms")
    echo "bulk TCP into a VM, $BYTES bytes from the host through a published port: nook $a ms, QEMU -netdev stream + passt $b ms (medians of $ROUNDS)"
    awk -v a="$a" -v b="$b" 'BEGIN { printf "VM bulk ratio (nook / QEMU): %.2fx (at most 1.00x: as fast as QEMU)\n", a / b }'
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    exit 0
fi

ROUNDS=${1:-3}
BYTES=${2:-33554432}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || vm_die "ROUNDS must be a positive number, not '$ROUNDS'"
[[ "$BYTES" =~ ^[1-9][0-9]*$ ]] || vm_die "BYTES must be a positive number, not '$BYTES'"
vm_user_work bench-net-vm passt qemu-system-x86_64 busybox cpio python3
export ROUNDS BYTES
NOOK_RIG_MEM=${NOOK_RIG_MEM:-2048} tests/rig/run.sh --rw "$WORK" --timeout 1700 -- \
    "$PWD/tests/bench/network-vm.sh" --in-rig | tee "$WORK/result.txt" ||
    vm_die "the bench failed in the rig"
grep -q "VM bulk ratio" "$WORK/result.txt" || vm_die "the bench printed no ratio"
