#!/bin/sh
# Builds the guest agent as a static binary (glibc, +crt-static: there is no musl toolchain in
# the project's environment) and prints its path on the last line of stdout.
#
# --target is given explicitly so that RUSTFLAGS applies to the agent only, never to build
# scripts or proc macros (which must stay dynamic host programs).
set -eu
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# Stripped: the initramfs is copied into every VM's memory at boot, so size is boot time.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --release --locked -p nook-agent --bin nook-agent --target "$target" >&2
dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$dir/$target/release/nook-agent"
if ! file "$bin" | grep -Eq 'static-pie linked|statically linked'; then
    echo "build-static.sh: $bin is not statically linked" >&2
    exit 1
fi
echo "$bin"
