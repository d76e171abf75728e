#!/usr/bin/env bash
# Network benchmarks of the namespace column, each a ratio against a peer measured in the same
# run, as the same unprivileged user:
# - start-up: `nook run --rm busybox true` with the default network (pasta) against
#   `--network none`, alternated round by round: what the network adds to a start;
# - bulk TCP: BYTES (default 1 GiB) sent by the host through a published port into a
#   container's `nc -l`, against the same through pasta driven directly (`pasta --config-net
#   -t PORT:5001 -- nc -l`, a namespace of its own): what nook adds to pasta's data path.
#
#   tests/bench/network.sh [ROUNDS] [BYTES]      (defaults 20 and 1073741824; NOOK_BIN
#                                                 overrides the binary)
#
# As root, the commands run as the test user `nooktest` (created, with subordinate ids, as the
# whole-program tests do); as another user, as that user. Prints medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds="${1:-20}"
bytes="${2:-1073741824}"
user=nooktest

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [ "${1:-}" = "--inner" ]; then
    work="$2"
    rounds="$3"
    bytes="$4"
    export NOOK_ROOT="$work/root"
    nook="$work/nook"
    "$nook" image default >/dev/null
    free_port() {
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    }
    # send PORT: BYTES zeros to 127.0.0.1:PORT, a second after its listener started (the stack
    # accepts on the host side at once, whatever listens behind it), until the listener has
    # read them all and closed; prints the ms taken.
    send() {
        sleep 1
        python3 - "$1" "$bytes" <<'PY'
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

    for _ in 1 2 3; do
        "$nook" run --rm busybox true
        "$nook" run --rm --network none busybox true
    done
    : >"$work/pasta.us"
    : >"$work/none.us"
    for _ in $(seq "$rounds"); do
        t0=$(date +%s%N)
        "$nook" run --rm busybox true
        t1=$(date +%s%N)
        "$nook" run --rm --network none busybox true
        t2=$(date +%s%N)
        echo $(((t1 - t0) / 1000)) >>"$work/pasta.us"
        echo $(((t2 - t1) / 1000)) >>"$work/none.us"
    done
    p=$(median "$work/pasta.us")
    n=$(median "$work/none.us")
    echo "start-up, nook run --rm busybox true: default network (pasta) $((p / 1000)).$(((p % 1000) / 100)) ms, --network none $((n / 1000)).$(((n % 1000) / 100)) ms (medians of $rounds)"
    awk -v p="$p" -v n="$n" 'BEGIN { printf "start-up ratio (pasta / none): %.2fx\n", p / n }'

    listen='nc -l -p 5001 >/dev/null'
    : >"$work/nook.ms"
    : >"$work/pasta.ms"
    for _ in 1 2 3; do
        port=$(free_port)
        "$nook" run -d --name bulk -p "127.0.0.1:$port:5001" busybox sh -c "$listen" >/dev/null
        send "$port" >>"$work/nook.ms"
        "$nook" rm -f bulk >/dev/null
        port=$(free_port)
        pasta --quiet --config-net -T none -U none -u none -t "127.0.0.1/$port:5001" -- \
            busybox sh -c "$listen" &
        send "$port" >>"$work/pasta.ms"
        wait
    done
    a=$(median "$work/nook.ms")
    b=$(median "$work/pasta.ms")
    echo "bulk TCP, $bytes bytes from the host into a published port: nook $a ms, pasta alone $b ms (medians of 3)"
    awk -v a="$a" -v b="$b" 'BEGIN { printf "bulk ratio (nook / pasta): %.2fx\n", a / b }'
    exit 0
fi

command -v pasta >/dev/null || { echo "pasta is not installed (tests/setup.sh installs passt)" >&2; exit 1; }
if [ -n "${NOOK_BIN:-}" ]; then
    bin="$NOOK_BIN"
else
    cargo build --quiet --release -p nook --bin nook
    bin="${CARGO_TARGET_DIR:-target}/release/nook"
fi
work=$(mktemp -d /tmp/nook-bench-net-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp "$bin" "$work/nook"
cp "$0" "$work/bench.sh"
chmod 755 "$work/nook" "$work/bench.sh"
if [ "$(id -u)" -eq 0 ]; then
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
    for f in /etc/subuid /etc/subgid; do
        grep -q "^$user:" "$f" 2>/dev/null || echo "$user:400000:65536" >>"$f"
    done
    chown "$user:" "$work"
    runuser -u "$user" -- env -i PATH="$PATH" HOME="$work" \
        bash "$work/bench.sh" --inner "$work" "$rounds" "$bytes"
else
    bash "$work/bench.sh" --inner "$work" "$rounds" "$bytes"
fi
