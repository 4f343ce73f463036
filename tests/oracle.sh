#!/bin/bash
# tests/oracle.sh: the oracle of the differential tests, the real libnbd
# 1.22.x (1.22.2), installed under ORACLE_PREFIX (default /opt/libnbd-1.22;
# override with LIBNBD_ORACLE=PREFIX).
#
#   tests/oracle.sh ensure    build and install it when missing, by running
#                             ../shared/tools/build-oracle.sh (next to the
#                             repository; BUILD_ORACLE=PATH overrides), which
#                             needs root for its build dependencies; then
#                             check the library reports 1.22.x
#   tests/oracle.sh check     only the check: exit 1 if it is missing
#   tests/oracle.sh prefix    print ORACLE_PREFIX
#   tests/oracle.sh version   print the version the oracle's library reports
#
# Sourced (". tests/oracle.sh"), it only sets ORACLE_PREFIX, ORACLE_LIBDIR,
# ORACLE_INCDIR, ORACLE_BINDIR, ORACLE_SERIES and the function
# oracle_version.
#
# The oracle is only ever loaded by tests and benchmarks, never by the
# product.

ORACLE_PREFIX=${LIBNBD_ORACLE:-/opt/libnbd-1.22}
ORACLE_LIBDIR=$ORACLE_PREFIX/lib
ORACLE_INCDIR=$ORACLE_PREFIX/include
ORACLE_BINDIR=$ORACLE_PREFIX/bin
ORACLE_SERIES=1.22

# The version the oracle's libnbd.so.0 reports (its nbdinfo prints it; the
# binaries find their library through their RUNPATH).
oracle_version() {
    [ -e "$ORACLE_LIBDIR/libnbd.so.0" ] && [ -x "$ORACLE_BINDIR/nbdinfo" ] || return 1
    env -u LD_LIBRARY_PATH -u LD_PRELOAD "$ORACLE_BINDIR/nbdinfo" --version 2>/dev/null |
        sed -n 's/^libnbd \([0-9][0-9.]*\).*/\1/p'
}

oracle_ok() {
    local v
    v=$(oracle_version) || return 1
    case "$v" in "$ORACLE_SERIES".*) [ -e "$ORACLE_INCDIR/libnbd.h" ] ;; *) return 1 ;; esac
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    return 0
fi

set -u
top=$(cd "$(dirname "$0")/.." && pwd)

case "${1:-}" in
    prefix)
        echo "$ORACLE_PREFIX"
        ;;
    version)
        oracle_version || exit 1
        ;;
    check)
        if oracle_ok; then
            echo "oracle: libnbd $(oracle_version) in $ORACLE_PREFIX"
        else
            echo "oracle: no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX (tests/oracle.sh ensure builds it)"
            exit 1
        fi
        ;;
    ensure)
        if oracle_ok; then
            echo "oracle: libnbd $(oracle_version) in $ORACLE_PREFIX"
            exit 0
        fi
        script=${BUILD_ORACLE:-$top/../shared/tools/build-oracle.sh}
        if [ ! -f "$script" ]; then
            echo "oracle: no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX, and no $script to build it"
            exit 1
        fi
        if [ "$(id -u)" -ne 0 ]; then
            echo "oracle: no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX; as root, run:"
            echo "  bash $script $ORACLE_PREFIX"
            exit 1
        fi
        echo "oracle: building libnbd $ORACLE_SERIES.x into $ORACLE_PREFIX ($script, 3-4 minutes)"
        bash "$script" "$ORACLE_PREFIX" || exit 1
        if oracle_ok; then
            echo "oracle: libnbd $(oracle_version) in $ORACLE_PREFIX"
        else
            echo "oracle: $script finished, but $ORACLE_PREFIX has no working libnbd $ORACLE_SERIES.x"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 ensure | check | prefix | version" >&2
        exit 2
        ;;
esac
