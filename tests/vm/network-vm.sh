#!/usr/bin/env bash
# The VM column's network, run by an unprivileged user inside the nested KVM rig (natively on a
# VT-x/AMD-V host), with traffic only on that machine: passt serves each VM's virtio-net device,
# the guest agent configures eth0 from nook.net before the entrypoint runs.
# - `run -d -p 127.0.0.1:PORT:8080 busybox httpd` and the host fetches the page; a second VM
#   publishes the same container port on another host port; `stop` frees the port, `start` takes
#   it again; `rm` leaves no passt process;
# - the host's loopback is closed to a VM by default; `--network pasta:--map-gw` reaches a server
#   on it by the name host.containers.internal and by an `--add-host` name; `--network none`
#   has only `lo`; `--network host` is refused with exit 125.
# - UDP both ways: with --map-gw, busybox nslookup in the VM asks a DNS server the test runs on
#   the host's loopback and prints the address it answers.
#
# As root the user `nooktest` is created (as the other tests/vm scripts do); otherwise the calling
# user runs nook. Environment: NOOK_KERNEL (default: guest-kernel/build.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "network-vm: FAIL: $*" >&2
    if [ -n "${BASE:-}" ]; then
        for f in "$BASE"/root/containers/*/vmm.log "$BASE"/root/containers/*/passt.log; do
            [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    exit 1
}
log() { echo "network-vm: $*" >&2; }

# nook as the unprivileged user, with a store, caches and sockets on the rig's own /tmp.
nook() {
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
        HOME="$BASE" NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" \
        XDG_CACHE_HOME="$BASE/cache" NOOK_KERNEL="$BASE/bin/vmlinux" \
        NOOK_AGENT="$BASE/bin/nook-agent" NOOK_ISOLATION=vm \
        timeout -k 10 600 "$BASE/bin/nook" "$@"
}

# fetch PORT [SECONDS]: the page on 127.0.0.1:PORT, retried while nothing answers.
fetch() {
    local i out
    for i in $(seq $((${2:-120} * 5))); do
        if out=$(busybox wget -qO- "http://127.0.0.1:$1/" 2>/dev/null); then
            echo "$out"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# dns_server PORT READY: answers every A query on 127.0.0.1:PORT with 192.0.2.7 (and every
# other query with no record) for two minutes; creates the file READY once it listens.
dns_server() {
    python3 - "$1" "$2" <<'PY'
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.settimeout(1)
open(sys.argv[2], "w").close()
end = time.time() + 120
while time.time() < end:
    try:
        q, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    if len(q) < 17:
        continue
    qtype = struct.unpack(">H", q[-4:-2])[0]
    answers = b""
    if qtype == 1:
        answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 7])
    head = q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1 if answers else 0, 0, 0)
    s.sendto(head + q[12:] + answers, peer)
PY
}

passts() {
    pgrep -u "$TEST_USER" -f 'passt' || true
}

web() {
    nook run -d --name "$1" -p "127.0.0.1:$2:8080" busybox sh -c \
        "mkdir -p /www && echo hello from $1 > /www/index.html && exec httpd -f -p 8080 -h /www" \
        >/dev/null
}

# passt (like pasta) needs a host route to take as the outside: the rig gives L1 a stand-in.
outside_route() {
    ip route show default | grep -q . || die "L1 has no default route (tests/rig/run.sh gives it one)"
}

in_rig() {
    outside_route
    BASE=/tmp/nook-network-vm
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run"
    cp "$WORK"/bin/* "$BASE/bin/"
    chown -R "$TEST_USER" "$BASE"
    vm_user_kvm
    nook image default >/dev/null

    log "published ports"
    local p1 p2 out
    p1=$(free_port)
    p2=$(free_port)
    web web1 "$p1"
    web web2 "$p2"
    out=$(fetch "$p1") || die "127.0.0.1:$p1 never answered"
    [ "$out" = "hello from web1" ] || die "web1 served '$out'"
    out=$(fetch "$p2") || die "127.0.0.1:$p2 never answered"
    [ "$out" = "hello from web2" ] || die "web2 served '$out'"
    out=$(nook port web1)
    [ "$out" = "8080/tcp -> 127.0.0.1:$p1" ] || die "nook port web1: $out"

    log "stop frees the port, start takes it again"
    nook stop -t 2 web1 >/dev/null
    if busybox wget -qO- "http://127.0.0.1:$p1/" >/dev/null 2>&1; then
        die "127.0.0.1:$p1 still answers after stop"
    fi
    nook start web1 >/dev/null
    out=$(fetch "$p1") || die "127.0.0.1:$p1 never answered after start"
    [ "$out" = "hello from web1" ] || die "web1 served '$out' after start"
    nook rm -f web1 web2 >/dev/null
    sleep 1
    [ -z "$(passts)" ] || die "passt left behind: $(passts)"

    log "the host's loopback: closed by default, opt-in by name"
    local hp
    hp=$(free_port)
    mkdir -p "$BASE/www"
    echo "host answer" >"$BASE/www/index.html"
    busybox httpd -p "127.0.0.1:$hp" -h "$BASE/www"
    local url="http://host.containers.internal:$hp/"
    out=$(nook run --rm busybox sh -c "timeout 10 wget -qO- $url; exit \$?" 2>/dev/null) &&
        die "a VM reached the host's loopback by default: $out"
    [ "$out" != "host answer" ] || die "a VM reached the host's loopback by default"
    out=$(nook run --rm --network pasta:--map-gw busybox wget -qO- "$url") ||
        die "--map-gw: the host's server is unreachable"
    [ "$out" = "host answer" ] || die "--map-gw: got '$out'"
    out=$(nook run --rm --network pasta:--map-gw --add-host db.internal:10.88.0.1 busybox \
        wget -qO- "http://db.internal:$hp/") || die "--add-host: unreachable"
    [ "$out" = "host answer" ] || die "--add-host: got '$out'"
    log "UDP: a DNS query from the VM and its answer"
    local up dns_pid
    up=$(free_port)
    dns_server "$up" "$BASE/dns.ready" &
    dns_pid=$!
    # Python starts slowly under the rig's emulation: the server must listen before the query.
    for _ in $(seq 600); do
        [ -e "$BASE/dns.ready" ] && break
        sleep 0.1
    done
    [ -e "$BASE/dns.ready" ] || die "UDP: the test's DNS server never started"
    # UDP may lose a datagram: the query is asked again, as resolvers do.
    out=$(nook run --rm --network pasta:--map-gw busybox sh -c \
        "for i in 1 2 3; do nslookup -timeout=2 example.test 10.88.0.1:$up && exit 0; done; exit 1" \
        2>&1) || true
    kill "$dns_pid" 2>/dev/null || true
    grep -q "192.0.2.7" <<<"$out" || die "UDP: no answer from the host's DNS server: $out"
    log "--network none and host"
    out=$(nook run --rm --network none busybox sh -c 'ls /sys/class/net | tr "\n" " "')
    [ "$out" = "lo " ] || die "--network none: interfaces '$out'"
    out=$(nook run --rm busybox sh -c 'ls /sys/class/net | tr "\n" " "; ip -4 addr show eth0 | grep -o "inet [0-9./]*"')
    grep -q "eth0" <<<"$out" && grep -q "inet 10.88.0.2/16" <<<"$out" ||
        die "the default network: '$out'"
    set +e
    out=$(nook run --rm --network host busybox true 2>&1)
    local rc=$?
    set -e
    [ "$rc" = 125 ] || die "--network host: exit $rc ($out)"
    grep -q "not available with --isolation=vm" <<<"$out" || die "--network host: '$out'"
    [ -z "$(nook ps -a -q)" ] || die "containers left: $(nook ps -a)"
    log "ok (in the rig)"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-network-vm
    exit 0
fi

vm_user_work network-vm mkfs.ext4 busybox runuser python3 passt
tests/rig/run.sh --rw "$WORK" --timeout 1700 -- "$PWD/tests/vm/network-vm.sh" --in-rig
echo "network-vm: ok"
