#!/usr/bin/env bash
# Fuzzes the client state machine with arbitrary server bytes (libFuzzer via
# libfuzzer-sys, built on stable Rust with rustc's sancov instrumentation).
#
#   fuzz/run.sh SECONDS    fuzz for SECONDS, growing fuzz/corpus/server_bytes
#   fuzz/run.sh --check    a short deterministic pass from the seed corpus
#                          (for `make check`); fails on any crash or hang
#   fuzz/run.sh --replay FILE...   run inputs (e.g. a crash artifact) once
#
# Crashing inputs are saved under fuzz/artifacts/. Executions and speed
# come from libFuzzer's final statistics.
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:?usage: fuzz/run.sh SECONDS | --check | --replay FILE...}
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
seeds=seeds/server_bytes

if [ "$mode" = --replay ]; then
    shift
    cargo build --quiet --release --bin replay
    exec "$CARGO_TARGET_DIR/release/replay" replay "$@"
fi

# --target keeps the instrumentation off build scripts and proc macros.
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
)
RUSTFLAGS="${flags[*]}" cargo build --quiet --release --target "$host" --bin server_bytes
bin=$CARGO_TARGET_DIR/$host/release/server_bytes
mkdir -p artifacts

common=(-max_len=65536 -timeout=10 -rss_limit_mb=4096 -artifact_prefix=artifacts/
        -print_final_stats=1)
log=$(mktemp)
trap 'rm -rf "$log" "${scratch:-}"' EXIT

if [ "$mode" = --check ]; then
    # Fixed seed and run count: the same inputs every time. New inputs go
    # to a scratch directory, so the committed seeds stay as they are.
    scratch=$(mktemp -d)
    runs=${FUZZ_CHECK_RUNS:-30000}
    set +e
    "$bin" "${common[@]}" -seed=1 -runs="$runs" -max_total_time=50 \
        "$scratch" "$seeds" >"$log" 2>&1
    rc=$?
    set -e
else
    case $mode in
        '' | *[!0-9]*) echo "fuzz/run.sh: SECONDS must be a number" >&2; exit 2 ;;
    esac
    mkdir -p corpus/server_bytes
    set +e
    "$bin" "${common[@]}" -max_total_time="$mode" corpus/server_bytes "$seeds" >"$log" 2>&1
    rc=$?
    set -e
fi

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 || true)
if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: FAILED (libFuzzer exit $rc) after ${execs:-?} executions; see fuzz/artifacts/"
    exit 1
fi
echo "fuzz: ${execs:-?} executions, ${speed:-?} exec/s, ${cov:-cov ?}, 0 crashes, 0 hangs"
