#!/usr/bin/env bash
# Warm starts of VM containers (docs/snapshots.md), as an unprivileged user in
# the nested KVM rig (natively on a VT-x/AMD-V host): the first `nook run --isolation=vm` of a
# shape builds its template (a snapshot of the booted guest waiting for its container) and every
# run then resumes it. Shows: two warm runs of `cat /proc/uptime; head -c 16 /dev/urandom | od -x`
# work and print different random bytes; a warm container with a writable disk keeps its files
# across `start`; `--boot cold` still boots the kernel; a VM whose template is deleted under it
# goes on; a damaged or truncated template is built again, never resumed; the wall time of warm
# and cold runs, side by side; checkpoint and restore (a counter goes on from where it was saved,
# --leave-running, damaged and unknown checkpoints refused, one whose image disk is gone
# refused, the namespace column's error); ten
# warm VMs at once and the host memory they take.
#
# Environment: NOOK_KERNEL (default: guest-kernel/build.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

expect() {
    [ "$2" = "$3" ] || vm_die "$1: expected '$2', got '$3'"
}

in_rig() {
    local base=/tmp/nook-warm-vm
    rm -rf "$base"
    mkdir -p "$base/run"
    chown -R "$TEST_USER" "$base"
    vm_user_kvm
    nook() {
        runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$base" \
            NOOK_ROOT="$base/root" XDG_RUNTIME_DIR="$base/run" XDG_CACHE_HOME="$base/cache" \
            NOOK_KERNEL="$WORK/bin/vmlinux" NOOK_AGENT="$WORK/bin/nook-agent" \
            NOOK_ISOLATION=vm timeout -k 10 600 "$WORK/bin/nook" "$@"
    }
    nook image default >/dev/null
    local probe='cat /proc/uptime; head -c 16 /dev/urandom | od -x | head -n1'
    local t0 t1 first second templates
    t0=$(date +%s%N)
    first=$(nook run --rm busybox sh -c "$probe") || vm_die "the first warm run failed"
    t1=$(date +%s%N)
    vm_log "first run (builds the template): $(((t1 - t0) / 1000000)) ms"
    templates=$(find "$base/cache/nook/templates" -mindepth 1 -maxdepth 1 -type d -not -name '.*' | wc -l)
    expect "templates after the first run" 1 "$templates"
    second=$(nook run --rm busybox sh -c "$probe" 2>"$base/second.err") ||
        vm_die "the second warm run failed: $(cat "$base/second.err")"
    # A warm start that fell back to a cold boot says so: it must not have.
    ! grep -q warning "$base/second.err" || vm_die "the second run was not warm: $(cat "$base/second.err")"
    [ "$(sed -n 2p <<<"$first")" != "$(sed -n 2p <<<"$second")" ] ||
        vm_die "two warm runs read the same random bytes: $first / $second"
    vm_log "warm runs: $(tr '\n' ' ' <<<"$first") / $(tr '\n' ' ' <<<"$second")"

    # A container with a writable disk: another shape, another template.
    local script='cat /data/file 2>/dev/null || echo none; mkdir -p /data; echo kept >/data/file'
    expect "first run" none "$(nook run --name keep busybox sh -c "$script")"
    expect "second start" kept "$(nook start -a keep)"
    nook rm keep >/dev/null
    set +e
    nook run --rm busybox sh -c 'echo out; echo err >&2; exit 3' >"$base/out" 2>"$base/err"
    local rc=$?
    set -e
    expect "warm exit status" 3 "$rc"
    expect "warm stdout" out "$(cat "$base/out")"
    expect "warm stderr" err "$(cat "$base/err")"

    expect "cold run" cold "$(nook run --rm --boot cold busybox echo cold)"

    # A template deleted while a VM runs from it: that VM goes on (its memory is mapped from the
    # file it opened), and the next run builds the template again.
    nook run -d --name live busybox sleep 600 >/dev/null
    rm -rf "$base"/cache/nook/templates/*
    expect "run after deleting the templates" rebuilt "$(nook run --rm busybox echo rebuilt)"
    expect "exec in the VM whose template was deleted" alive "$(nook exec live echo alive)"
    nook rm -f live >/dev/null

    # A damaged template is built again, not resumed.
    local state
    for state in "$base"/cache/nook/templates/*/state; do
        truncate -s -7 "$state"
    done
    expect "run after damage" again "$(nook run --rm busybox echo again)"
    for state in "$base"/cache/nook/templates/*/state; do
        printf 'X' | dd of="$state" bs=1 seek=100 conv=notrunc status=none
    done
    expect "run after an edit" again "$(nook run --rm busybox echo again)"

    # Checkpoint and restore (docker's verbs): a counter goes on from where it was saved, not
    # from 1, with its writable layer.
    local counter='echo layer >/kept; i=0; while true; do i=$((i+1)); echo $i >/tmp/n; sleep 0.1; done'
    nook run -d --name count busybox sh -c "$counter" >/dev/null
    sleep 5
    local before after later
    before=$(nook exec count cat /tmp/n)
    expect "checkpoint create" c1 "$(nook checkpoint create count c1)"
    expect "status after the checkpoint" exited "$(nook inspect -f '{{.State.Status}}' count)"
    expect "checkpoint ls" "CHECKPOINT NAME c1" "$(nook checkpoint ls count | tr '\n' ' ' | sed 's/ $//')"
    nook start --checkpoint c1 count >/dev/null
    after=$(nook exec count cat /tmp/n)
    [ "$after" -ge "$before" ] ||
        vm_die "the restored counter is at $after, below the $before read before its checkpoint"
    expect "writable layer after the restore" layer "$(nook exec count cat /kept)"
    vm_log "checkpoint: counter $before before, $after right after the restore"
    expect "checkpoint --leave-running" c2 "$(nook checkpoint create --leave-running count c2)"
    expect "status after --leave-running" running "$(nook inspect -f '{{.State.Status}}' count)"
    later=$(nook exec count cat /tmp/n)
    [ "$later" -ge "$after" ] || vm_die "after --leave-running the counter is at $later, below $after"
    nook stop -t 1 count >/dev/null
    # A damaged checkpoint is refused, naming it; an unknown one too; the good one still works.
    truncate -s -9 "$base"/root/containers/*/checkpoints/c2/state
    if nook start --checkpoint c2 count 2>"$base/ck.err"; then
        vm_die "a truncated checkpoint was resumed"
    fi
    grep -q "checkpoint c2" "$base/ck.err" || vm_die "unclear error for a damaged checkpoint: $(cat "$base/ck.err")"
    ! nook start --checkpoint nope count 2>/dev/null || vm_die "an unknown checkpoint was resumed"
    nook checkpoint rm count c2
    expect "checkpoint ls after rm" "CHECKPOINT NAME c1" "$(nook checkpoint ls count | tr '\n' ' ' | sed 's/ $//')"
    nook start --checkpoint c1 count >/dev/null
    [ "$(nook exec count cat /tmp/n)" -ge "$before" ] || vm_die "the second restore of c1 went back"
    nook rm -f count >/dev/null
    # The namespace column says what it would need (no network: the rig's L1 has no tun device
    # for pasta).
    nook run -d --isolation container --network none --name ns busybox sleep 60 >/dev/null
    if nook checkpoint create ns c 2>"$base/ns.err"; then vm_die "a namespace container was checkpointed"; fi
    grep -q CRIU "$base/ns.err" || vm_die "unclear error for a namespace checkpoint: $(cat "$base/ns.err")"
    nook rm -f ns >/dev/null

    # Ten warm VMs at once: guest memory is the template's file mapped copy-on-write, so pages
    # the VMs share count once. Summed over the VMMs, PSS (shared pages split between their
    # users) must stay within 1.5x one VM's PSS plus what the ten wrote (their Private_Dirty).
    vm_mem() {
        local pid rss=0 pss=0 dirty=0 r p d
        for pid in $(pgrep -u "$TEST_USER" -x nook-vmm); do
            read -r r p d < <(awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Private_Dirty:/{d=$2} END{print r+0, p+0, d+0}' "/proc/$pid/smaps_rollup")
            rss=$((rss + r))
            pss=$((pss + p))
            dirty=$((dirty + d))
        done
        echo "$rss $pss $dirty"
    }
    local i one_rss one_pss one_dirty ten_rss ten_pss ten_dirty
    nook run -d --name mem0 busybox sleep 600 >/dev/null
    sleep 2
    read -r one_rss one_pss one_dirty < <(vm_mem)
    for i in 1 2 3 4 5 6 7 8 9; do
        nook run -d --name "mem$i" busybox sleep 600 >/dev/null
    done
    sleep 2
    expect "VMMs running" 10 "$(pgrep -u "$TEST_USER" -x nook-vmm | wc -l)"
    read -r ten_rss ten_pss ten_dirty < <(vm_mem)
    vm_log "memory, one warm VM: RSS ${one_rss} KiB, PSS ${one_pss} KiB, written ${one_dirty} KiB;" \
        "ten: RSS ${ten_rss} KiB, PSS ${ten_pss} KiB, written ${ten_dirty} KiB;" \
        "goal: PSS <= $((one_pss * 3 / 2 + ten_dirty)) KiB"
    [ "$ten_pss" -le $((one_pss * 3 / 2 + ten_dirty)) ] ||
        vm_die "ten warm VMs take ${ten_pss} KiB (PSS), more than 1.5x one (${one_pss}) plus what they wrote (${ten_dirty})"
    for i in 0 1 2 3 4 5 6 7 8 9; do
        nook rm -f "mem$i" >/dev/null
    done

    # Timed in one shell of the user's: a runuser per run would add its PAM session (about
    # 0.4 s in L1) to both kinds of start.
    local times warm cold
    # shellcheck disable=SC2016 # expanded by the user's shell
    times=$(runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$base" \
        NOOK_ROOT="$base/root" XDG_RUNTIME_DIR="$base/run" XDG_CACHE_HOME="$base/cache" \
        NOOK_KERNEL="$WORK/bin/vmlinux" NOOK_AGENT="$WORK/bin/nook-agent" NOOK_ISOLATION=vm \
        NOOK="$WORK/bin/nook" bash -c '
        ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
        for i in 1 2 3 4 5; do
            t0=$(date +%s%N); timeout -k 10 600 "$NOOK" run --rm busybox true; echo "warm $(ms "$t0")"
            t0=$(date +%s%N); timeout -k 10 600 "$NOOK" run --rm --boot cold busybox true; echo "cold $(ms "$t0")"
        done') || vm_die "the timed runs failed: $times"
    warm=$(awk '$1 == "warm" { print $2 }' <<<"$times" | paste -sd" ")
    cold=$(awk '$1 == "cold" { print $2 }' <<<"$times" | paste -sd" ")
    [ "$(wc -w <<<"$warm")" = 5 ] && [ "$(wc -w <<<"$cold")" = 5 ] ||
        vm_die "the timed runs did not all report: $times"
    vm_log "nook run --rm busybox true, one shell of the user's: warm $warm ms; cold $cold ms"

    # A checkpoint whose image disk went away under nook is refused, naming the disk, never
    # resumed on a file system that does not match its memory (last: the disk is gone after).
    nook run -d --name gone busybox sleep 600 >/dev/null
    expect "checkpoint before the disk goes" g1 "$(nook checkpoint create gone g1)"
    rm -f "$base"/root/rootfs/*.erofs
    if nook start --checkpoint g1 gone 2>"$base/gone.err"; then
        vm_die "a checkpoint was resumed without its image disk"
    fi
    grep -q "checkpoint g1: the image's disk .* is gone" "$base/gone.err" ||
        vm_die "unclear error for a checkpoint without its image disk: $(cat "$base/gone.err")"
    nook rm -f gone >/dev/null
    [ -z "$(pgrep -u "$TEST_USER" nook-vmm || true)" ] || vm_die "a VMM was left behind"
    vm_log "ok (in the rig)"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-warm-vm
    exit 0
fi

vm_user_work warm-vm mkfs.ext4 busybox runuser
tests/rig/run.sh --rw "$WORK" --timeout 1500 -- "$PWD/tests/vm/warm-vm.sh" --in-rig
echo "warm-vm: ok"
