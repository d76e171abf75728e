#!/usr/bin/env bash
# Benchmark: `nook pull` of the debootstrap image from a local docker-registry against
# `skopeo copy docker://... oci:DIR` of the same image, alternated round by round in one run
# (each into an empty destination, registry and page cache warm, after an untimed `sync` so
# neither pays for the other's writeback). Prints each median wall time,
# the ratio, and the peak RSS (from /usr/bin/time).
#
#   tests/bench/pull-vs-skopeo.sh [ROUNDS]     (default 10; NOOK_BIN overrides the binary)
#
# The image is the debootstrap fixture (tests/fixtures/debootstrap.sh, needs root the first
# time) imported as one gzip layer and pushed by nook.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/common.sh

rounds=${1:-10}
for tool in docker-registry skopeo gzip /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed (tests/setup.sh installs it)" >&2; exit 1; }
done
if [ -n "${NOOK_BIN:-}" ]; then
    nook=$NOOK_BIN
else
    cargo build --quiet --release -p nook --bin nook
    nook="${CARGO_TARGET_DIR:-target}/release/nook"
fi
fixture=$(tests/fixtures/debootstrap.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/nook-pull-bench.XXXXXX")
registry_pid=""
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
  secret: bench
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

image="127.0.0.1:$port/bench/debian:v1"
gzip -1 -c "$fixture" >"$work/layer.tar.gz"
NOOK_ROOT="$work/src" "$nook" import "$work/layer.tar.gz" "$image" >/dev/null
NOOK_ROOT="$work/src" "$nook" push -q "$image" >/dev/null
layer_bytes=$(stat -c %s "$work/layer.tar.gz")

run_nook() {
    rm -rf "$work/dst"
    sync
    NOOK_ROOT="$work/dst" /usr/bin/time -f "%e %M" -o "$work/t" "$nook" pull -q "$image" >/dev/null
    cat "$work/t" >>"$work/nook.times"
}
run_skopeo() {
    rm -rf "$work/oci"
    sync
    /usr/bin/time -f "%e %M" -o "$work/t" skopeo copy --quiet --src-tls-verify=false \
        "docker://$image" "oci:$work/oci:bench" >/dev/null
    cat "$work/t" >>"$work/skopeo.times"
}
# Warm-up: registry files and binaries in the page cache.
run_nook
run_skopeo
: >"$work/nook.times"
: >"$work/skopeo.times"
for _ in $(seq "$rounds"); do
    run_nook
    run_skopeo
done

median() { awk "{print \$$2}" "$1" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
maxcol() { awk "{print \$$2}" "$1" | sort -n | tail -1; }
nt=$(median "$work/nook.times" 1)
st=$(median "$work/skopeo.times" 1)
nr=$(median "$work/nook.times" 2)
sr=$(median "$work/skopeo.times" 2)
echo "image: debootstrap $(basename "$fixture"), one gzip layer of $((layer_bytes / 1048576)) MiB; rounds: $rounds (alternated)"
echo "skopeo: $(skopeo --version)"
printf 'nook pull           median %6.3f s   peak RSS median %8.0f KiB (max %s)\n' "$nt" "$nr" "$(maxcol "$work/nook.times" 2)"
printf 'skopeo copy oci:    median %6.3f s   peak RSS median %8.0f KiB (max %s)\n' "$st" "$sr" "$(maxcol "$work/skopeo.times" 2)"
awk -v a="$nt" -v b="$st" 'BEGIN { printf "ratio nook/skopeo: %.2fx\n", a / b }'
