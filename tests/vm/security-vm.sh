#!/usr/bin/env bash
# The attacks of the namespace column's security tests (tests/tests/security_*.rs), tried on the
# VM column, where a container's exec, export and terminal go through the guest agent, run by an
# unprivileged user inside the nested KVM rig (natively on a VT-x/AMD-V host):
# - terminal injection: a static probe in the guest tries TIOCSTI through /dev/tty and every
#   descriptor that is a terminal, in `run`, `run -i`, `run -t`, `exec`, `exec -i`, `exec -t`,
#   while nook runs in a pty standing for the user's terminal: nothing it pushes arrives as input
#   there;
# - export while the container swaps a directory and a symlink to `/`: the agent's walk never
#   follows the symlink (no entry below the swapped name but the container's own file), and the
#   export stays a valid tar;
# - a `--rm` container that fills its writable layer (a guest tmpfs): `run` reports the
#   container's own status and output, and nothing is left behind;
# - hard links: the export of the busybox image's container holds tar hard-link entries and is
#   about the size of the image, not one copy per link.
# - --userns=keep-id: the process runs as the user's uid and gid in the guest, the user is in the
#   guest's /etc/passwd, and a file it writes in a bind mount belongs to the user on the host
#   (virtiofsd maps the guest's uid to the user); a bad mode exits 125.
# - --group-add: numeric gids and names (looked up in the /etc/group of the image's layers)
#   join the guest process's groups (the agent's `groups`); an unknown name exits 125.
#
# As root the user `nooktest` is created (as the other tests/vm scripts do); otherwise the calling
# user runs nook. Environment: NOOK_KERNEL (default: guest-kernel/build.sh), NOOK_VIRTIOFSD.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "security-vm: FAIL: $*" >&2
    exit 1
}
log() { echo "security-vm: $*" >&2; }

# expect NAME WANT GOT
expect() {
    [ "$2" = "$3" ] || die "$1: expected '$2', got '$3'"
}

user_env() {
    echo env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$BASE" NOOK_ROOT="$BASE/root" \
        XDG_RUNTIME_DIR="$BASE/run" XDG_CACHE_HOME="$BASE/cache" \
        NOOK_KERNEL="$BASE/bin/vmlinux" NOOK_AGENT="$BASE/bin/nook-agent" NOOK_ISOLATION=vm \
        NOOK_VIRTIOFSD="$BASE/bin/virtiofsd"
}

# nook as the unprivileged user, with a store, caches and sockets on the rig's own /tmp.
nook() {
    # shellcheck disable=SC2046
    runuser -u "$TEST_USER" -- $(user_env) timeout -k 10 600 "$BASE/bin/nook" "$@"
}

# in_pty CMD: runs the shell command CMD as the unprivileged user inside a new pty (the user's
# terminal), then reads what arrives as input on that terminal for a second: prints CMD's
# output followed by "after:[<that input>]".
in_pty() {
    # shellcheck disable=SC2046
    runuser -u "$TEST_USER" -- $(user_env) script -qec \
        "sh -c '$1; read -t 1 line; echo \"after:[\$line]\"'" /dev/null </dev/null
}

in_rig() {
    BASE=/tmp/nook-security-vm
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run"
    cp "$WORK"/bin/* "$BASE/bin/"
    chown -R "$TEST_USER" "$BASE"
    vm_user_kvm
    nook image default >/dev/null

    log "the probe image: busybox plus /probe"
    nook run -i --name probe-maker busybox sh -c 'cat >/probe && chmod 755 /probe' \
        <"$BASE/bin/tiocsti-probe" >/dev/null
    nook commit probe-maker probe:1 >/dev/null
    nook rm probe-maker >/dev/null

    log "terminal injection through the agent"
    local out mode
    for mode in "run --rm" "run --rm -i" "run --rm -t"; do
        out=$(in_pty "$BASE/bin/nook $mode probe:1 /probe </dev/null")
        grep -q 'devtty:' <<<"$out" || die "nook $mode: the probe did not report: $out"
        if grep -q INJECTED <<<"$out" && grep -q 'after:\[injected' <<<"$out"; then
            die "nook $mode: the container pushed input into the user's terminal: $out"
        fi
        grep -q 'after:\[\]' <<<"$out" || die "nook $mode: input arrived on the user's terminal: $out"
        log "  $mode: $(grep 'devtty:' <<<"$out" | tr -d '\r')"
    done
    nook run -d --name target probe:1 sleep 1000 >/dev/null
    for mode in "exec" "exec -i" "exec -t"; do
        out=$(in_pty "$BASE/bin/nook $mode target /probe </dev/null")
        grep -q 'devtty:' <<<"$out" || die "nook $mode: the probe did not report: $out"
        grep -q 'after:\[\]' <<<"$out" || die "nook $mode: input arrived on the user's terminal: $out"
        log "  $mode: $(grep 'devtty:' <<<"$out" | tr -d '\r')"
    done
    nook rm -f target >/dev/null

    log "export while the container swaps a directory and a symlink to /"
    local swap='mkdir -p /d; echo own >/d/own; while :; do
        mv /d /d.real; ln -s / /d; rm /d; mv /d.real /d; done'
    nook run -d --name swap busybox sh -c "$swap" >/dev/null
    local i bad
    for i in 1 2 3; do
        nook export -o "$BASE/swap-$i.tar" swap
        tar -tf "$BASE/swap-$i.tar" >"$BASE/swap-$i.list" || die "export $i is not a valid tar"
        bad=$(grep -E '^(\./)?d(\.real)?/.' "$BASE/swap-$i.list" | grep -vE '^(\./)?d(\.real)?/own$' || true)
        [ -z "$bad" ] || die "export $i followed the symlink: $(head -n 5 <<<"$bad")"
    done
    nook rm -f swap >/dev/null

    log "a container that fills its writable layer (--rm: the guest's tmpfs)"
    local fill='dd if=/dev/zero of=/big bs=1M count=100000 2>/dev/null; echo filled; exit 7'
    set +e
    out=$(nook run --rm busybox sh -c "$fill")
    local rc=$?
    set -e
    expect "run --rm's status after filling its layer" 7 "$rc"
    expect "run --rm's output" filled "$out"
    expect "containers left" "" "$(nook ps -aq)"

    log "export keeps hard links"
    nook create --name links busybox true >/dev/null
    nook export -o "$BASE/links.tar" links
    local links size
    links=$(tar -tvf "$BASE/links.tar" | grep -c '^h' || true)
    [ "$links" -gt 10 ] || die "export of busybox has $links hard-link entries"
    size=$(stat -c %s "$BASE/links.tar")
    [ "$size" -lt $((20 * 1024 * 1024)) ] || die "export of busybox is $size bytes"
    log "  $links hard-link entries, $size bytes"
    nook rm links >/dev/null

    log "--userns=keep-id in the guest"
    local uid gid name
    uid=$(id -u "$TEST_USER")
    gid=$(id -g "$TEST_USER")
    name=$(id -un "$TEST_USER")
    mkdir "$BASE/share"
    chown "$TEST_USER" "$BASE/share"
    out=$(nook run --rm --userns=keep-id -v "$BASE/share:/share" busybox sh -c \
        'id -u; id -g; grep "^$(id -un):" /etc/passwd; echo x >/share/made; stat -c "%u %g" /bin/busybox')
    expect "keep-id: the guest's id -u, id -g, passwd entry and image owner" \
        "$uid
$gid
$name:*:$uid:$gid:$name:$(getent passwd "$TEST_USER" | cut -d: -f6):/bin/sh
0 0" "$out"
    expect "keep-id: the owner on the host of a file written in a bind mount" \
        "$uid $gid" "$(stat -c '%u %g' "$BASE/share/made")"
    set +e
    out=$(nook run --rm --userns=auto busybox true 2>&1)
    rc=$?
    set -e
    expect "--userns=auto's status ($out)" 125 "$rc"
    log "  uid $uid in the guest, in its passwd; the bind mount's file is $(stat -c %U "$BASE/share/made")'s"

    log "--group-add in the guest"
    expect "--group-add: the guest's id -G" "0 1234 65534" \
        "$(nook run --rm --group-add 1234 --group-add nogroup busybox id -G)"
    set +e
    out=$(nook run --rm --group-add nosuch busybox true 2>&1)
    rc=$?
    set -e
    expect "--group-add of an unknown name: status ($out)" 125 "$rc"
    grep -q "unable to find group nosuch" <<<"$out" || die "--group-add nosuch: $out"
    log "ok (in the rig)"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-security-vm
    exit 0
fi

vm_user_work security-vm mkfs.ext4 busybox runuser script cc
cc -static -O2 -o "$WORK/bin/tiocsti-probe" tests/fixtures/tiocsti-probe.c ||
    die "cannot build the probe"
chmod a+rx "$WORK/bin/tiocsti-probe"
# The bind mount of the keep-id check is shared through virtiofsd.
virtiofsd=${NOOK_VIRTIOFSD:-$(install_virtiofsd)}
[ -x "$virtiofsd" ] || die "virtiofsd $virtiofsd is not an executable"
cp "$virtiofsd" "$WORK/bin/virtiofsd"
chmod a+rx "$WORK/bin/virtiofsd"
tests/rig/run.sh --rw "$WORK" --timeout 1700 -- "$PWD/tests/vm/security-vm.sh" --in-rig
echo "security-vm: ok"
