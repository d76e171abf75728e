#!/bin/sh
# Builds and runs the frame-decoder fuzz target on a stable toolchain (no cargo-fuzz, no
# nightly): the same SanitizerCoverage instrumentation cargo-fuzz asks rustc for, without the
# nightly-only address sanitizer. Rust's own bounds and overflow checks (debug assertions are
# on) turn memory bugs into panics, which libFuzzer reports as crashes.
#
#   agent/fuzz/run.sh [SECONDS]     default 60; findings land in agent/fuzz/artifacts/
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation away from build scripts, which cannot link it.
cargo build --release --bin frame_decoder --target x86_64-unknown-linux-gnu >&2
mkdir -p corpus artifacts
# The hostile seeds of the regression test are a good start; libFuzzer adds what it finds.
exec target/x86_64-unknown-linux-gnu/release/frame_decoder -max_total_time="$secs" -max_len=4096 \
    -artifact_prefix=artifacts/ corpus seeds
