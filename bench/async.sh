#!/bin/bash
# bench/async.sh: the async row of `make bench`. The same concurrent
# workload (bench/async_bench.rs: CONNS connections x DEPTH reads in flight
# of 64 KiB, then of 4 KiB, random aligned offsets, SECS seconds, nbdkit
# memory 1G over a Unix socket) with our nbd::AsyncHandle and with
# libnbd's own `libnbd` crate built from the 1.22.2 source against the
# oracle C library, in interleaved pairs; prints medians of MiB/s, client
# CPU seconds per GiB, and of the per-pair throughput ratio ours/theirs.
#
# The libnbd crate is built at bench time from ORACLE_SRC (never copied
# here) into build/bench-async with a manifest generated below.
#
# Environment: PAIRS=5 SECS=5 CONNS=8 DEPTH=16 SIZES="65536 4096"
#   ORACLE_SRC=/var/tmp/libnbd-oracle/libnbd-1.22.2  ORACLE_PREFIX=/opt/libnbd-1.22
set -eu
export LC_ALL=C
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=${PAIRS:-5}
SECS=${SECS:-5}
CONNS=${CONNS:-8}
DEPTH=${DEPTH:-16}
SIZES=${SIZES:-65536 4096}
ORACLE_SRC=${ORACLE_SRC:-/var/tmp/libnbd-oracle/libnbd-1.22.2}
ORACLE_PREFIX=${ORACLE_PREFIX:-/opt/libnbd-1.22}
OUT=$ROOT/build/bench-async
if [ ! -d "$ORACLE_SRC/rust" ] || [ ! -e "$ORACLE_PREFIX/lib/libnbd.so.0" ]; then
    echo "bench/async.sh: no libnbd 1.22.2 source in $ORACLE_SRC or library in $ORACLE_PREFIX" \
         "(../shared/tools/build-oracle.sh)" >&2
    exit 2
fi
# configure writes this file; the tarball lacks it.
[ -e "$ORACLE_SRC/rust/libnbd-sys/libnbd_version" ] ||
    echo 1.22.2 > "$ORACLE_SRC/rust/libnbd-sys/libnbd_version"
mkdir -p "$OUT"
cat > "$OUT/Cargo.toml" <<TOML
[package]
name = "nbd-async-bench"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[[bin]]
name = "async_bench"
path = "$ROOT/bench/async_bench.rs"

[dependencies]
libnbd-rs = { path = "$ROOT", default-features = false, features = ["tokio"], optional = true }
# Without its default "log" feature, which turns on debugging (more CPU).
libnbd = { path = "$ORACLE_SRC/rust", default-features = false, features = ["tokio"], optional = true }
tokio = { version = "1.54", features = ["rt-multi-thread", "time"] }
libc = "0.2"

[features]
ours = ["dep:libnbd-rs"]
theirs = ["dep:libnbd"]

[profile.release]
debug = 1
codegen-units = 4
lto = "thin"
TOML
# One binary each (our crate exports nbd_* too). The libnbd crate denies
# warnings and tokio deprecates AsyncFd::new: cap lints. Link it with the
# oracle, not Debian's libnbd.
for which in ours theirs; do
    ( cd "$OUT" &&
      PKG_CONFIG_PATH=$ORACLE_PREFIX/lib/pkgconfig \
      RUSTFLAGS="--cap-lints=warn -L native=$ORACLE_PREFIX/lib -C link-arg=-Wl,-rpath,$ORACLE_PREFIX/lib" \
      CARGO_TARGET_DIR=$OUT/target-$which cargo build --release --quiet --features $which ) || exit 2
done
OURS_BIN=$OUT/target-ours/release/async_bench
THEIRS_BIN=$OUT/target-theirs/release/async_bench
ldd "$THEIRS_BIN" | grep -q "$ORACLE_PREFIX/lib/libnbd.so.0" || {
    echo "bench/async.sh: $THEIRS_BIN does not load the oracle's libnbd" >&2; exit 2; }
! ldd "$OURS_BIN" | grep -q libnbd.so || {
    echo "bench/async.sh: $OURS_BIN loads a libnbd.so" >&2; exit 2; }

TMP=$(mktemp -d)
SOCK=$TMP/nbd.sock
nbdkit -f -U "$SOCK" -P "$TMP/pid" --exit-with-parent memory 1G &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-22s %12s %12s %10s %10s %8s\n' "async ${CONNS}x${DEPTH}" "ours MiB/s" "libnbd MiB/s" "ours s/GiB" "libnbd s/GiB" "ratio"
for size in $SIZES; do
    : > "$TMP/o"; : > "$TMP/t"; : > "$TMP/r"
    for p in $(seq "$PAIRS"); do
        if [ $((p % 2)) = 1 ]; then
            o=$("$OURS_BIN" ours "$SOCK" "$size" "$CONNS" "$DEPTH" "$SECS")
            t=$("$THEIRS_BIN" theirs "$SOCK" "$size" "$CONNS" "$DEPTH" "$SECS")
        else
            t=$("$THEIRS_BIN" theirs "$SOCK" "$size" "$CONNS" "$DEPTH" "$SECS")
            o=$("$OURS_BIN" ours "$SOCK" "$size" "$CONNS" "$DEPTH" "$SECS")
        fi
        echo "$o" >> "$TMP/o"; echo "$t" >> "$TMP/t"
        echo "$o $t" | awk '{print $1/$3}' >> "$TMP/r"
    done
    printf '%-22s %12s %12s %10s %10s %8s\n' "pread $((size / 1024)) KiB" \
        "$(cut -d' ' -f1 "$TMP/o" | median)" "$(cut -d' ' -f1 "$TMP/t" | median)" \
        "$(cut -d' ' -f2 "$TMP/o" | median)" "$(cut -d' ' -f2 "$TMP/t" | median)" \
        "$(median < "$TMP/r")x"
done
