#!/bin/bash
# tests/run-example.sh STAGE
#
# The seed example test.  STAGE is an install prefix holding this library
# (as `make example` stages it: STAGE/lib/libnbd.so.0, STAGE/include/libnbd.h,
# STAGE/lib/pkgconfig/libnbd.pc).  Compiles ../shared/examples/connect-command.c
# unchanged with the flags pkg-config gives for the staged libnbd.pc (or,
# without ../shared, examples/write-read.c), runs it, and checks that it
# exited 0 and that the dynamic loader really used STAGE/lib/libnbd.so.0.
# Exit status: 0 pass, 1 fail, 2 usage error; prints "SKIP:" and exits 0
# when there is no example to build.

set -u
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 STAGE" >&2; exit 2; }
stage=$(cd "$1" && pwd) || exit 2
pcdir="$stage/lib/pkgconfig"

shared_example="$root/../shared/examples/connect-command.c"
if [ -e "$shared_example" ]; then
    src=$(cd "$(dirname "$shared_example")" && pwd)/$(basename "$shared_example")
else
    echo "note: $root/../shared is absent; using examples/write-read.c instead of" \
        "../shared/examples/connect-command.c"
    src="$root/examples/write-read.c"
    if [ ! -e "$src" ]; then
        echo "SKIP: $src does not exist either; no example to run"
        exit 0
    fi
fi

for tool in pkg-config nbdkit; do
    command -v $tool >/dev/null || { echo "FAIL: $tool not found (run tests/ensure-deps.sh)"; exit 1; }
done

# The staged .pc must be the one pkg-config finds, not Debian's.
pc_prefix=$(PKG_CONFIG_PATH="$pcdir" pkg-config --variable=prefix libnbd)
if [ "$pc_prefix" != "$stage" ]; then
    echo "FAIL: pkg-config finds libnbd.pc with prefix '$pc_prefix', not the staged $stage"
    exit 1
fi
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs libnbd) || {
    echo "FAIL: pkg-config --cflags --libs libnbd"; exit 1; }
pc_version=$(PKG_CONFIG_PATH="$pcdir" pkg-config --modversion libnbd)
echo "pkg-config: $flags (version $pc_version)"
# The version is the libnbd release we match, the one nbd_get_version
# reports (src/handle/mod.rs VERSION), and the oracle's when it is there.
want_version=$(sed -n 's/^pub const VERSION: &str = "\([0-9.]*\)";.*/\1/p' "$root/src/handle/mod.rs")
if [ -z "$want_version" ] || [ "$pc_version" != "$want_version" ]; then
    echo "FAIL: libnbd.pc has version '$pc_version', nbd_get_version reports '$want_version'"
    exit 1
fi
# shellcheck source=tests/oracle.sh
. "$root/tests/oracle.sh"
if oracle_ok && [ "$(oracle_version)" != "$pc_version" ]; then
    echo "FAIL: libnbd.pc has version $pc_version, the oracle is libnbd $(oracle_version)"
    exit 1
fi

tmp=$(mktemp -d /tmp/run-example.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
exe="$tmp/$(basename "$src" .c)"

# shellcheck disable=SC2086 # $flags is a list of words
if ! ${CC:-cc} -o "$exe" "$src" $flags; then
    echo "FAIL: could not compile $src"
    exit 1
fi
if ! readelf -d "$exe" | grep -q 'NEEDED.*\[libnbd\.so\.0\]'; then
    echo "FAIL: $exe does not link libnbd.so.0"
    exit 1
fi

# Run with the loader's library log in files ($tmp/ld.<pid>), so the output
# of the example (and of nbdkit, which inherits the environment) stays clean.
LD_LIBRARY_PATH="$stage/lib" LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$exe"
rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL: $(basename "$src") exited with status $rc"
    exit 1
fi

# Which libnbd.so.0 did the example's own process load?
ours=$(grep -l "calling init: $stage/lib/libnbd.so.0\$" "$tmp"/ld.* 2>/dev/null | head -1)
loaded=$(grep -h 'calling init: .*libnbd\.so' "$tmp"/ld.* 2>/dev/null | sed 's/.*calling init: //' | sort -u)
if [ -z "$ours" ]; then
    echo "FAIL: the example did not load $stage/lib/libnbd.so.0 (loaded: ${loaded:-no libnbd})"
    exit 1
fi
if grep -v -x "$stage/lib/libnbd.so.0" <<<"$loaded" | grep -q .; then
    echo "FAIL: another libnbd was loaded too: $(grep -v -x "$stage/lib/libnbd.so.0" <<<"$loaded")"
    exit 1
fi
echo "PASS: $(basename "$src") exited 0 using $stage/lib/libnbd.so.0"
exit 0
