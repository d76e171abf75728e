#!/usr/bin/env bash
# What a container costs through nook-runtime against runc, as its callers run it, alternated
# round by round in one run:
#   - `podman --runtime R run --rm busybox true`, rootless (podman's own vfs store);
#   - `ctr run --rm --runc-binary R busybox true`, a containerd of the bench's own, as root.
# Prints each median, the ratio nook-runtime/runc, and the raw times.
#
#   tests/bench/oci-vs-runc.sh [ROUNDS] [podman|ctr|both]   (default 20, both)
#
# NOOK_BIN and NOOK_RUNTIME_BIN name the binaries (default: a release build). As root, podman
# runs as the test user `nooktest` (created, with subordinate ids, as the whole-program tests
# do); as another user, podman runs as that user and containerd through `sudo -n`.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds="${1:-20}"
which="${2:-both}"
user=nooktest

median() { sort -n "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'; }

# Runs `run_nook` and `run_runc` alternately ROUNDS times (after 3 warm-up rounds each) and
# reports the medians under the label $1.
alternate() {
    local label="$1" dir="$2"
    for _ in 1 2 3; do run_nook; run_runc; done
    : >"$dir/nook.us"
    : >"$dir/runc.us"
    for i in $(seq "$rounds"); do
        # Which goes first alternates too, so neither always runs on a cache the other warmed.
        if [ $((i % 2)) -eq 0 ]; then
            t0=$(date +%s%N); run_nook; t1=$(date +%s%N); run_runc; t2=$(date +%s%N)
            echo $(((t1 - t0) / 1000)) >>"$dir/nook.us"
            echo $(((t2 - t1) / 1000)) >>"$dir/runc.us"
        else
            t0=$(date +%s%N); run_runc; t1=$(date +%s%N); run_nook; t2=$(date +%s%N)
            echo $(((t1 - t0) / 1000)) >>"$dir/runc.us"
            echo $(((t2 - t1) / 1000)) >>"$dir/nook.us"
        fi
    done
    local nm rm_
    nm=$(median "$dir/nook.us")
    rm_=$(median "$dir/runc.us")
    echo "$label: $rounds rounds alternated, user $(id -un), $(runc --version | head -1)"
    echo "  nook-runtime  median ${nm} ms"
    echo "  runc          median ${rm_} ms"
    awk -v a="$nm" -v b="$rm_" 'BEGIN { printf "  ratio nook-runtime/runc: %.2fx\n", a / b }'
    echo "  nook-runtime ms: $(awk '{printf "%.0f ", $1/1000}' "$dir/nook.us")"
    echo "  runc ms:         $(awk '{printf "%.0f ", $1/1000}' "$dir/runc.us")"
}

if [ "${1:-}" = "--podman" ]; then
    work="$2"
    rounds="$3"
    export NOOK_ROOT="$work/nook-root"
    "$work/nook" image default >/dev/null
    "$work/nook" save -o "$work/busybox.tar" busybox
    p=(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver vfs
        --cgroup-manager cgroupfs --events-backend file)
    "${p[@]}" load -q -i "$work/busybox.tar" >/dev/null
    runc_bin=$(command -v runc)
    run_nook() { "${p[@]}" --runtime "$work/nook-runtime" run --rm busybox true; }
    run_runc() { "${p[@]}" --runtime "$runc_bin" run --rm busybox true; }
    alternate "podman run --rm busybox true" "$work"
    "${p[@]}" system migrate >/dev/null 2>&1 || true
    exit 0
fi

command -v runc >/dev/null || { echo "runc is not installed (tests/setup.sh installs it)" >&2; exit 1; }
if [ -n "${NOOK_BIN:-}" ] && [ -n "${NOOK_RUNTIME_BIN:-}" ]; then
    bin="$NOOK_BIN"
    runtime_bin="$NOOK_RUNTIME_BIN"
else
    cargo build --quiet --release -p nook --bin nook --bin nook-runtime
    bin="${CARGO_TARGET_DIR:-target}/release/nook"
    runtime_bin="${CARGO_TARGET_DIR:-target}/release/nook-runtime"
fi
work=$(mktemp -d /tmp/nook-oci-bench-XXXXXX)
ctd_pid=
cleanup() {
    if [ -n "$ctd_pid" ]; then
        as_root kill "$ctd_pid" 2>/dev/null || true
        for _ in $(seq 50); do as_root kill -0 "$ctd_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    as_root rm -rf "$work"
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
trap cleanup EXIT
chmod 755 "$work"
cp "$bin" "$work/nook"
cp "$runtime_bin" "$work/nook-runtime"
cp "$0" "$work/bench.sh"
chmod 755 "$work/nook" "$work/nook-runtime" "$work/bench.sh"

if [ "$which" = podman ] || [ "$which" = both ]; then
    command -v podman >/dev/null || { echo "podman is not installed (tests/setup.sh installs it)" >&2; exit 1; }
    mkdir "$work/podman-bench"
    chmod 755 "$work/podman-bench"
    cp "$work/nook" "$work/nook-runtime" "$work/podman-bench/"
    if [ "$(id -u)" -eq 0 ]; then
        id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
        for f in /etc/subuid /etc/subgid; do
            grep -q "^$user:" "$f" 2>/dev/null || echo "$user:400000:65536" >>"$f"
        done
        chown -R "$user:" "$work/podman-bench"
        runuser -u "$user" -- env -i PATH="$PATH" HOME="$work/podman-bench" \
            XDG_RUNTIME_DIR="$work/podman-bench/xdg" \
            bash "$work/bench.sh" --podman "$work/podman-bench" "$rounds"
    else
        env HOME="$work/podman-bench" XDG_RUNTIME_DIR="$work/podman-bench/xdg" \
            bash "$work/bench.sh" --podman "$work/podman-bench" "$rounds"
    fi
fi

if [ "$which" = ctr ] || [ "$which" = both ]; then
    command -v containerd >/dev/null || { echo "containerd is not installed (tests/setup.sh installs it)" >&2; exit 1; }
    c="$work/containerd"
    mkdir "$c"
    cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
EOF
    # timeout's pid, recorded by the shell it replaces: TERM to it ends containerd too.
    as_root sh -c 'echo $$ >"$1/containerd.pid"; exec timeout 3600 containerd --config "$1/config.toml"' \
        sh "$c" >"$c/containerd.log" 2>&1 &
    for _ in $(seq 50); do [ -s "$c/containerd.pid" ] && break; sleep 0.1; done
    ctd_pid=$(cat "$c/containerd.pid")
    ctr=(as_root timeout 120 ctr -a "$c/containerd.sock")
    for _ in $(seq 300); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
    [ -f "$work/podman-bench/busybox.tar" ] && tar="$work/podman-bench/busybox.tar" || {
        tar="$work/busybox.tar"
        NOOK_ROOT="$work/nook-root" "$work/nook" image default >/dev/null
        NOOK_ROOT="$work/nook-root" "$work/nook" save -o "$tar" busybox
    }
    "${ctr[@]}" images import "$tar" >/dev/null
    runc_bin=$(command -v runc)
    n=0
    run_nook() { n=$((n + 1)); "${ctr[@]}" run --rm --runc-binary "$work/nook-runtime" docker.io/library/busybox:latest "bench-n$n" true; }
    run_runc() { n=$((n + 1)); "${ctr[@]}" run --rm --runc-binary "$runc_bin" docker.io/library/busybox:latest "bench-r$n" true; }
    alternate "ctr run --rm busybox true (containerd 1.6, root)" "$c"
fi
