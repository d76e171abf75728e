#!/usr/bin/env bash
# Resource limits where cgroup v2 is delegated to an unprivileged user (issue 19), in the rig's
# L1, whose kernel runs cgroup v2 alone and which has no systemd: as root the script delegates a
# subtree to the test user the way systemd's Delegate=yes does (the directory, its cgroup.procs,
# cgroup.subtree_control and cgroup.threads chowned to the user, controllers enabled, the user's
# processes in a leaf of it), names it as cgroup_parent in the user's config.toml, and then, as
# that user, shows for the namespace column:
# - --memory 64m and a process allocating 256 MiB: exit 137, `OOMKilled: true`, the next
#   container unaffected;
# - --pids-limit 64 and a fork bomb bounded by timeout: forks fail inside (pids.events max > 0,
#   pids.peak <= 64), the container ends its bomb and reports, the host keeps forking;
# - --cpus 0.5 and a busy loop: CPU time over 10 s of wall time between 4 and 6 s;
# - nook stats --no-stream --format json: non-zero CPU of the busy loop, and the memory a
#   process holds (100 MiB) within 10%;
# - nook update --memory 64m under that process: memory.max changes, the process is OOM-killed
#   (exit 137, OOMKilled true), inspect shows the new limit;
# - exec'd processes join the container's cgroup; every cgroup is gone once its container is;
# and for the VM column:
# - --memory 64m and 256 MiB allocated in the guest: the guest's OOM killer ends it, exit 137,
#   `OOMKilled: true` (the agent reports it);
# - --pids-limit 64 and a fork bomb bounded by timeout in the guest: the agent's cgroup in the
#   guest bounds it (pids.max 64, pids.events max > 0, failed forks), the container ends its bomb
#   and reports, and cannot raise its own limit (the guest's cgroup file system is read-only to
#   it); --ulimit nofile=512:1024 is what `ulimit -n`/`-Hn` show inside, in the main process and
#   in an exec'd one, which joins the cgroup too;
# - the security options applied in the guest by the agent: --cap-drop ALL makes chown fail (in
#   the main process and an exec'd one) where the guest's root chowns without options; a
#   seccomp profile denying mkdir gives EPERM; no-new-privileges shows in /proc/self/status;
#   --privileged can mount a tmpfs;
# - --cpus 0.5 and a busy loop in the guest: the VMM is in the container's cgroup on the host
#   (cpu.max 50000 100000, memory.max the VM's RAM plus 128 MiB), its host CPU time over 10 s
#   between 4 and 6 s; update of a running VM is refused with the reason;
# - nook stats --no-stream --format json of a VM container is the guest's view through its
#   agent, the VMM's beside it: the busy loop's CPU is non-zero in the guest (CPUPerc) and on the
#   host (HostCPUPerc); a process that allocates 64 MiB raises MemUsage by 64 MiB (within 10%)
#   above the same guest's idle figure, against the guest's memory (MemTotal, under the VM's
#   size) as the limit; PIDs counts the container's processes; BLOCK I/O the guest's disk reads;
# - the cost, in each column: `run --rm busybox true` with and without --memory 256m
#   --pids-limit 256 (medians of seven interleaved rounds; only a gross regression fails, TCG
#   timing being what it is).
#
# LIMITS_ONLY=vm runs the VM column's checks alone (the delegation is made all the same).
#
# As root the user `nooktest` is created (as the other tests/vm scripts do); otherwise the
# calling user runs nook, and the rig must already give it a delegated subtree.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "limits: FAIL: $*" >&2
    [ -z "${PROGRESS:-}" ] || echo "FAIL: $*" >>"$PROGRESS"
    exit 1
}
log() {
    echo "limits: $*" >&2
    [ -z "${PROGRESS:-}" ] || echo "$*" >>"$PROGRESS"
}

# expect NAME WANT GOT
expect() {
    [ "$2" = "$3" ] || die "$1: expected '$2', got '$3'"
}

user_env() {
    echo env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$BASE" NOOK_ROOT="$BASE/root" \
        XDG_RUNTIME_DIR="$BASE/run" XDG_CACHE_HOME="$BASE/cache" XDG_CONFIG_HOME="$BASE/config" \
        NOOK_KERNEL="$BASE/bin/vmlinux" NOOK_AGENT="$BASE/bin/nook-agent"
}

# nook as the unprivileged user, with a store, caches and sockets on the rig's own /tmp.
nook() {
    # shellcheck disable=SC2046
    runuser -u "$TEST_USER" -- $(user_env) timeout -k 10 300 "$BASE/bin/nook" "$@"
}

# nook run without a network: L1 has no tun device for pasta, and the limits need none.
run() {
    nook run --network none "$@"
}

# run, in a microVM.
vm() {
    run --isolation=vm "$@"
}

# stats_field CONTAINER KEY: a field of `nook stats --no-stream --format json`.
stats_field() {
    nook stats --no-stream --format json "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"
}

# mib "100.5MiB": the size in MiB (integer).
mib() {
    awk -v s="$1" 'BEGIN {
        n = s + 0; u = s; sub(/^[0-9.]+/, "", u)
        f = (u == "GiB") ? 1024 : (u == "MiB") ? 1 : (u == "KiB") ? 1 / 1024 : 1 / 1048576
        printf "%d\n", n * f }'
}

# kib "100.5MiB": the size in KiB (integer).
kib() {
    awk -v s="$1" 'BEGIN {
        n = s + 0; u = s; sub(/^[0-9.]+/, "", u)
        f = (u == "GiB") ? 1048576 : (u == "MiB") ? 1024 : (u == "KiB") ? 1 : 1 / 1024
        printf "%d\n", n * f }'
}

# wait_log CONTAINER TEXT: waits (up to 120 s) until the container's log holds TEXT.
wait_log() {
    local i
    for i in $(seq 240); do
        nook logs "$1" 2>&1 | grep -q "$2" && return 0
        sleep 0.5
    done
    die "container $1 never printed '$2': $(nook logs "$1" 2>&1 | tail -n 5)"
}

# cpu_per_10s CGROUP: the cgroup's CPU time (us) over 10 s of wall time, measured now.
cpu_per_10s() {
    local u1 u2 t1 t2
    u1=$(sed -n 's/^usage_usec //p' "$1/cpu.stat")
    t1=$(date +%s%N)
    sleep 10
    u2=$(sed -n 's/^usage_usec //p' "$1/cpu.stat")
    t2=$(date +%s%N)
    echo $(((u2 - u1) * 10000000 / ((t2 - t1) / 1000)))
}

# check_half WHAT USED BASE: USED (us per 10 s) is between 4 and 6 s; or, when L1 itself got
# less than 9 s per 10 s for an unlimited loop (BASE: the host was busy), between 40% and 60%
# of BASE.
check_half() {
    if [ "$3" -ge 9000000 ]; then
        [ "$2" -ge 4000000 ] && [ "$2" -le 6000000 ] ||
            die "$1: $2 us of CPU over 10 s, not between 4 and 6 s"
    else
        log "  L1 was short of CPU ($3 us per 10 s unlimited): checking $2 against 40-60% of it"
        [ $(($2 * 10)) -ge $(($3 * 4)) ] && [ $(($2 * 10)) -le $(($3 * 6)) ] ||
            die "$1: $2 us of CPU over 10 s, not 40-60% of the unlimited $3 us"
    fi
}

delegate() {
    DELEGATED=/sys/fs/cgroup/nook-$TEST_USER.slice
    [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] || die "L1 does not run cgroup v2 alone"
    local c
    for c in cpu cpuset io memory pids; do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
    done
    mkdir "$DELEGATED" "$DELEGATED/session"
    chown "$TEST_USER" "$DELEGATED" "$DELEGATED/cgroup.procs" \
        "$DELEGATED/cgroup.subtree_control" "$DELEGATED/cgroup.threads"
    chown -R "$TEST_USER" "$DELEGATED/session"
    # This shell, and so every nook it starts as the user, lives in the user's subtree, as a
    # login session under user@UID.service does.
    echo $$ >"$DELEGATED/session/cgroup.procs"
    mkdir -p "$BASE/config/nook"
    echo "cgroup_parent = \"$DELEGATED\"" >"$BASE/config/nook/config.toml"
    chown -R "$TEST_USER" "$BASE/config"
}

in_rig() {
    BASE=/tmp/nook-limits
    PROGRESS=$WORK/progress.log
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run" "$BASE/probe"
    cp "$WORK"/bin/* "$BASE/bin/"
    mv "$BASE/bin/alloc" "$BASE/probe/alloc"
    chown -R "$TEST_USER" "$BASE"
    delegate
    nook image default >/dev/null
    local out rc id cg
    out=$(nook info)
    grep -q "Delegated: $DELEGATED" <<<"$out" || die "nook info does not name the delegation: $out"
    log "nook info: $(grep -E 'Cgroups|Delegated' <<<"$out" | tr '\n' ' ')"

    [ "${LIMITS_ONLY:-}" = vm ] || namespace_column
    vm_column
    local left
    left=$(find "$DELEGATED" -mindepth 1 -maxdepth 1 -name 'nook-*' -type d)
    [ -z "$left" ] || die "cgroups left behind: $left"
    log "ok (in the rig)"
}

namespace_column() {
    local out rc id cg
    log "--memory 64m and 256 MiB allocated"
    set +e
    out=$(run --name oom --memory 64m -v "$BASE/probe:/probe:ro" busybox /probe/alloc 256 2>&1)
    rc=$?
    set -e
    expect "exit status of the allocation under --memory 64m ($out)" 137 "$rc"
    expect "OOMKilled" true "$(nook inspect -f '{{.State.OOMKilled}}' oom)"
    expect "HostConfig.Memory" 67108864 "$(nook inspect -f '{{.HostConfig.Memory}}' oom)"
    expect "the next container" ok "$(run --rm busybox echo ok)"
    id=$(run -d busybox true)
    nook wait "$id" >/dev/null
    expect "OOMKilled of a plain exit" false "$(nook inspect -f '{{.State.OOMKilled}}' "$id")"
    log "  exit 137, OOMKilled true"

    log "--pids-limit 64 and a fork bomb"
    local bomb='timeout 20 sh -c "f() { f | f & }; f; while :; do :; done" 2>/tmp/err
        kill -9 -1; sleep 1; kill -9 -1; sleep 1
        echo "fork failures: $(grep -c fork /tmp/err)"; echo alive'
    id=$(run -d --name bomb --pids-limit 64 busybox sh -c "$bomb")
    cg=$DELEGATED/nook-$id
    expect "pids.max" 64 "$(cat "$cg/pids.max")"
    sleep 8
    sh -c 'true' || die "the host cannot fork during the bomb"
    local events peak
    events=$(sed -n 's/^max //p' "$cg/pids.events")
    peak=$(cat "$cg/pids.peak")
    [ "$events" -gt 0 ] || die "the bomb never reached the limit (pids.events max $events)"
    [ "$peak" -le 64 ] || die "pids.peak $peak is over the limit"
    expect "the bomb container's status" 0 "$(nook wait bomb)"
    out=$(nook logs bomb 2>&1)
    grep -q '^alive$' <<<"$out" || die "the container did not survive its bomb: $out"
    grep -q 'fork failures: [1-9]' <<<"$out" || die "no fork failed inside: $out"
    [ ! -e "$cg" ] || die "$cg is left after the container ended"
    log "  pids.events max $events, pids.peak $peak, $(grep 'fork failures' <<<"$out")"

    log "--cpus 0.5 and a busy loop"
    # What a busy loop gets without a limit, first: L1 is QEMU TCG on a shared host, and when
    # the host starves it, a quota measured in L1's wall time is reached less often.
    id=$(run -d --name free busybox sh -c 'while :; do :; done')
    sleep 2
    local base
    base=$(cpu_per_10s "$DELEGATED/nook-$id")
    nook rm -f free >/dev/null
    log "  without a limit: ${base} us of CPU per 10 s of wall time"
    id=$(run -d --name busy --cpus 0.5 busybox sh -c 'while :; do :; done')
    cg=$DELEGATED/nook-$id
    expect "cpu.max" "50000 100000" "$(cat "$cg/cpu.max")"
    sleep 2
    local used
    used=$(cpu_per_10s "$cg")
    log "  with --cpus 0.5: ${used} us of CPU per 10 s of wall time"
    check_half "--cpus 0.5" "$used" "$base"
    local cpu
    cpu=$(stats_field busy CPUPerc)
    log "  nook stats: CPU $cpu"
    [ "${cpu%%.*}" -ge 10 ] || die "nook stats reports CPU $cpu for a busy loop"
    nook exec busy cat /proc/self/cgroup | grep -q "nook-$id" ||
        die "an exec'd process is not in the container's cgroup"
    nook rm -f busy >/dev/null

    log "nook stats and nook update --memory"
    id=$(run -d --name mem --memory 256m -v "$BASE/probe:/probe:ro" busybox /probe/alloc 100 600)
    cg=$DELEGATED/nook-$id
    wait_log mem "allocated 100 MiB"
    local usage m
    usage=$(stats_field mem MemUsage)
    m=$(mib "${usage%% *}")
    log "  nook stats: MemUsage $usage ($m MiB for 100 MiB allocated)"
    [ "$m" -ge 90 ] && [ "$m" -le 110 ] || die "stats shows $usage for 100 MiB allocated"
    expect "stats' limit" "256MiB" "${usage##* }"
    # Above what the process holds: the cgroup takes it, the process runs on.
    nook update --memory 200m mem >/dev/null
    expect "memory.max after update --memory 200m" 209715200 "$(cat "$cg/memory.max")"
    expect "the container after update --memory 200m" running \
        "$(nook inspect -f '{{.State.Status}}' mem)"
    # Below it: the kernel reclaims what it can, then the OOM killer ends the process.
    nook update --memory 64m mem >/dev/null
    expect "exit status after update --memory 64m" 137 "$(nook wait mem)"
    expect "OOMKilled after update" true "$(nook inspect -f '{{.State.OOMKilled}}' mem)"
    expect "HostConfig.Memory after update" 67108864 "$(nook inspect -f '{{.HostConfig.Memory}}' mem)"
    log "  update --memory 200m: memory.max 209715200, still running; --memory 64m: exit 137, OOMKilled true"
    nook rm -f oom bomb mem >/dev/null
}

vm_column() {
    local out rc id cg used cpu usage base

    log "VM column: the VMM and its helpers in the container's cgroup, the guest's OOM kill"
    vm_user_kvm
    nook run -i --network none --name alloc-maker busybox sh -c 'cat >/alloc && chmod 755 /alloc' \
        <"$BASE/probe/alloc" >/dev/null
    nook commit alloc-maker alloc:1 >/dev/null
    nook rm alloc-maker >/dev/null
    set +e
    out=$(vm --rm --memory 64m alloc:1 /alloc 256 2>&1)
    rc=$?
    set -e
    expect "exit status of 256 MiB allocated in a 64 MiB VM ($out)" 137 "$rc"
    set +e
    vm --name vm-oom --memory 64m alloc:1 /alloc 256 >/dev/null 2>&1
    set -e
    expect "OOMKilled of the VM container" true "$(nook inspect -f '{{.State.OOMKilled}}' vm-oom)"
    expect "OOMKilled of a VM container that ends well" false \
        "$(vm --name vm-fine busybox true >/dev/null && nook inspect -f '{{.State.OOMKilled}}' vm-fine)"
    log "  exit 137, OOMKilled true (reported by the agent)"

    log "VM column: --pids-limit 64 and a fork bomb in the guest"
    local vcg=/sys/fs/cgroup/nook-container
    local bomb="echo pids.max \$(cat $vcg/pids.max)
        echo max >$vcg/pids.max 2>/dev/null && echo raised
        timeout 10 sh -c 'f() { f | f & }; f; while :; do :; done' 2>/tmp/err
        kill -9 -1; i=0; while [ \$i -lt 20000 ]; do i=\$((i+1)); done
        kill -9 -1; i=0; while [ \$i -lt 20000 ]; do i=\$((i+1)); done
        echo \"fork failures: \$(grep -c fork /tmp/err)\"
        echo \"events: \$(cat $vcg/pids.events)\"; echo alive"
    set +e
    # The bomb's shell runs under the container's PID 1, another sh, which reaps the bomb's
    # orphans while it waits: a shell whose own fork fails ends (status 2), so the checks after
    # the bomb fork only once the killed bomb is reaped (the waits above use builtins only).
    out=$(vm --rm --pids-limit 64 busybox sh -c 'sh -c "$1"; rc=$?; exit $rc' sh "$bomb" 2>&1)
    rc=$?
    set -e
    expect "exit status of the guest's bomb ($out)" 0 "$rc"
    grep -qx 'pids.max 64' <<<"$out" || die "the guest's pids.max is not 64: $out"
    ! grep -qx raised <<<"$out" || die "the container raised its own pids.max: $out"
    grep -q '^events: max [1-9]' <<<"$out" || die "the guest's bomb never reached the limit: $out"
    grep -q 'fork failures: [1-9]' <<<"$out" || die "no fork failed in the guest: $out"
    grep -qx alive <<<"$out" || die "the VM container did not survive its bomb: $out"
    log "  $(grep -E '^(events|fork failures):' <<<"$out" | tr '\n' ' ')"
    sh -c 'true' || die "the host cannot fork"

    log "VM column: --ulimit nofile=512:1024, in the main process and an exec'd one"
    expect "ulimit -n, -Hn in the guest" "512 1024" \
        "$(vm --rm --ulimit nofile=512:1024 busybox sh -c 'echo $(ulimit -n) $(ulimit -Hn)')"
    vm -d --name vm-lim --pids-limit 32 --ulimit nofile=512:1024 busybox sleep 600 >/dev/null
    expect "ulimit -n of an exec'd process" 512 "$(nook exec vm-lim sh -c 'ulimit -n')"
    expect "the cgroup of an exec'd process" "0::/nook-container" \
        "$(nook exec vm-lim cat /proc/self/cgroup)"
    nook rm -f vm-lim >/dev/null
    log "  512 1024 in the main process; 512 and 0::/nook-container in an exec'd one"

    log "VM column: security options in the guest"
    local chown='touch /f; chown 1:1 /f 2>/dev/null && echo chowned || echo denied'
    expect "chown as the guest's root, no options" chowned "$(vm --rm busybox sh -c "$chown")"
    expect "chown under --cap-drop ALL" denied "$(vm --rm --cap-drop ALL busybox sh -c "$chown")"
    vm -d --name vm-sec --cap-drop ALL busybox sleep 600 >/dev/null
    expect "chown of an exec'd process under --cap-drop ALL" denied \
        "$(nook exec vm-sec sh -c "$chown")"
    nook rm -f vm-sec >/dev/null
    cat >"$BASE/probe/nomkdir.json" <<'JSON'
{"defaultAction": "SCMP_ACT_ALLOW",
 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
JSON
    chmod 644 "$BASE/probe/nomkdir.json"
    out=$(vm --rm --security-opt "seccomp=$BASE/probe/nomkdir.json" busybox \
        sh -c 'mkdir /d 2>&1; echo "rc=$?"; touch /t && echo touched')
    grep -q 'Operation not permitted' <<<"$out" || die "mkdir under the profile: $out"
    grep -qx 'rc=1' <<<"$out" || die "mkdir under the profile did not fail: $out"
    grep -qx touched <<<"$out" || die "the profile denied more than mkdir: $out"
    expect "NoNewPrivs with no-new-privileges" 1 \
        "$(vm --rm --security-opt no-new-privileges busybox awk '/^NoNewPrivs:/ { print $2 }' /proc/self/status)"
    expect "NoNewPrivs without options" 0 \
        "$(vm --rm busybox awk '/^NoNewPrivs:/ { print $2 }' /proc/self/status)"
    expect "mount -t tmpfs under --privileged" mounted \
        "$(vm --rm --privileged busybox sh -c 'mkdir -p /m && mount -t tmpfs t /m && echo mounted')"
    log "  chown: allowed without options, denied with --cap-drop ALL (exec too); mkdir: EPERM under the profile; NoNewPrivs 1; --privileged mounts"

    log "VM column: --cpus 0.5 and a busy loop in the guest"
    id=$(run -d --name free busybox sh -c 'while :; do :; done')
    sleep 2
    base=$(cpu_per_10s "$DELEGATED/nook-$id")
    nook rm -f free >/dev/null
    id=$(vm -d --name vm-busy --cpus 0.5 busybox sh -c 'while :; do :; done')
    cg=$DELEGATED/nook-$id
    expect "the VM's cpu.max" "50000 100000" "$(cat "$cg/cpu.max")"
    expect "the VM's memory.max (256 MiB of RAM + 128 MiB)" 402653184 "$(cat "$cg/memory.max")"
    local vmm
    vmm=$(nook inspect -f '{{.State.Pid}}' vm-busy)
    grep -qx "$vmm" "$cg/cgroup.procs" || die "the VMM $vmm is not in $cg: $(cat "$cg/cgroup.procs")"
    sleep 5
    used=$(cpu_per_10s "$cg")
    log "  the VMM's host CPU time over 10 s of wall time: ${used} us"
    check_half "the VMM under --cpus 0.5" "$used" "$base"
    out=$(nook stats --no-stream --format json vm-busy)
    log "  nook stats: $out"
    cpu=$(stats_field vm-busy CPUPerc)
    [ "${cpu%%.*}" -ge 10 ] || die "nook stats reports the guest's CPU $cpu for a busy loop"
    cpu=$(stats_field vm-busy HostCPUPerc)
    [ "${cpu%%.*}" -ge 10 ] || die "nook stats reports the VMM's host CPU $cpu for a busy loop"
    set +e
    out=$(nook update --memory 128m vm-busy 2>&1)
    rc=$?
    set -e
    expect "update of a running VM ($out)" 125 "$rc"
    grep -q "fixed at boot" <<<"$out" || die "update of a running VM: $out"
    nook rm -f vm-busy vm-oom vm-fine >/dev/null
    [ ! -e "$cg" ] || die "$cg is left after the VM ended"

    log "VM column: nook stats, the guest's memory through its agent"
    # The process allocates once the test has the idle figure of the same guest.
    vm -d --name vm-mem alloc:1 \
        sh -c 'while [ ! -e /go ]; do sleep 0.2; done; exec /alloc 64 600' >/dev/null
    sleep 5
    local idle held limit pids block host_idle host_held
    usage=$(stats_field vm-mem MemUsage)
    idle=$(kib "${usage%% *}")
    limit=$(kib "${usage##* }")
    host_idle=$(kib "$(stats_field vm-mem HostMemUsage)")
    pids=$(stats_field vm-mem PIDs)
    block=$(stats_field vm-mem BlockIO)
    log "  idle: MemUsage $usage, PIDs $pids, BlockIO $block, HostMemUsage ${host_idle} KiB"
    # The guest's MemTotal: the VM's 256 MiB less what its kernel keeps for itself.
    [ "$limit" -gt $((128 * 1024)) ] && [ "$limit" -lt $((256 * 1024)) ] ||
        die "the limit is not the guest's memory: $usage"
    [ "$pids" -ge 1 ] && [ "$pids" -le 4 ] || die "PIDs of a guest running one shell: $pids"
    [ "${block%% *}" != 0B ] || die "no disk read counted in the guest: $block"
    nook exec vm-mem touch /go
    wait_log vm-mem "allocated 64 MiB"
    sleep 2
    usage=$(stats_field vm-mem MemUsage)
    held=$(kib "${usage%% *}")
    host_held=$(kib "$(stats_field vm-mem HostMemUsage)")
    log "  64 MiB held: MemUsage $usage, $(((held - idle) / 1024)) MiB over idle; the VMM on the host: $(((host_held - host_idle) / 1024)) MiB over idle"
    [ $((held - idle)) -ge $((64 * 1024 * 9 / 10)) ] && [ $((held - idle)) -le $((64 * 1024 * 11 / 10)) ] ||
        die "stats shows $((held - idle)) KiB over idle for 64 MiB allocated in the guest"
    nook rm -f vm-mem >/dev/null

    [ "${LIMITS_ONLY:-}" = vm ] || limits_cost container
    limits_cost vm
}

# limits_cost COLUMN: `run --rm busybox true` in that column, with and without --memory 256m
# --pids-limit 256, seven interleaved rounds, timed in one shell of the user's (a runuser per
# run would add its PAM session, 0.4 s in L1, to both arms and hide the difference).
limits_cost() {
    local column=$1 times
    log "the cost of limits, $column column: run --rm busybox true, with and without --memory 256m --pids-limit 256"
    # shellcheck disable=SC2016,SC2046 # expanded by the user's shell
    times=$(runuser -u "$TEST_USER" -- $(user_env) COLUMN="$column" bash -c '
        run() { timeout -k 10 300 "$HOME/bin/nook" run --rm --network none --isolation="$COLUMN" "$@" busybox true >/dev/null; }
        ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
        run
        for i in 1 2 3 4 5 6 7; do
            t0=$(date +%s%N); run; echo "plain $(ms "$t0")"
            t0=$(date +%s%N); run --memory 256m --pids-limit 256; echo "limited $(ms "$t0")"
        done') || die "the timed runs failed: $times"
    local plain limited mp ml
    plain=$(awk '$1 == "plain" { print $2 }' <<<"$times")
    limited=$(awk '$1 == "limited" { print $2 }' <<<"$times")
    mp=$(sort -n <<<"$plain" | sed -n 4p)
    ml=$(sort -n <<<"$limited" | sed -n 4p)
    log "  median of 7, interleaved: ${mp} ms without, ${ml} ms with limits ($(awk -v a="$ml" -v b="$mp" 'BEGIN { printf "%.2f", a / b }')x); rounds: $(paste -sd" " <<<"$plain") / $(paste -sd" " <<<"$limited")"
    # The issue's bound is 10%; under TCG emulation single runs vary more than that, so only a
    # gross regression fails here (a guest cgroup set-up that waited for RCU grace periods
    # once cost 1.58x in the VM column) and docs/limits.md carries the measured ratio.
    [ "$ml" -le $((mp * 3 / 2)) ] || die "limits cost more than 50% in the $column column: $ml ms against $mp ms"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-limits
    exit 0
fi

vm_user_work limits mkfs.ext4 busybox runuser cc
cc -static -O2 -o "$WORK/bin/alloc" tests/fixtures/alloc.c || die "cannot build the allocator"
chmod a+rx "$WORK/bin/alloc"
chmod 777 "$WORK"
tests/rig/run.sh --rw "$WORK" --timeout 1700 -- "$PWD/tests/vm/limits.sh" --in-rig
echo "limits: ok"
