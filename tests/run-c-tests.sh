#!/bin/bash
# Build and run the C test suite (tests/c/*.c) and the C examples
# (examples/*.c) against a libnbd.
#
#   tests/run-c-tests.sh LIBDIR INCLUDEDIR   # our library: LIBDIR holds
#                                            # libnbd.so[.0], INCLUDEDIR
#                                            # holds libnbd.h
#   tests/run-c-tests.sh --oracle            # the oracle, libnbd 1.22.2
#                                            # (tests/oracle.sh)
#
# Prints one line per program ("PASS name", "FAIL name" or "SKIP name")
# and finally "N passed, N failed".  Exits non-zero if anything failed.
#
# Programs named *-ours.c test behaviour that only our library has
# (the C libnbd crashes there); they are skipped with --oracle and run
# with NBD_TEST_OURS=1 otherwise.  A program exiting 77 is a SKIP.
#
# With --oracle, a program listed in tests/c/oracle-known-failures (a
# difference of our library from libnbd 1.22.2 that the test still asserts
# the old way, with the issue item that fixes it) is an XFAIL when it fails,
# and a failure (XPASS: remove it from the list) when it passes.
#
# TEST_WRAPPER="valgrind --error-exitcode=99 ..." runs each program
# under that command (not the servers it starts); TEST_TIMEOUT (60 s)
# limits each program.

set -u

usage () {
    echo "usage: $0 LIBDIR INCLUDEDIR" >&2
    echo "       $0 --oracle" >&2
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

mode=
case "${1:-}" in
    --oracle)
        [ $# -eq 1 ] || usage
        mode=oracle
        # shellcheck source=tests/oracle.sh
        . "$here/oracle.sh"
        if ! oracle_ok; then
            echo "$0: no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX (run tests/oracle.sh ensure)" >&2
            exit 2
        fi
        cppflags=(-I "$ORACLE_INCDIR")
        ldflags=(-L "$ORACLE_LIBDIR" -lnbd)
        runenv=("LD_LIBRARY_PATH=$ORACLE_LIBDIR")
        expected_lib=$(readlink -f "$ORACLE_LIBDIR/libnbd.so.0")
        ;;
    ""|-*)
        usage
        ;;
    *)
        [ $# -eq 2 ] || usage
        mode=ours
        libdir=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no such directory: $1" >&2; exit 2; }
        incdir=$(cd "$2" 2>/dev/null && pwd) || { echo "$0: no such directory: $2" >&2; exit 2; }
        if [ ! -f "$incdir/libnbd.h" ]; then
            echo "$0: $incdir/libnbd.h not found" >&2
            exit 2
        fi
        if [ -e "$libdir/libnbd.so" ]; then
            ldflags=(-L "$libdir" -lnbd)
        elif [ -e "$libdir/libnbd.so.0" ]; then
            ldflags=(-L "$libdir" -l:libnbd.so.0)
        else
            echo "$0: neither $libdir/libnbd.so nor $libdir/libnbd.so.0 exists" >&2
            exit 2
        fi
        cppflags=(-I "$incdir")
        runenv=("LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
                "NBD_TEST_OURS=1")
        expected_lib=
        ;;
esac

command -v nbdkit >/dev/null || { echo "$0: nbdkit is required" >&2; exit 2; }
CC=${CC:-cc}
cflags=(-std=gnu11 -Wall -Werror -O1 -g -pthread)

build=$(mktemp -d "${TMPDIR:-/tmp}/rust-libnbd-c-tests.XXXXXX")
cleanup () { [ -n "${KEEP_BUILD:-}" ] || rm -rf "$build"; }
trap cleanup EXIT
mkdir -p "$build/tests" "$build/examples"

# Make runs reproducible: no debug chatter, C locale for strerror().
unset LIBNBD_DEBUG
export LC_ALL=C

passed=0
failed=0
skipped=0
xfailed=0

# known_failure NAME: prints the reason when NAME is in the oracle's
# known-failures list (only with --oracle).
known_failure () {
    [ "$mode" = oracle ] || return 1
    awk -v n="$1" '$1 == n { $1 = ""; sub(/^ +/, ""); print; found = 1 }
                   END { exit !found }' "$top/tests/c/oracle-known-failures"
}

pass () { echo "PASS $1"; passed=$((passed + 1)); }
skip () { echo "SKIP $1${2:+ ($2)}"; skipped=$((skipped + 1)); }
fail () {
    echo "FAIL $1${2:+ ($2)}"
    failed=$((failed + 1))
    if [ -n "${3:-}" ] && [ -s "$3" ]; then
        tail -n 30 "$3" | sed 's/^/    | /'
    fi
}

# compile SRC OUT LOG: returns the compiler's status.
compile () {
    "$CC" "${cflags[@]}" "${cppflags[@]}" -I "$top/tests/c" \
          -o "$2" "$1" "${ldflags[@]}" >"$3" 2>&1
}

# run LOG PROG ARGS...: run with the library environment and a time
# limit; stdout+stderr go to LOG, stdout alone to LOG.out.
run () {
    local log=$1; shift
    # The subshell keeps bash's "Segmentation fault" notices out of
    # our output (they land in the log instead).
    # TEST_WRAPPER (split on spaces) runs the program itself under e.g.
    # valgrind; the servers the program starts are not wrapped.
    # shellcheck disable=SC2086
    local slow=()
    [ -n "${TEST_WRAPPER:-}" ] && slow=(NBD_TEST_SLOW=1)
    ( env "${runenv[@]}" "${slow[@]}" timeout "${TEST_TIMEOUT:-60}" ${TEST_WRAPPER:-} "$@" >"$log.out" 2>"$log.err"
      exit $? ) 2>>"$log.err"
    local r=$?
    cat "$log.out" "$log.err" >"$log"
    return $r
}

# --- which libnbd is loaded? --------------------------------------------
# Checked once, before anything else: the rest is meaningless if the
# programs are not running on the library we think they are.
name=which-libnbd
log="$build/tests/$name.log"
if ! compile "$top/tests/c/$name.c" "$build/tests/$name" "$log"; then
    fail "$name" "compile" "$log"
elif ! run "$log" "$build/tests/$name"; then
    fail "$name" "exit status" "$log"
else
    loaded=$(readlink -f "$(head -n1 "$log.out")")
    if [ "$mode" = oracle ]; then
        ok=$([ "$loaded" = "$expected_lib" ] && echo y)
        want=$expected_lib
    else
        ok=$([ "$(dirname "$loaded")" = "$(readlink -f "$libdir")" ] && echo y)
        want="a libnbd in $libdir"
    fi
    if [ -n "$ok" ]; then
        echo "PASS $name ($loaded)"
        passed=$((passed + 1))
    else
        echo "FAIL $name (loaded $loaded, expected $want)"
        failed=$((failed + 1))
    fi
fi

# --- the tests ----------------------------------------------------------
for src in "$top"/tests/c/*.c; do
    name=$(basename "$src" .c)
    [ "$name" = which-libnbd ] && continue
    log="$build/tests/$name.log"
    case "$name" in
        *-ours)
            if [ "$mode" = oracle ]; then
                skip "$name" "only for our library"
                continue
            fi
            ;;
    esac
    if ! compile "$src" "$build/tests/$name" "$log"; then
        fail "$name" "compile" "$log"
        continue
    fi
    run "$log" "$build/tests/$name"
    r=$?
    if why=$(known_failure "$name"); then
        case $r in
            0) fail "$name" "XPASS: passes on the oracle; remove it from tests/c/oracle-known-failures" ;;
            77) skip "$name" "$(head -n1 "$log.err")" ;;
            *) echo "XFAIL $name (exit status $r; known: $why)"
               sed -n 's/.*FAIL: /    | FAIL: /p' "$log" | head -n 3
               xfailed=$((xfailed + 1)) ;;
        esac
        continue
    fi
    case $r in
        0) pass "$name" ;;
        77) skip "$name" "$(head -n1 "$log.err")" ;;
        124) fail "$name" "timed out" "$log" ;;
        *)  if [ $r -gt 128 ]; then
                fail "$name" "killed by signal $((r - 128))" "$log"
            else
                fail "$name" "exit status $r" "$log"
            fi ;;
    esac
done

# --- the examples -------------------------------------------------------
nbdkit_s=(nbdkit -s --exit-with-parent)

# Expected hexdump of sector 0 of "nbdkit pattern": each 8-byte word
# holds its own offset, big-endian.
expected_pattern_dump () {
    awk 'BEGIN {
        for (row = 0; row < 512; row += 16) {
            line = sprintf ("%08x:", row); asc = ""
            for (i = row; i < row + 16; i++) {
                w = i - i % 8; k = i % 8
                b = (k == 6) ? int (w / 256) % 256 : (k == 7) ? w % 256 : 0
                line = line sprintf (" %02x", b)
                asc = asc ((b >= 32 && b < 127) ? sprintf ("%c", b) : ".")
            }
            print line "  |" asc "|"
        }
    }'
}

check_example () {
    local name=$1 bin=$2 log=$3
    case "$name" in
        get-size)
            run "$log" "$bin" "${nbdkit_s[@]}" pattern 1M || return 1
            [ "$(cat "$log.out")" = 1048576 ] || { echo "pattern 1M: wrong output" >>"$log"; return 1; }
            run "$log.2" "$bin" "${nbdkit_s[@]}" memory 12345 || { cat "$log.2" >>"$log"; return 1; }
            [ "$(cat "$log.2.out")" = 12345 ] || { echo "memory 12345: wrong output: $(cat "$log.2.out")" >>"$log"; return 1; }
            # No arguments: usage error, non-zero exit.
            if run "$log.3" "$bin"; then
                echo "no arguments: exit status 0" >>"$log"; return 1
            fi
            ;;
        read-first-sector)
            run "$log" "$bin" "${nbdkit_s[@]}" pattern 1M || return 1
            expected_pattern_dump >"$log.expected"
            if ! cmp -s "$log.out" "$log.expected"; then
                diff "$log.expected" "$log.out" >>"$log"
                return 1
            fi
            # A server that cannot be started is an error.
            if run "$log.2" "$bin" /nonexistent/nbd-server; then
                echo "nonexistent server: exit status 0" >>"$log"; return 1
            fi
            ;;
        write-read)
            run "$log" "$bin" || return 1
            grep -q 'OK' "$log.out" || { echo "no OK in output" >>"$log"; return 1; }
            ;;
        *)
            # An example without a specific check: must at least build
            # and exit 0 when given no arguments is not guaranteed, so
            # only building is checked.
            ;;
    esac
    return 0
}

for src in "$top"/examples/*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    log="$build/examples/$name.log"
    if ! compile "$src" "$build/examples/$name" "$log"; then
        fail "examples/$name" "compile" "$log"
        continue
    fi
    if check_example "$name" "$build/examples/$name" "$log"; then
        pass "examples/$name"
    else
        fail "examples/$name" "" "$log"
    fi
done

[ "$skipped" -gt 0 ] && echo "($skipped skipped)"
[ "$xfailed" -gt 0 ] && echo "($xfailed known failures on the oracle, tests/c/oracle-known-failures)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
