#!/usr/bin/env bash
# `nook run --isolation=vm` end to end: the built nook, nook-vmm, static agent and guest kernel
# run the busybox image in microVMs inside the nested KVM rig (natively on a VT-x/AMD-V host).
# Checks: stdout, stderr and exit code 3 of `sh -c 'echo hello; echo err >&2; exit 3'`; a file
# written in a container is still there on its second `nook start` and absent in a new
# container; `--rm` (tmpfs upper) leaves nothing behind; `--memory`/`--cpus` size the VM;
# NOOK_ISOLATION=vm picks the column. On a host whose /dev/kvm cannot boot Linux (PVM) it also
# checks that `nook run --isolation=vm` fails at once with the VMM's reason.
#
# Environment: NOOK_KERNEL (default: guest-kernel/build.sh), NOOK_VM_DEBUG=1 (guest console in
# containers/<id>/console.log; files kept on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "run-vm: FAIL: $*" >&2
    exit 1
}
log() { echo "run-vm: $*" >&2; }

# expect NAME WANT GOT
expect() {
    [ "$2" = "$3" ] || die "$1: expected '$2', got '$3'"
}

in_rig() {
    local nook=$NOOK_BIN out rc
    # Unix sockets cannot live on the shared 9p directory: the agent socket goes in the rig's /tmp.
    export XDG_RUNTIME_DIR=/tmp/nook-run-vm
    # This machine's cache is read-only here: the ext4 template and initramfs go to the work dir.
    export XDG_CACHE_HOME=$WORK/cache
    mkdir -p "$XDG_RUNTIME_DIR"

    log "hello/err/exit 3"
    set +e
    out=$("$nook" run --isolation=vm busybox sh -c 'echo hello; echo err >&2; exit 3' 2>"$WORK/err")
    rc=$?
    set -e
    expect "exit status" 3 "$rc"
    expect "stdout" hello "$out"
    expect "stderr" err "$(cat "$WORK/err")"

    log "persistence across starts of one container"
    local script='cat /data/file 2>/dev/null || echo none; mkdir -p /data; echo kept >/data/file'
    out=$("$nook" run --isolation=vm --name keep busybox sh -c "$script")
    expect "first run" none "$out"
    out=$("$nook" start -a keep)
    expect "second start of the same container" kept "$out"
    out=$("$nook" run --isolation=vm busybox sh -c "$script")
    expect "a new container of the image" none "$out"
    local disks
    disks=$(find "$NOOK_ROOT/containers" -name upper.ext4 | wc -l)
    "$nook" rm keep >/dev/null
    expect "writable disks after rm" $((disks - 1)) "$(find "$NOOK_ROOT/containers" -name upper.ext4 | wc -l)"

    log "--rm uses a tmpfs upper and removes the container"
    local before after
    before=$(ls "$NOOK_ROOT/containers" | wc -l)
    out=$("$nook" run --rm --isolation=vm busybox sh -c 'echo x >/y; cat /y; if test -e /dev/vdb; then echo vdb; fi')
    expect "--rm output" x "$out"
    after=$(ls "$NOOK_ROOT/containers" | wc -l)
    expect "containers after --rm" "$before" "$after"

    log "--memory/--cpus size the VM; NOOK_ISOLATION=vm is the default column"
    out=$(NOOK_ISOLATION=vm "$nook" run --rm --memory 512m --cpus 2 busybox \
        sh -c 'grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo')
    expect "vCPUs" 2 "$(head -n1 <<<"$out")"
    local kb
    kb=$(awk '/MemTotal/ {print $2}' <<<"$out")
    [ -n "$kb" ] && [ "$kb" -gt 400000 ] && [ "$kb" -le 524288 ] ||
        die "--memory 512m: guest MemTotal is '$kb' kB"
    log "ok (in the rig)"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    exit 0
fi

for tool in mkfs.ext4 busybox; do
    command -v "$tool" >/dev/null || die "'$tool' is missing; run tests/setup.sh"
done
kernel=${NOOK_KERNEL:-$(vm_kernel)}
[ -f "$kernel" ] || die "kernel $kernel does not exist"
agent=$(vm_agent)
cargo build --release -p nook -p nook-vmm >&2
target=$(vm_target_dir)
nook=$target/release/nook
[ -x "$nook" ] && [ -x "$target/release/nook-vmm" ] || die "nook or nook-vmm was not built"

work=$(mktemp -d "${TMPDIR:-/tmp}/nook-run-vm.XXXXXX")
trap 'status=$?; [ $status -eq 0 ] && rm -rf "$work" || echo "run-vm: files kept in $work" >&2' EXIT
# Everything nook writes (store, caches) lives in the shared work directory; the kernel and the
# binaries are read from this machine's filesystem, which the rig sees read-only.
export NOOK_ROOT=$work/root NOOK_KERNEL=$kernel NOOK_AGENT=$agent
export NOOK_BIN=$nook WORK=$work
"$nook" image default >/dev/null
"$nook" image rootfs busybox >/dev/null

if [ -e /sys/module/kvm_pvm ] && [ "${NOOK_RIG:-}" != native ]; then
    log "this host's KVM is PVM: nook run --isolation=vm must refuse at once"
    start=$(date +%s)
    set +e
    "$nook" run --isolation=vm busybox true 2>"$work/pvm-err"
    rc=$?
    set -e
    expect "exit status on PVM" 125 "$rc"
    grep -q "PVM" "$work/pvm-err" || die "the error does not give the VMM's reason: $(cat "$work/pvm-err")"
    [ $(($(date +%s) - start)) -lt 20 ] || die "refusing took more than 20 s"
fi

tests/rig/run.sh --rw "$work" --timeout 1500 -- "$PWD/tests/vm/run-vm.sh" --in-rig
echo "run-vm: ok"
