#!/usr/bin/env bash
# The container lifecycle of the VM column, run by an unprivileged user given access to
# /dev/kvm (as a distribution's `kvm` group does), inside the nested KVM rig (natively on a
# VT-x/AMD-V host). Shows, through the monitor's control channel and the guest agent:
# exec (-e, -w, -u, -i, exit codes 3 and 127) sees the container's files; `stop` delivers SIGTERM
# to the container's process (its trap leaves a marker) and the guest syncs its disk, so a file
# written before the stop is there after `start`; diff (A/C/D) of a running and of a stopped
# container is exactly the container's own changes (the empty /etc/hosts and /etc/resolv.conf
# the agent creates as bind-mount targets are not among them, nor in the committed layer or the
# export); commit gives an image whose new container sees the file; export holds it and not
# the deleted file; `kill -9` of the VMM or of the monitor leaves a container `ps -a` shows
# exited and `rm` removes; kill -s, exec -t, stop's SIGKILL after -t, --read-only, run -t; the
# entrypoint is PID 1 of its PID namespace (exec, `ps` and `nook top` see it as 1), so `stop -t 2` of a
# `sleep` without a SIGTERM handler ends in SIGKILL after 2 s (137), as under docker.
#
# As root the user `nooktest` is created (tests/tests/containers_*.rs use the same one);
# otherwise the calling user runs nook. Environment: NOOK_KERNEL (default:
# guest-kernel/build.sh), NOOK_VM_DEBUG=1 (guest console in containers/<id>/console.log).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

die() {
    echo "containers-vm: FAIL: $*" >&2
    if [ -n "${BASE:-}" ]; then
        for f in "$BASE"/root/containers/*/vmm.log "$BASE"/root/containers/*/console.log; do
            [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    exit 1
}
log() { echo "containers-vm: $*" >&2; }

# expect NAME WANT GOT
expect() {
    [ "$2" = "$3" ] || die "$1: expected '$2', got '$3'"
}

# nook as the unprivileged user, with a store, caches and sockets on the rig's own /tmp.
nook() {
    runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME="$BASE" NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" \
        XDG_CACHE_HOME="$BASE/cache" NOOK_KERNEL="$BASE/bin/vmlinux" \
        NOOK_AGENT="$BASE/bin/nook-agent" NOOK_VM_DEBUG="${NOOK_VM_DEBUG:-0}" \
        timeout -k 10 600 "$BASE/bin/nook" "$@"
}

# status_of NAME: "State Status" as `ps -a` shows them.
status_of() {
    nook ps -a --format '{{.Names}} {{.State}} {{.Status}}' | sed -n "s/^$1 //p"
}

# wait_exited NAME: until `ps -a` shows it exited (60 s at most).
wait_exited() {
    local i
    for i in $(seq 600); do
        case "$(status_of "$1")" in exited*) return 0 ;; esac
        sleep 0.1
    done
    die "$1 is still '$(status_of "$1")' after 60 s"
}

# status CMD...: the exit status of CMD (output discarded).
status() {
    set +e
    "$@" >/dev/null 2>&1
    local rc=$?
    set -e
    echo "$rc"
}

alive() { kill -0 "$1" 2>/dev/null; }

# no_mount_targets WHAT LINES: fails when LINES (`docker diff` style) name /etc/hosts or
# /etc/resolv.conf, which the default image lacks: only the agent's empty bind-mount targets
# could put them there. (/etc/hostname is in the image, so the agent never creates it.)
no_mount_targets() {
    local leaked
    leaked=$(grep -E '^[ACD] /(\./)?etc/(hosts|resolv\.conf)$' <<<"$2" || true)
    [ -z "$leaked" ] || die "$1 lists the agent's mount targets: $leaked"
}

in_rig() {
    BASE=/tmp/nook-containers-vm
    rm -rf "$BASE"
    mkdir -p "$BASE/bin" "$BASE/run"
    cp "$WORK"/bin/* "$BASE/bin/"
    chown -R "$TEST_USER" "$BASE"
    vm_user_kvm
    nook image default >/dev/null

    log "run -d; exec sees and writes the container's files"
    local trap_script='trap "echo got-term >/term-marker; exit 0" TERM; while :; do sleep 0.2; done'
    local id
    id=$(nook run -d --isolation=vm --name web busybox sh -c "$trap_script")
    expect "run -d prints the id" 64 "${#id}"
    nook exec web sh -c 'echo kept >/data.txt; rm /etc/shadow'
    expect "exec sees the file" kept "$(nook exec web cat /data.txt)"
    expect "exec -e" bar "$(nook exec -e FOO=bar web sh -c 'echo $FOO')"
    expect "exec -w" /tmp "$(nook exec -w /tmp web pwd)"
    expect "exec -u" 65534 "$(nook exec -u nobody web id -u)"
    expect "exec -i" hi "$(echo hi | nook exec -i web cat)"
    expect "exec exit code" 3 "$(status nook exec web sh -c 'exit 3')"
    expect "exec of a missing command" 127 "$(status nook exec web no-such-command)"

    log "diff of a running container"
    # Exactly the container's own changes: the image has no /etc/hosts nor /etc/resolv.conf,
    # and the empty files the agent bind-mounts them onto must not show up.
    local want_diff out
    want_diff=$(printf '%s\n' "A /data.txt" "C /etc" "D /etc/shadow")
    out=$(nook diff web)
    no_mount_targets "diff (running)" "$out"
    expect "diff (running)" "$want_diff" "$out"

    log "stop sends SIGTERM through the agent; the guest syncs its disk"
    local err
    err=$(nook stop web 2>&1 >/dev/null)
    expect "stop's warnings" "" "$err"
    case "$(status_of web)" in "exited Exited (0)"*) ;; *) die "after stop: $(status_of web)" ;; esac
    nook start web >/dev/null
    expect "the trap ran on SIGTERM" got-term "$(nook exec web cat /term-marker)"
    expect "the file written before stop" kept "$(nook exec web cat /data.txt)"
    nook stop web >/dev/null

    log "diff, commit and export of a stopped container (booted to read its disk)"
    want_diff=$(printf '%s\n' "A /data.txt" "C /etc" "D /etc/shadow" "A /term-marker")
    out=$(nook diff web)
    no_mount_targets "diff (stopped)" "$out"
    expect "diff (stopped)" "$want_diff" "$out"
    nook commit web snap:1 >/dev/null
    expect "a container of the committed image" kept \
        "$(nook run --rm --isolation=vm snap:1 cat /data.txt)"
    # The committed layer is the last of the saved image's manifest.json.
    nook save -o "$BASE/snap.tar" snap:1
    local top
    top=$(tar -xOf "$BASE/snap.tar" manifest.json | grep -o '"Layers":\[[^]]*\]' |
        grep -o 'blobs/sha256/[0-9a-f]*' | tail -n1 || true)
    [ -n "$top" ] || die "no layers in the manifest.json of the saved snap:1"
    tar -xOf "$BASE/snap.tar" "$top" | tar -t >"$BASE/snap-top.list"
    grep -qx 'data.txt' "$BASE/snap-top.list" || die "the committed layer lacks data.txt"
    no_mount_targets "the committed layer" "$(sed 's|^|A /|' "$BASE/snap-top.list")"
    nook export -o "$BASE/web.tar" web
    expect "export holds the file" kept "$(tar -xOf "$BASE/web.tar" data.txt)"
    tar -tf "$BASE/web.tar" >"$BASE/web.list"
    grep -qx 'bin/busybox' "$BASE/web.list" || die "export lacks the image's bin/busybox"
    if grep -q 'etc/shadow' "$BASE/web.list"; then die "export holds the deleted /etc/shadow"; fi
    no_mount_targets "export (stopped)" "$(sed 's|^|A /|' "$BASE/web.list")"

    log "export of a running container"
    nook start web >/dev/null
    nook export -o "$BASE/web2.tar" web
    expect "export (running) holds the file" kept "$(tar -xOf "$BASE/web2.tar" data.txt)"
    no_mount_targets "export (running)" "$(tar -tf "$BASE/web2.tar" | sed 's|^|A /|')"

    log "kill -9 of the VMM: ps -a shows exited, rm removes"
    local vmm
    vmm=$(nook inspect --format '{{.State.Pid}}' web)
    [ -n "$vmm" ] && [ "$vmm" -gt 0 ] || die "no VMM pid for web: '$vmm'"
    kill -9 "$vmm"
    wait_exited web
    nook rm web >/dev/null
    [ ! -e "$BASE/root/containers/$id" ] || die "rm left $BASE/root/containers/$id"

    log "kill -9 of the monitor: the VM goes too; ps -a shows exited, rm removes"
    id=$(nook run -d --isolation=vm --name mon busybox sleep 1000)
    vmm=$(nook inspect --format '{{.State.Pid}}' mon)
    local monitor
    monitor=$(sed -n '/"monitor"/{n;s/[^0-9]//gp}' "$BASE/root/containers/$id/state.json")
    [ -n "$monitor" ] || die "no monitor pid in state.json"
    kill -9 "$monitor"
    wait_exited mon
    local i
    for i in $(seq 100); do alive "$vmm" || break; sleep 0.1; done
    if alive "$vmm"; then die "the VMM $vmm outlived its monitor"; fi
    nook rm mon >/dev/null
    [ ! -e "$BASE/root/containers/$id" ] || die "rm left the container of the killed monitor"

    log "kill -s through the agent"
    nook run -d --isolation=vm --name sig busybox sh -c \
        'trap "echo usr1 >/sig-marker" USR1; while :; do sleep 0.2; done' >/dev/null
    sleep 1
    nook kill -s USR1 sig >/dev/null
    for i in $(seq 100); do
        [ "$(nook exec sig cat /sig-marker 2>/dev/null)" = usr1 ] && break
        sleep 0.2
    done
    expect "USR1 reached the container's process" usr1 "$(nook exec sig cat /sig-marker)"
    local exec_tty
    exec_tty=$(runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME="$BASE" NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" \
        script -qec "timeout --foreground -k 10 120 $BASE/bin/nook exec -t sig sh -c 'test -t 0 && echo exec-tty'" /dev/null </dev/null)
    grep -q exec-tty <<<"$exec_tty" || die "exec -t: the process has no terminal: $exec_tty"
    nook rm -f sig >/dev/null

    log "stop of a process that ignores SIGTERM: SIGKILL through the agent after -t"
    nook run -d --isolation=vm --name deaf busybox sh -c 'trap "" TERM; while :; do sleep 0.2; done' >/dev/null
    err=$(nook stop -t 2 deaf 2>&1 >/dev/null)
    expect "stop's warnings" "" "$err"
    case "$(status_of deaf)" in "exited Exited (137)"*) ;; *) die "after stop -t 2: $(status_of deaf)" ;; esac
    local stderr_exec
    stderr_exec=$(nook exec deaf true 2>&1 || true)
    grep -q "is not running" <<<"$stderr_exec" || die "exec into a stopped container: $stderr_exec"
    nook rm deaf >/dev/null

    log "the entrypoint is PID 1 of the container; stop without a SIGTERM handler waits for -t"
    nook run -d --isolation=vm --name pid1 busybox sleep 1000 >/dev/null
    expect "/proc/1/cmdline in the container" "sleep 1000" \
        "$(nook exec pid1 sh -c 'tr "\0" " " </proc/1/cmdline' | sed 's/ $//')"
    local exec_pid procs
    exec_pid=$(nook exec pid1 sh -c 'echo $$')
    [ "$exec_pid" -gt 1 ] || die "exec's shell is PID $exec_pid in the container"
    # `ps` sees the container's PID namespace: the entrypoint as 1, no agent (the guest's /init).
    procs=$(nook exec pid1 ps -o pid,comm | awk 'NR > 1 { printf " %s=%s", $1, $2 }')
    case "$procs " in *" 1=sleep "*) ;; *) die "ps in the container: $procs" ;; esac
    case "$procs" in *=init*) die "ps in the container shows the agent: $procs" ;; esac
    # `nook top` lists the same from the agent, in `ps -ef`'s columns: the entrypoint is PID 1,
    # its parent (the agent) outside the container.
    local top
    top=$(nook top pid1)
    expect "nook top's header" "UID PID PPID C STIME TTY TIME CMD" \
        "$(head -n 1 <<<"$top" | tr -s ' ')"
    awk 'NR > 1 && $1 == "root" && $2 == 1 && $3 == 0 && $8 == "sleep" && $9 == 1000' \
        <<<"$top" | grep -q . || die "nook top does not list sleep as PID 1: $top"
    [ "$(wc -l <<<"$top")" -eq 2 ] || die "nook top lists more than the entrypoint: $top"
    expect "nook top -o pid,comm" "PID COMMAND|1 sleep" \
        "$(nook top pid1 -o pid,comm | sed 's/^ *//' | tr -s ' ' | paste -sd '|')"
    log "nook top of a VM container: $(tail -n 1 <<<"$top" | tr -s ' ')"
    local t0 t1
    t0=$(date +%s%N)
    err=$(nook stop -t 2 pid1 2>&1 >/dev/null)
    t1=$(date +%s%N)
    expect "stop's warnings" "" "$err"
    # PID 1 without a handler: the kernel drops SIGTERM; SIGKILL ends it after the 2 s.
    case "$(status_of pid1)" in "exited Exited (137)"*) ;; *) die "after stop -t 2 of sleep: $(status_of pid1)" ;; esac
    [ $(((t1 - t0) / 1000000)) -ge 2000 ] ||
        die "stop -t 2 of sleep as PID 1 took $(((t1 - t0) / 1000000)) ms: SIGTERM was not dropped"
    log "stop -t 2 of sleep as PID 1: $(((t1 - t0) / 1000000)) ms, Exited (137)"
    nook rm pid1 >/dev/null

    log "--read-only and run -t"
    expect "--read-only" ro "$(nook run --rm --read-only --isolation=vm busybox \
        sh -c 'touch /x 2>/dev/null && echo rw || echo ro')"
    local tty_out
    tty_out=$(runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$BASE" \
        NOOK_ROOT="$BASE/root" XDG_RUNTIME_DIR="$BASE/run" XDG_CACHE_HOME="$BASE/cache" \
        NOOK_KERNEL="$BASE/bin/vmlinux" NOOK_AGENT="$BASE/bin/nook-agent" \
        script -qec "timeout --foreground -k 10 300 $BASE/bin/nook run -t --rm --isolation=vm busybox sh -c 'test -t 0 && echo is-a-tty'" /dev/null </dev/null)
    grep -q is-a-tty <<<"$tty_out" || die "run -t: the process has no terminal: $tty_out"
    expect "containers left" "" "$(nook ps -aq)"
    log "ok (in the rig)"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-containers-vm
    exit 0
fi

vm_user_work containers-vm mkfs.ext4 busybox runuser script
tests/rig/run.sh --rw "$WORK" --timeout 1700 -- "$PWD/tests/vm/containers-vm.sh" --in-rig
echo "containers-vm: ok"
