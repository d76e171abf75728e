#!/usr/bin/env bash
# The OCI runtime's VM column (docs/oci-runtime.md) in the nested KVM rig (natively on a
# VT-x/AMD-V host), as root, as containerd runs on a Kubernetes node: a containerd started here
# (its own root, state and socket under a temporary directory) runs busybox tasks with
# `ctr run --runc-binary nook-runtime-vm` (run, task exec, task kill, task delete); a bundle's
# process rlimits and additionalGids hold inside the guest, for `run` and for an exec's
# process.json; podman with `--runtime nook-runtime-vm` runs `busybox echo hi`, exits 0, 3 and
# 137, execs, reads logs, runs `-it` through a pty, and its `--ulimit` and `--group-add` hold
# inside; rootless podman (the unprivileged test user) runs, runs detached, execs, reads logs,
# stops (137), removes, and runs `-it`. Each container is a microVM whose root is the bundle's
# rootfs shared through virtio-fs. Then the same task through containerd against `nook run
# --isolation=vm` and against containerd with runc, alternated (the issue's bench), with
# nook-runtime's calls timed by verb.
#
# Environment: NOOK_KERNEL (default: guest-kernel/build.sh), NOOK_VIRTIOFSD, OCI_VM_ROUNDS
# (bench rounds, default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh
. tests/vm/lib.sh

expect() {
    [ "$2" = "$3" ] || vm_die "$1: expected '$2', got '$3'"
}

ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

in_rig() {
    local base=/tmp/nook-oci-vm
    rm -rf "$base"
    mkdir -p "$base/ctd" "$base/podman"
    local vm_env="NOOK_KERNEL=$WORK/bin/vmlinux NOOK_AGENT=$WORK/bin/nook-agent \
NOOK_VMM=$WORK/bin/nook-vmm NOOK_VIRTIOFSD=$WORK/bin/virtiofsd"
    local env="$vm_env XDG_CACHE_HOME=$base/cache XDG_RUNTIME_DIR=$base/run"
    # runtime_wrapper OUT ENV: the runtime as containerd's shim and conmon call it, with the
    # rig's paths and ENV's cache and runtime directories (the host's cache is read-only here).
    runtime_wrapper() {
        printf '#!/bin/sh\nexport %s\nexec %s "$@"\n' "$2" "$WORK/bin/nook-runtime-vm" >"$1"
        chmod 755 "$1"
    }
    local runtime=$base/nook-runtime-vm
    runtime_wrapper "$runtime" "$env"
    # For the bench, the same with each call's verb and duration (ms) written down.
    printf '#!/bin/sh\nexport %s\ns=$(date +%%s%%N)\n%s "$@"\nrc=$?\necho "$(( ($(date +%%s%%N) - s) / 1000000 )) $*" >>%s\nexit $rc\n' \
        "$env" "$WORK/bin/nook-runtime-vm" "$base/calls" >"$base/nook-runtime-vm-timed"
    chmod 755 "$base/nook-runtime-vm-timed"

    local d=$base/ctd
    cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
EOF
    timeout 900 containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
    local ctd_pid=$!
    # shellcheck disable=SC2064 # fixed now
    trap "kill $ctd_pid 2>/dev/null || true" EXIT
    ctr() { timeout -k 10 300 ctr -a "$d/containerd.sock" "$@"; }
    local i
    for i in $(seq 100); do
        ctr version >/dev/null 2>&1 && break
        sleep 0.3
    done
    ctr version >/dev/null || vm_die "containerd did not come up: $(tail "$d/containerd.log")"
    ctr images import "$WORK/busybox.tar" >/dev/null
    local image=docker.io/library/busybox:latest

    local t0 out rc
    t0=$(date +%s%N)
    out=$(ctr run --rm --runc-binary "$runtime" "$image" hi echo hi) ||
        vm_die "ctr run echo hi failed: $out"
    expect "ctr run echo hi" hi "$out"
    vm_log "ctr run --rm echo hi: $(ms "$t0") ms"
    set +e
    ctr run --rm --runc-binary "$runtime" "$image" three sh -c 'exit 3'
    rc=$?
    set -e
    expect "ctr run exit 3" 3 "$rc"

    # A task: exec into it, kill it, delete it.
    ctr run -d --runc-binary "$runtime" "$image" task sh -c 'echo up >/tmp/up; sleep 600' >/dev/null
    ctr task ls | grep -q "task .*RUNNING" || vm_die "the task is not running: $(ctr task ls)"
    set +e
    out=$(ctr task exec --exec-id e1 task sh -c 'cat /tmp/up; exit 4')
    rc=$?
    set -e
    expect "task exec status" 4 "$rc"
    expect "task exec output" up "$out"
    # The bundle's root is the guest's: what the container writes is in the host's rootfs.
    local rootfs
    rootfs=$(find "$d/state" -path '*/task/rootfs' | head -n1)
    expect "the container's file in the bundle's rootfs" up "$(cat "$rootfs/tmp/up")"
    local pid
    pid=$(ctr task ls | awk '$1 == "task" {print $2}')
    pgrep -P "$pid" nook-vmm >/dev/null || vm_die "the VMM is not the monitor's child"
    ctr task kill -s SIGKILL task
    for i in $(seq 100); do
        ctr task ls | grep -q "task .*STOPPED" && break
        sleep 0.2
    done
    ctr task ls | grep -q "task .*STOPPED" || vm_die "the task did not stop: $(ctr task ls)"
    ctr task delete task >/dev/null
    ctr container rm task
    expect "tasks left" "" "$(ctr task ls -q)"
    [ -z "$(pgrep nook-vmm || true)" ] || vm_die "a VMM was left behind"
    [ -z "$(pgrep virtiofsd || true)" ] || vm_die "a virtiofsd was left behind"
    vm_log "containerd: run, exec, kill, delete ok"

    # A bundle of our own, run by the runtime as containerd's shim runs it: the process's
    # rlimits and additionalGids hold inside the guest, for the first process and for an exec
    # with rlimits, groups and a user of its own.
    local b=$base/bundle layer
    mkdir -p "$b/rootfs" "$b/image"
    tar -xf "$WORK/busybox.tar" -C "$b/image"
    layer=$(grep -o '"Layers":\["[^"]*"' "$b/image/manifest.json" | sed 's/.*\["//; s/"$//')
    tar -xf "$b/image/$layer" -C "$b/rootfs"
    cat >"$b/config.json" <<'EOF'
{"ociVersion": "1.0.2",
 "process": {"terminal": false, "cwd": "/",
  "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 4242]},
  "args": ["sh", "-c", "echo $(ulimit -n) $(ulimit -Hn) $(id -u) groups: $(id -G); [ \"$1\" = wait ] || exit 0; while [ ! -e /tmp/done ]; do sleep 0.2; done", "sh", "ARG"],
  "env": ["PATH=/bin:/usr/bin"],
  "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]},
 "root": {"path": "rootfs"},
 "hostname": "limits",
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}
EOF
    rt() { timeout -k 10 300 "$runtime" --root "$base/rt" "$@"; }
    has_groups() { # $1: the line printed, then the gids it must list
        local line=$1 g
        shift
        for g in "$@"; do
            case " ${line#*groups: } " in *" $g "*) ;; *) vm_die "gid $g missing: $line" ;; esac
        done
    }
    sed -i 's/"ARG"/"once"/' "$b/config.json"
    out=$(rt run --bundle "$b" limits) || vm_die "nook-runtime-vm run of the bundle failed: $out"
    expect "rlimits and uid of the bundle's process" "512 1024 1000" "${out%% groups:*}"
    has_groups "$out" 1000 10 4242
    vm_log "bundle: rlimits and additionalGids: $out"
    sed -i 's/"once"/"wait"/' "$b/config.json"
    rt create --bundle "$b" limits2 >/dev/null
    rt start limits2
    cat >"$b/exec.json" <<'EOF'
{"terminal": false, "cwd": "/",
 "user": {"uid": 1001, "gid": 1001, "additionalGids": [20]},
 "args": ["sh", "-c", "echo $(ulimit -n) $(ulimit -Hn) $(id -u) groups: $(id -G)"],
 "env": ["PATH=/bin:/usr/bin"],
 "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 300}]}
EOF
    out=$(rt exec --process "$b/exec.json" limits2) || vm_die "exec failed: $out"
    expect "rlimits and uid of the exec's process" "256 300 1001" "${out%% groups:*}"
    has_groups "$out" 1001 20
    case " ${out#*groups: } " in *" 4242 "*) vm_die "the exec kept the first process's groups: $out" ;; esac
    rt exec limits2 touch /tmp/done
    stopped() { [[ $(rt state limits2) == *'"stopped"'* ]]; }
    for i in $(seq 150); do
        stopped && break
        sleep 0.2
    done
    stopped || vm_die "the bundle's container did not stop: $(rt state limits2)"
    rt delete limits2
    vm_log "bundle: exec's own rlimits, additionalGids and user: $out"

    # podman, storage under the temporary directory (the host's / is read-only here), no
    # network (a VM joins no network namespace of the caller's).
    local p=$base/podman
    local rpodman=(podman --root "$p/root" --runroot "$p/run" --tmpdir "$p/tmp"
        --cgroup-manager cgroupfs --events-backend file --runtime "$runtime")
    podman() { timeout -k 10 300 "${rpodman[@]}" "$@"; }
    # run_it WHAT COMMAND: `COMMAND run -it` of busybox through a pty (script), whose process
    # must see a terminal and whose status 3 must come back. COMMAND is a line for the shell;
    # --foreground keeps podman in the terminal's foreground group.
    run_it() {
        local out rc
        set +e
        out=$(script -qec "$2 run -it --rm --network none $image \
sh -c 'test -t 0 && echo is-a-tty; exit 3'" /dev/null </dev/null)
        rc=$?
        set -e
        grep -q is-a-tty <<<"$out" || vm_die "$1 run -it: no terminal: $out"
        expect "$1 run -it status" 3 "$rc"
    }
    podman load -q -i "$WORK/busybox.tar" >/dev/null
    local flags=(--rm --network none)
    t0=$(date +%s%N)
    out=$(podman run "${flags[@]}" "$image" echo hi) || vm_die "podman run echo hi failed: $out"
    expect "podman run echo hi" hi "$out"
    vm_log "podman run --rm busybox echo hi: $(ms "$t0") ms"
    set +e
    podman run "${flags[@]}" "$image" sh -c 'exit 3'
    rc=$?
    set -e
    expect "podman exit 3" 3 "$rc"
    # docker's flags that become the process's rlimits and additionalGids.
    out=$(podman run "${flags[@]}" --ulimit nofile=300:400 --group-add 4242 "$image" \
        sh -c 'echo $(ulimit -n) $(ulimit -Hn) groups: $(id -G)') ||
        vm_die "podman run --ulimit --group-add failed: $out"
    expect "podman --ulimit nofile=300:400" "300 400" "${out%% groups:*}"
    has_groups "$out" 0 4242
    vm_log "podman: --ulimit and --group-add: $out"
    # SIGKILL through the runtime's kill (the container's process is PID 1 of its namespace in
    # the guest, which a kill -9 of its own would not end, as with runc).
    podman run -d --name killed --network none "$image" sh -c 'echo started; exec sleep 600' >/dev/null
    expect "podman exec" inside "$(podman exec killed echo inside)"
    expect "podman logs" started "$(podman logs killed)"
    podman kill killed >/dev/null
    expect "podman exit 137" 137 "$(podman wait killed)"
    podman rm killed >/dev/null
    run_it podman "timeout --foreground -k 10 300 ${rpodman[*]}"
    vm_log "podman: exit codes 0, 3, 137, exec, logs, run -it ok"

    # Rootless podman, as the unprivileged user (its own store and run directory; conmon and
    # the runtime in podman's user namespace): the lifecycle podman users rely on, and a pty.
    local u=$base/rootless
    mkdir -p "$u/home" "$u/run"
    chmod 700 "$u/run"
    chown -R "$TEST_USER:" "$u"
    vm_user_kvm
    local as_user=(runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
        HOME="$u/home" XDG_RUNTIME_DIR="$u/run")
    runtime_wrapper "$u/nook-runtime-vm" "$vm_env XDG_CACHE_HOME=$u/cache XDG_RUNTIME_DIR=$u/run"
    local upodman=(podman --root "$u/root" --runroot "$u/prun" --tmpdir "$u/tmp"
        --cgroup-manager cgroupfs --events-backend file --runtime "$u/nook-runtime-vm")
    upm() { "${as_user[@]}" timeout -k 10 300 "${upodman[@]}" "$@"; }
    upm load -q -i "$WORK/busybox.tar" >/dev/null
    expect "rootless podman run echo hi" hi "$(upm run --rm --network none "$image" echo hi)"
    upm run -d --name d --network none "$image" sh -c 'echo started; sleep 600' >/dev/null
    expect "rootless podman exec" inside "$(upm exec d echo inside)"
    expect "rootless podman logs" started "$(upm logs d)"
    # sh as PID 1 of its namespace ignores SIGTERM, so stop ends it with SIGKILL, as with runc.
    upm stop -t 2 d >/dev/null 2>&1
    expect "rootless podman stop" 137 "$(upm inspect d --format '{{.State.ExitCode}}')"
    upm rm d >/dev/null
    run_it "rootless podman" "${as_user[*]} timeout --foreground -k 10 300 ${upodman[*]}"
    expect "rootless podman containers left" "" "$(upm ps -aq)"
    # Ends the pause process rootless podman leaves holding its user namespace.
    upm system migrate >/dev/null 2>&1 || true
    vm_log "podman rootless: run, run -d, exec, logs, stop (137), rm, run -it (3) ok"

    # The bench: the same container through containerd and through nook run, alternated.
    local nook_env
    read -r -a nook_env <<<"$env"
    nook() {
        env "${nook_env[@]}" NOOK_ROOT="$base/nook" XDG_RUNTIME_DIR="$base/run" \
            timeout -k 10 300 "$WORK/bin/nook" "$@"
    }
    nook image default >/dev/null
    # containerd's own share: the same task with runc (namespaces, no VM).
    local via_ctd=() via_nook=() via_runc=() verb
    for i in $(seq "${OCI_VM_ROUNDS:-2}"); do
        t0=$(date +%s%N)
        ctr run --rm --runc-binary "$base/nook-runtime-vm-timed" "$image" "b$i" true
        via_ctd+=("$(ms "$t0")")
        t0=$(date +%s%N)
        nook run --rm --isolation vm --boot cold busybox true
        via_nook+=("$(ms "$t0")")
        t0=$(date +%s%N)
        ctr run --rm --runc-binary "$(command -v runc)" "$image" "r$i" true
        via_runc+=("$(ms "$t0")")
    done
    vm_log "bench: ctr run --rm busybox true (VM column): ${via_ctd[*]} ms"
    vm_log "bench: nook run --rm --isolation vm --boot cold busybox true: ${via_nook[*]} ms"
    vm_log "bench: ctr run --rm busybox true with runc: ${via_runc[*]} ms"
    # Where the VM column's time went: nook-runtime's calls by verb, ms each, all rounds.
    for verb in create start state kill delete; do
        vm_log "bench: nook-runtime $verb: $(awk -v v="$verb" '{for (i = 2; i <= NF; i++) if ($i == v) {printf "%s ", $1; break}}' "$base/calls")ms"
    done
    vm_log "ok (in the rig)"
}

if [ "${1:-}" = --in-rig ]; then
    in_rig
    rig_clean /tmp/nook-oci-vm
    exit 0
fi

for tool in containerd ctr containerd-shim-runc-v2 podman conmon; do
    command -v "$tool" >/dev/null || vm_die "'$tool' is missing; run tests/setup.sh"
done
virtiofsd=${NOOK_VIRTIOFSD:-$(install_virtiofsd)}
[ -x "$virtiofsd" ] || vm_die "virtiofsd $virtiofsd is not an executable"
vm_user_work oci-vm runuser script
cp "$virtiofsd" "$WORK/bin/virtiofsd"
# The VM column's name, as install.sh makes it: a link to nook-runtime.
cp "$(vm_target_dir)/release/nook-runtime" "$WORK/bin/"
ln -s nook-runtime "$WORK/bin/nook-runtime-vm"
# busybox as an image tar (nook's default image, saved), for containerd and podman to import.
NOOK_ROOT="$WORK/store" timeout 300 "$WORK/bin/nook" image default >/dev/null
NOOK_ROOT="$WORK/store" timeout 300 "$WORK/bin/nook" save -o "$WORK/busybox.tar" busybox
rm -rf "$WORK/store"
chmod -R a+rX "$WORK"
tests/rig/run.sh --rw "$WORK" --timeout 1500 -- "$PWD/tests/vm/oci-vm.sh" --in-rig
echo "oci-vm: ok"
