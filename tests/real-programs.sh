#!/bin/bash
# tests/real-programs.sh LIBDIR
#
# Already-built libnbd programs (nbdinfo, nbdcopy, nbddump, nbdsh, nbdfuse,
# and nbdkit's nbd plugin) run unchanged on our library, in two suites:
#   [1.22.2]  the oracle's programs (tests/oracle.sh: /opt/libnbd-1.22/bin,
#             its python module for nbdsh), compared with themselves on the
#             oracle's library, libnbd 1.22.2;
#   [debian]  Debian's programs (libnbd-bin 1.14, /usr/bin), compared with
#             themselves on Debian's libnbd, a second reference.
# REAL_PROGRAMS_SUITES="oracle debian" (the default) chooses the suites.
#
# Every case runs the same commands twice per suite: once with
# LD_LIBRARY_PATH=LIBDIR ("ours") and once on the suite's reference library
# (LD_LIBRARY_PATH=/opt/libnbd-1.22/lib, or removed for Debian's).  The two
# transcripts (stdout, stderr, exit
# status of each command, plus checksums and checks) must be identical byte
# for byte.  A case also fails if one of its own checks ("NOT OK: ...") fails
# on our side.  Nothing is normalised away: both sides talk to the same
# servers on the same socket paths and work in the same scratch directory
# ($W, emptied between sides), so even temporary paths are identical.  The
# only reductions are explained where they are made (nbdkit log timestamps
# and request order, nbddump output cut by head).  For every program we also prove, once, that the "ours" run
# really loaded LIBDIR/libnbd.so.0 and not the system one.
#
# Servers (nbdkit, nbd-server, qemu-nbd) always run on the system libraries,
# except the nbdkit that hosts the nbd plugin in the proxy case.
#
# Prints PASS/FAIL/SKIP per case and ends with "N passed, N failed"; exits
# non-zero if any case failed.

set -u

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 LIBDIR" >&2
    exit 2
fi
LIBDIR=$(cd "$1" && pwd)
OURLIB=$LIBDIR/libnbd.so.0
if [ ! -e "$OURLIB" ]; then
    echo "FAIL setup ($OURLIB does not exist; run make first)"
    echo "0 passed, 1 failed"
    exit 1
fi
OURLIB_REAL=$(readlink -f "$OURLIB")

# Debian's nbdsh runs "python3" from PATH; the system python is the one that
# has the nbd module (a pyenv shim may come first otherwise).
BASE_PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
export PATH=$BASE_PATH
export LC_ALL=C

# shellcheck source=tests/oracle.sh
. "$(dirname "$0")/oracle.sh"
SUITES=${REAL_PROGRAMS_SUITES:-oracle debian}

# set_suite SUITE: the programs (PATH, PYTHONPATH for nbdsh's module) and the
# reference library (REF_LIBDIR, empty for the system one) of SUITE.
set_suite() {
    SUITE=$1
    case $1 in
        oracle)
            export PATH=$ORACLE_BINDIR:$BASE_PATH
            export PYTHONPATH=$ORACLE_PREFIX/lib/python3/dist-packages
            REF_LIBDIR=$ORACLE_LIBDIR
            SUITE_TAG=$(oracle_version)
            REF_LABEL="libnbd $SUITE_TAG (oracle)"
            ;;
        debian)
            export PATH=$BASE_PATH
            unset PYTHONPATH
            REF_LIBDIR=
            SUITE_TAG=debian
            REF_LABEL="Debian's libnbd"
            ;;
        *)
            echo "FAIL setup (unknown suite $1 in REAL_PROGRAMS_SUITES)"
            echo "0 passed, 1 failed"
            exit 1
            ;;
    esac
}
case " $SUITES " in
    *" oracle "*)
        if ! oracle_ok; then
            echo "FAIL setup (no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX; run tests/oracle.sh ensure)"
            echo "0 passed, 1 failed"
            exit 1
        fi
        for prog in nbdinfo nbdcopy nbddump nbdsh nbdfuse; do
            if [ ! -x "$ORACLE_BINDIR/$prog" ]; then
                echo "FAIL setup (the oracle has no $ORACLE_BINDIR/$prog)"
                echo "0 passed, 1 failed"
                exit 1
            fi
        done
        ;;
esac
set_suite "${SUITES%% *}"

passed=0
failed=0
skipped=0
xfailed=0

T=$(mktemp -d /tmp/real-programs.XXXXXX)
W=$T/w                        # per-side scratch directory, recreated per side
server_pids=()

cleanup() {
    local p
    if [ -d "$T/mnt" ]; then
        mountpoint -q "$T/mnt" 2>/dev/null && umount -l "$T/mnt" 2>/dev/null
    fi
    for p in "${server_pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${server_pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    # KEEP=1 keeps the transcripts for debugging.
    if [ -n "${KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "PASS $1"; passed=$((passed + 1)); }
skip() { echo "SKIP $1 ($2)"; skipped=$((skipped + 1)); }
fail() {
    echo "FAIL $1"
    shift
    [ $# -eq 0 ] || printf '    %s\n' "$@"
    failed=$((failed + 1))
}

# --- running programs ---------------------------------------------------------

# lib_env SIDE: sets the array LIBENV to the command prefix that runs a
# program on our library (SIDE=ours) or on the suite's reference library
# (SIDE=sys).  A plain array rather than a function, so that
# "${LIBENV[@]}" CMD & gives the program's own pid in $!.
lib_env() {
    if [ "$1" = ours ]; then
        LIBENV=(env LD_LIBRARY_PATH="$LIBDIR")
    elif [ -n "$REF_LIBDIR" ]; then
        LIBENV=(env LD_LIBRARY_PATH="$REF_LIBDIR")
    else
        LIBENV=(env -u LD_LIBRARY_PATH)
    fi
}

with_lib() {
    lib_env "$1"
    shift
    "${LIBENV[@]}" "$@"
}

# run SIDE CMD...: run CMD (timeout 60s) and print a transcript of it: the
# command line, its stdout, its stderr (if any) and its exit status.  With
# RUN_STDOUT=FILE, the command's stdout goes to FILE instead (binary data).
run() {
    local side=$1 rc
    shift
    with_lib "$side" timeout 60 "$@" >"${RUN_STDOUT:-$T/run.out}" 2>"$T/run.err"
    rc=$?
    echo "\$ $*${RUN_STDOUT:+ >$RUN_STDOUT}"
    [ -n "${RUN_STDOUT:-}" ] || cat "$T/run.out"
    if [ -s "$T/run.err" ]; then
        echo "[stderr]"
        cat "$T/run.err"
    fi
    echo "[exit $rc]"
}

# check DESCRIPTION COMMAND...: a check inside a case's transcript.
check() {
    local desc=$1
    shift
    if "$@"; then echo "ok: $desc"; else echo "NOT OK: $desc"; fi
}

sha() {
    if [ -f "$1" ]; then sha256sum <"$1" | cut -d' ' -f1; else echo "(no file $1)"; fi
}

# compare NAME FUNC: for each suite, run "FUNC ours" and "FUNC sys", each in
# a fresh $W, and compare their transcripts; the case is "NAME [SUITE]".
# With ONLY_SUITE=SUITE, only that suite (for behaviour where Debian's
# 1.14 and 1.22.2 differ).
compare() {
    local suite
    for suite in $SUITES; do
        [ -z "${ONLY_SUITE:-}" ] || [ "$suite" = "$ONLY_SUITE" ] || continue
        set_suite "$suite"
        compare_one "$1 [$SUITE_TAG]" "$2"
    done
}

# Known differences from the oracle, "CASE SUITE reason" per line: such a
# case is an XFAIL when its transcripts differ, and a failure (XPASS) once
# they agree, so the line is removed when the library is fixed.
KNOWN_DIFFERENCES='
nbdinfo-nbd-server-nosuch debian 1.22 words a refused NBD_OPT_GO as "the server has no export named NAME: SERVER MESSAGE" (ours follows 1.22.2); 1.14 does not
'

# known_difference CASE: the reason, if CASE is known to differ in this suite.
known_difference() {
    awk -v c="$1" -v s="$SUITE" '$1 == c && $2 == s { $1 = $2 = ""; sub(/^ +/, ""); print; f = 1 }
                                 END { exit !f }' <<<"$KNOWN_DIFFERENCES"
}

compare_one() {
    local name=$1 func=$2 side why
    for side in ours sys; do
        rm -rf "$W"
        mkdir -p "$W"
        "$func" "$side" >"$T/$name.$side" 2>&1
    done
    rm -rf "$W"
    if why=$(known_difference "${name% \[*}"); then
        if cmp -s "$T/$name.ours" "$T/$name.sys"; then
            fail "$name" "XPASS: identical to $REF_LABEL now; remove it from KNOWN_DIFFERENCES"
        else
            echo "XFAIL $name (known: $why)"
            diff "$T/$name.sys" "$T/$name.ours" | grep '^[<>]' | head -n 6 | sed 's/^/    /'
            xfailed=$((xfailed + 1))
        fi
        return
    fi
    if ! cmp -s "$T/$name.ours" "$T/$name.sys"; then
        local n
        diff -u --label "$REF_LABEL" --label "our libnbd" \
            "$T/$name.sys" "$T/$name.ours" >"$T/$name.diff"
        n=$(wc -l <"$T/$name.diff")
        mapfile -t lines < <(head -n 50 "$T/$name.diff")
        [ "$n" -le 50 ] || lines+=("... $((n - 50)) more diff lines (KEEP=1 keeps $T/$name.diff)")
        fail "$name" "output differs from $REF_LABEL (- $REF_LABEL, + ours):" "${lines[@]}"
    elif grep -q '^NOT OK' "$T/$name.ours"; then
        mapfile -t lines < <(grep '^NOT OK' "$T/$name.ours")
        fail "$name" "${lines[@]}"
    else
        pass "$name"
    fi
}

# prove_loaded NAME CMD...: for each suite, run CMD on our library under
# LD_DEBUG=libs (the debug output goes to files, not to the program's
# stderr) and check that the dynamic loader initialised LIBDIR/libnbd.so.0
# and no other libnbd.
prove_loaded() {
    local suite
    for suite in $SUITES; do
        set_suite "$suite"
        prove_loaded_one "$1 [$SUITE_TAG]" "${@:2}"
    done
}

prove_loaded_one() {
    local name=$1
    shift
    local dbg=$T/lddebug.$name
    rm -f "$dbg".*
    env LD_LIBRARY_PATH="$LIBDIR" LD_DEBUG=libs LD_DEBUG_OUTPUT="$dbg" \
        timeout 60 "$@" >/dev/null 2>"$T/prove.err"
    if ! cat "$dbg".* 2>/dev/null | grep -qF "calling init: $OURLIB"; then
        fail "loaded-$name" "LD_DEBUG=libs never shows 'calling init: $OURLIB' for: $*"
    elif cat "$dbg".* | grep 'calling init: ' | grep -v -F "$OURLIB" |
            grep -q '/libnbd\.so'; then
        fail "loaded-$name" "another libnbd was also loaded:" \
            "$(cat "$dbg".* | grep 'calling init: .*/libnbd\.so' | sort -u)"
    else
        pass "loaded-$name"
    fi
    rm -f "$dbg".*
}

# prove_mapped NAME PID: our library, and no other libnbd, is mapped in the
# running process PID.
prove_mapped() {
    local name=$1 pid=$2
    if grep -qF "$OURLIB_REAL" "/proc/$pid/maps" 2>/dev/null &&
       ! grep -o '/[^ ]*/libnbd\.so[^ ]*' "/proc/$pid/maps" | grep -vqxF "$OURLIB_REAL"; then
        pass "loaded-$name [$SUITE_TAG]"
    else
        fail "loaded-$name [$SUITE_TAG]" "/proc/$pid/maps does not map $OURLIB_REAL (or maps another libnbd)"
    fi
}

# --- servers ------------------------------------------------------------------

wait_for_socket() {
    local i
    for i in $(seq 100); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    echo "socket $1 did not appear" >&2
    return 1
}

# start_nbdkit SOCK ARGS...: a foreground nbdkit on the system libraries,
# serving on the Unix socket SOCK; its pid is in $last_pid.
start_nbdkit() {
    local sock=$1
    shift
    rm -f "$sock"
    env -u LD_LIBRARY_PATH nbdkit -f --exit-with-parent -U "$sock" "$@" \
        </dev/null >/dev/null 2>>"$T/servers.log" &
    last_pid=$!
    server_pids+=("$last_pid")
    wait_for_socket "$sock"
}

stop_pid() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}

# A free TCP port on 127.0.0.1: bind to port 0 and let the kernel choose.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Is something listening on TCP port $1 (from /proc/net/tcp)?
tcp_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

uri() { echo "nbd+unix:///${2:-}?socket=$1"; }

# --- fixtures -----------------------------------------------------------------

for prog in nbdkit nbdinfo nbdcopy nbddump nbdsh qemu-img qemu-nbd qemu-io nbd-server; do
    if ! command -v "$prog" >/dev/null; then
        echo "FAIL setup ($prog is not installed; run tests/ensure-deps.sh as root)"
        echo "0 passed, 1 failed"
        exit 1
    fi
done

# A 64M source file with data, holes and a run of explicit zeros, built from a
# fixed seed so the case is reproducible.
SRC=$T/src.img
truncate -s 64M "$SRC"
python3 - "$SRC" <<'EOF'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "r+b") as f:
    for off, n in ((0, 1 << 20), (5 << 20, 3 << 20), (20 << 20, 12345),
                   (40 << 20, 4 << 20), ((64 << 20) - 4096, 4096)):
        f.seek(off)
        f.write(r.randbytes(n))
    f.seek(30 << 20)
    f.write(bytes(2 << 20))
EOF
SRC_SHA=$(sha "$SRC")

# Read-only nbdkit servers shared by both sides.
S_MEM=$T/mem.sock
S_PAT=$T/pattern.sock
S_DATA=$T/data.sock
start_nbdkit "$S_MEM" memory 64M
start_nbdkit "$S_PAT" pattern 64M
# Data, a hole and trailing data with an odd size, for --map.
start_nbdkit "$S_DATA" data '1 2 3 @65536 ( "hello" )*100 @1048576 4 5 6 @3145727 7'

# nbd-server: several named exports, allowlist on, TCP on a free port.
mkdir -p "$T/nbds"
truncate -s 1M "$T/nbds/alpha.img"
python3 -c 'import sys; open(sys.argv[1], "wb").write(bytes(range(256)) * 256)' "$T/nbds/beta.img"
truncate -s 2M "$T/nbds/gamma.img"
NBDS_PORT=$(free_port)
cat >"$T/nbds/config" <<EOF
[generic]
    allowlist = true
    listenaddr = 127.0.0.1
    port = $NBDS_PORT
[alpha]
    exportname = $T/nbds/alpha.img
[beta]
    exportname = $T/nbds/beta.img
    readonly = true
[gamma]
    exportname = $T/nbds/gamma.img
    flush = true
    fua = true
    trim = true
EOF
nbds_ok=yes
if ! env -u LD_LIBRARY_PATH nbd-server -C "$T/nbds/config" -p "$T/nbds/pid" \
        >>"$T/servers.log" 2>&1; then
    nbds_ok="nbd-server failed to start: $(tail -n 3 "$T/servers.log")"
else
    for i in $(seq 100); do
        [ -s "$T/nbds/pid" ] && tcp_listening "$NBDS_PORT" && break
        sleep 0.1
    done
    if [ -s "$T/nbds/pid" ]; then
        # nbd-server daemonises: we kill it via its pid file at the end.
        server_pids+=("$(cat "$T/nbds/pid")")
    fi
    tcp_listening "$NBDS_PORT" || nbds_ok="nbd-server is not listening on port $NBDS_PORT"
fi
NBDS=nbd://127.0.0.1:$NBDS_PORT

# qemu-nbd: a qcow2 with data, a hole, and a zeroed range.
S_QEMU=$T/qemu.sock
qemu-img create -q -f qcow2 "$T/disk.qcow2" 16M
qemu-io -f qcow2 -c 'write -q -P 0xab 0 1M' -c 'write -q -P 0xcd 8M 64k' \
    -c 'write -q -z 12M 1M' "$T/disk.qcow2" >/dev/null
# Its content as plain bytes, read by qemu-img without NBD (before qemu-nbd
# takes the image lock).
qemu-img convert -f qcow2 -O raw "$T/disk.qcow2" "$T/disk.raw"
env -u LD_LIBRARY_PATH qemu-nbd -t -A -f qcow2 -x disk -k "$S_QEMU" "$T/disk.qcow2" \
    </dev/null >/dev/null 2>>"$T/servers.log" &
server_pids+=("$!")
wait_for_socket "$S_QEMU"

# --- nbdinfo ------------------------------------------------------------------

prove_loaded nbdinfo nbdinfo --size "$(uri "$S_MEM")"

nbdinfo_queries() {
    local side=$1 u=$2 q
    for q in connect read write cache df fast-zero flush fua multi-conn trim \
             zero structured-reply; do
        run "$side" nbdinfo --can "$q" "$u"
    done
    for q in read-only rotational tls; do
        run "$side" nbdinfo --is "$q" "$u"
    done
}

case_nbdinfo_nbdkit_unix() {
    local side=$1
    run "$side" nbdinfo "$(uri "$S_MEM")"
    run "$side" nbdinfo --json "$(uri "$S_MEM")"
    run "$side" nbdinfo --size "$(uri "$S_PAT")"
    run "$side" nbdinfo --size --json "$(uri "$S_PAT")"
    run "$side" nbdinfo --list "$(uri "$S_PAT")"
    run "$side" nbdinfo --list --json "$(uri "$S_PAT")"
    run "$side" nbdinfo --map "$(uri "$S_DATA")"
    run "$side" nbdinfo --map --totals "$(uri "$S_DATA")"
    run "$side" nbdinfo --map --json "$(uri "$S_DATA")"
    run "$side" nbdinfo "$(uri "$S_DATA")"
}
compare nbdinfo-nbdkit-unix case_nbdinfo_nbdkit_unix

case_nbdinfo_nbdkit_queries() {
    nbdinfo_queries "$1" "$(uri "$S_MEM")"
    nbdinfo_queries "$1" "$(uri "$S_PAT")"
}
compare nbdinfo-nbdkit-can-is case_nbdinfo_nbdkit_queries

case_nbdinfo_socket_activation() {
    local side=$1
    run "$side" nbdinfo -- [ nbdkit memory 1M ]
    run "$side" nbdinfo --json -- [ nbdkit pattern 1M ]
    run "$side" nbdinfo --size -- [ nbdkit -r memory 123456 ]
    run "$side" nbdinfo --map -- [ nbdkit data '1 2 3 @1048576 4' ]
    run "$side" nbdinfo --list -- [ nbdkit -e foo memory 4M ]
    run "$side" nbdinfo --can trim -- [ nbdkit -r memory 1M ]
    run "$side" nbdinfo --is read-only -- [ nbdkit -r memory 1M ]
}
compare nbdinfo-socket-activation case_nbdinfo_socket_activation

if [ "$nbds_ok" = yes ]; then
    case_nbdinfo_nbd_server() {
        local side=$1 e
        run "$side" nbdinfo --list "$NBDS"
        run "$side" nbdinfo --list --json "$NBDS"
        for e in alpha beta gamma; do
            run "$side" nbdinfo "$NBDS/$e"
            run "$side" nbdinfo --json "$NBDS/$e"
            run "$side" nbdinfo --size "$NBDS/$e"
            run "$side" nbdinfo --map "$NBDS/$e"
        done
        run "$side" nbdinfo --map --json "$NBDS/beta"
        nbdinfo_queries "$side" "$NBDS/beta"
        nbdinfo_queries "$side" "$NBDS/gamma"
    }
    compare nbdinfo-nbd-server case_nbdinfo_nbd_server
    # An export that does not exist: exit status and message (1.14 and
    # 1.22.2 differ here: only against the oracle).
    case_nbdinfo_nbd_server_nosuch() {
        run "$1" nbdinfo "$NBDS/nosuch"
        run "$1" nbdinfo --size "$NBDS/nosuch"
    }
    ONLY_SUITE=oracle compare nbdinfo-nbd-server-nosuch case_nbdinfo_nbd_server_nosuch
else
    fail nbdinfo-nbd-server "$nbds_ok"
fi

case_nbdinfo_qemu_nbd() {
    local side=$1 u
    u=$(uri "$S_QEMU" disk)
    run "$side" nbdinfo "$u"
    run "$side" nbdinfo --json "$u"
    run "$side" nbdinfo --size "$u"
    run "$side" nbdinfo --list "$(uri "$S_QEMU")"
    run "$side" nbdinfo --list --json "$(uri "$S_QEMU")"
    run "$side" nbdinfo --map "$u"
    run "$side" nbdinfo --map --totals "$u"
    run "$side" nbdinfo --map --json "$u"
    run "$side" nbdinfo --map=qemu:allocation-depth "$u"
    nbdinfo_queries "$side" "$u"
}
compare nbdinfo-qemu-nbd case_nbdinfo_qemu_nbd

# --- nbdcopy ------------------------------------------------------------------

prove_loaded nbdcopy nbdcopy "$(uri "$S_PAT")" null:

case_nbdcopy_pattern_to_file() {
    local side=$1
    run "$side" nbdcopy "$(uri "$S_PAT")" "$W/out.img"
    echo "size $(stat -c %s "$W/out.img") sha256 $(sha "$W/out.img")"
    run "$side" nbdcopy -- [ nbdkit pattern 64M ] "$W/out2.img"
    check "socket-activated copy equals the Unix-socket copy" cmp -s "$W/out.img" "$W/out2.img"
    RUN_STDOUT=$W/out3.img run "$side" nbdcopy --synchronous "$(uri "$S_PAT")" -
    check "--synchronous copy to stdout equals the file copy" cmp -s "$W/out.img" "$W/out3.img"
}
compare nbdcopy-pattern-to-file case_nbdcopy_pattern_to_file

# File -> fresh nbdkit memory -> file; the copy back must equal the source,
# and the system nbdcopy must read the same bytes from the server.
case_nbdcopy_roundtrip() {
    local side=$1 s=$W/rw.sock
    start_nbdkit "$s" memory 64M
    run "$side" nbdcopy "$SRC" "$(uri "$s")"
    run "$side" nbdcopy "$(uri "$s")" "$W/back.img"
    check "copy back equals the source" test "$(sha "$W/back.img")" = "$SRC_SHA"
    env -u LD_LIBRARY_PATH nbdcopy "$(uri "$s")" "$W/oracle.img"
    check "the system nbdcopy reads back the source" test "$(sha "$W/oracle.img")" = "$SRC_SHA"
    # Through stdin/stdout pipes too.
    run "$side" nbdcopy - "$(uri "$s")" <"$W/back.img"
    RUN_STDOUT=$W/back2.img run "$side" nbdcopy "$(uri "$s")" -
    check "pipe copy back equals the source" test "$(sha "$W/back2.img")" = "$SRC_SHA"
    stop_pid "$last_pid"
}
compare nbdcopy-roundtrip case_nbdcopy_roundtrip

# The log filter records every request nbdcopy sends.  Requests are listed
# sorted (nbdcopy runs several connections and threads, so the order they
# arrive in varies), without the log's timestamps and connection/request ids.
log_requests() {
    sed -n 's/.* \(Read\|Write\|Zero\|Trim\|Flush\|Cache\|Extents\) id=[0-9]* \(offset=[0-9a-fx]* count=[0-9a-fx]*\)\{0,1\}.*/\1 \2/p' \
        "$1" | sort
}
count_requests() { log_requests "$1" | grep -c "^$2" ; }

case_nbdcopy_flush() {
    local side=$1 s=$W/flush.sock
    start_nbdkit "$s" --filter=log memory 64M logfile="$W/log"
    run "$side" nbdcopy --flush "$SRC" "$(uri "$s")"
    stop_pid "$last_pid"
    check "flush requests were sent" test "$(count_requests "$W/log" Flush)" -gt 0
    echo "flushes: $(count_requests "$W/log" Flush)"
    start_nbdkit "$s" --filter=log memory 64M logfile="$W/log2"
    run "$side" nbdcopy "$SRC" "$(uri "$s")"
    stop_pid "$last_pid"
    echo "flushes without --flush: $(count_requests "$W/log2" Flush)"
}
compare nbdcopy-flush case_nbdcopy_flush

# Sparse copies: from a sparse qcow2 (through qemu-nbd) to a zeroed nbdkit
# memory disk, with --destination-is-zero (holes are skipped) and with
# --allocated (holes become zero requests).  The requests the destination
# saw must be the same with both libraries.
case_nbdcopy_sparse() {
    local side=$1 s=$W/sparse.sock u
    u=$(uri "$S_QEMU" disk)
    start_nbdkit "$s" --filter=log memory 16M logfile="$W/log1"
    run "$side" nbdcopy --destination-is-zero "$u" "$(uri "$s")"
    env -u LD_LIBRARY_PATH nbdcopy "$(uri "$s")" "$W/d1.img"
    stop_pid "$last_pid"
    echo "--destination-is-zero: write/zero/trim requests:"
    log_requests "$W/log1" | grep -E '^(Write|Zero|Trim)'
    start_nbdkit "$s" --filter=log memory 16M logfile="$W/log2"
    run "$side" nbdcopy --allocated "$u" "$(uri "$s")"
    env -u LD_LIBRARY_PATH nbdcopy "$(uri "$s")" "$W/d2.img"
    stop_pid "$last_pid"
    echo "--allocated: write/zero/trim requests:"
    log_requests "$W/log2" | grep -E '^(Write|Zero|Trim)'
    check "--destination-is-zero copy has the qcow2's content" cmp -s "$T/disk.raw" "$W/d1.img"
    check "--allocated copy has the qcow2's content" cmp -s "$T/disk.raw" "$W/d2.img"
    # Sparse local destination file: the same blocks are allocated.
    run "$side" nbdcopy "$u" "$W/sparse.img"
    check "sparse file copy has the qcow2's content" cmp -s "$T/disk.raw" "$W/sparse.img"
    echo "sparse.img: size $(stat -c %s "$W/sparse.img") blocks $(stat -c %b "$W/sparse.img")"
}
compare nbdcopy-sparse case_nbdcopy_sparse

# --- nbddump ------------------------------------------------------------------

prove_loaded nbddump nbddump -- [ nbdkit pattern 4K ]

case_nbddump() {
    local side=$1
    # Only the first lines of the 64M pattern disk: head closes the pipe,
    # so nbddump's own exit status (SIGPIPE) is not part of the transcript.
    echo "\$ nbddump $(uri "$S_PAT") | head -n 20"
    with_lib "$side" timeout 60 nbddump "$(uri "$S_PAT")" 2>&1 | head -n 20
    run "$side" nbddump -- [ nbdkit pattern 4K ]
    run "$side" nbddump "$(uri "$S_DATA")"
    run "$side" nbddump -- [ nbdkit data '"hello, world" @1000 0xff 0 0xfe' ]
}
compare nbddump case_nbddump

# --- nbdsh --------------------------------------------------------------------

prove_loaded nbdsh nbdsh -c 'h.connect_command(["nbdkit", "-s", "--exit-with-parent", "memory", "1M"]); h.pread(512, 0)'

cat >"$T/nbdsh-script.py" <<'EOF'
import errno

# Synchronous calls on a connected handle.
h.set_handle_name("real-programs")
h.add_meta_context("base:allocation")
h.connect_command(["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
print("handle", h.get_handle_name())
print("protocol", h.get_protocol())
print("size", h.get_size())
print("structured", h.get_structured_replies_negotiated())
print("meta base:allocation", h.can_meta_context("base:allocation"))
print("flags", h.is_read_only(), h.is_rotational(), h.can_flush(),
      h.can_fua(), h.can_trim(), h.can_zero(), h.can_fast_zero(),
      h.can_multi_conn(), h.can_cache(), h.can_df())
h.pwrite(b"hello, world! " * 100, 4096)
buf = h.pread(1400, 4096)
print("pread", len(buf), buf[:28])
h.pwrite(b"\xaa" * 65536, 262144, nbd.CMD_FLAG_FUA)
h.zero(4096, 266240)
print("after zero", h.pread(16, 266240 - 8))
h.trim(4096, 266240 + 16384)
h.flush()

# Asynchronous calls: aio_pwrite with a completion callback, aio_pread
# polled to completion and retired with aio_command_completed.
seen = []
def completion(err):
    seen.append(int(err.value))
    return 1
c1 = h.aio_pwrite(b"\x42" * 8192, 524288, completion=completion)
# The read overlaps the write: the server may run requests in flight in
# any order, so the write finishes first.
while h.aio_in_flight() > 0:
    h.poll(-1)
b = nbd.Buffer(8192)
c2 = h.aio_pread(b, 524288 - 4096)
# (The cookie values themselves are checked by the nbdsh-cookies case.)
print("cookies positive and distinct", c1 > 0 and c2 > 0 and c1 != c2,
      "in flight", h.aio_in_flight())
while not h.aio_command_completed(c2):
    h.poll(-1)
print("aio_pread", b.size(), bytes(b.to_bytearray())[4094:4098])
print("completion callbacks", seen, "in flight", h.aio_in_flight())
c3 = h.aio_flush()
while not h.aio_command_completed(c3):
    h.poll(-1)
print("aio_flush done")

# Block status for base:allocation over the whole disk.
extents = []
def extent(metacontext, offset, entries, err):
    extents.append((metacontext, offset, list(entries)))
    return 0
h.block_status(h.get_size(), 0, extent)
for e in extents:
    print("extents", e)

# Errors keep their errno.
try:
    h.pread(10, 2 * 1024 * 1024)
except nbd.Error as ex:
    print("out of bounds:", ex.errno)
h.shutdown()
print("closed", h.aio_is_closed())

# Option mode: list exports, then go.
g = nbd.NBD()
g.set_opt_mode(True)
g.connect_command(["nbdkit", "-s", "--exit-with-parent", "-e", "foo",
                   "memory", "2M"])
print("negotiating", g.aio_is_negotiating(), g.get_opt_mode())
names = []
def export(name, description):
    names.append((name, description))
    return 0
print("opt_list", g.opt_list(export), names)
g.set_export_name("foo")
g.opt_info()
print("opt_info size", g.get_size())
g.opt_go()
print("ready", g.aio_is_ready(), g.get_size(), g.get_export_name())
g.shutdown()
EOF

case_nbdsh() {
    run "$1" nbdsh -c "$(cat "$T/nbdsh-script.py")"
    run "$1" nbdsh -u "$(uri "$S_PAT")" -c 'print(h.get_size(), h.pread(16, 8).hex())'
}
compare nbdsh case_nbdsh

# libnbd numbers the commands of a handle 1, 2, 3, ... and returns that
# number as the cookie of each aio call (synchronous calls use a number too).
case_nbdsh_cookies() {
    run "$1" nbdsh -c '
h.connect_command(["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
b = nbd.Buffer(512)
cookies = [h.aio_pread(b, 0), h.aio_pwrite(b"x" * 512, 512), h.aio_flush()]
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    h.aio_command_completed(c)
h.pread(512, 0)
cookies.append(h.aio_pread(b, 1024))
print("cookies", cookies)
h.shutdown()
'
}
compare nbdsh-cookies case_nbdsh_cookies

# --- nbdkit's nbd plugin on our library ---------------------------------------

# A system nbdkit serves memory on SOCK1; an nbdkit whose nbd plugin runs on
# SIDE's libnbd proxies it on SOCK2.  The clients (nbdcopy, nbdinfo) use the
# system library, so only the plugin's library differs between the sides.
case_nbdkit_nbd_plugin() {
    local side=$1 s1=$W/back.sock s2=$W/proxy.sock pproxy
    start_nbdkit "$s1" memory 64M
    pback=$last_pid
    rm -f "$s2"
    lib_env "$side"
    "${LIBENV[@]}" nbdkit -f --exit-with-parent -U "$s2" nbd socket="$s1" \
        </dev/null >/dev/null 2>"$W/proxy.err" &
    pproxy=$!
    server_pids+=("$pproxy")
    wait_for_socket "$s2"
    if [ "$side" = ours ]; then
        # Once the plugin is loaded, the proxy process maps our library.
        prove_mapped nbdkit-nbd-plugin "$pproxy" >>"$T/proxy-proof"
    fi
    run sys nbdinfo "$(uri "$s2")"
    # The proxy's errors, if any, are the reason for a difference: show
    # them early in the transcript.
    echo "[proxy stderr]"
    cat "$W/proxy.err"
    run sys nbdcopy "$SRC" "$(uri "$s2")"
    run sys nbdcopy "$(uri "$s2")" "$W/via-proxy.img"
    check "read through the proxy equals the source" test "$(sha "$W/via-proxy.img")" = "$SRC_SHA"
    env -u LD_LIBRARY_PATH nbdcopy "$(uri "$s1")" "$W/direct.img"
    check "the backing server has the source" test "$(sha "$W/direct.img")" = "$SRC_SHA"
    run sys nbdinfo --map "$(uri "$s2")"
    stop_pid "$pproxy"
    stop_pid "$pback"
}
if env -u LD_LIBRARY_PATH nbdkit --dump-plugin nbd >/dev/null 2>&1; then
    compare nbdkit-nbd-plugin case_nbdkit_nbd_plugin
else
    fail nbdkit-nbd-plugin "nbdkit has no nbd plugin (nbdkit --dump-plugin nbd fails); run tests/ensure-deps.sh as root"
fi
[ -s "$T/proxy-proof" ] && cat "$T/proxy-proof"

# --- nbdfuse ------------------------------------------------------------------

fuse_reason=
if ! command -v nbdfuse >/dev/null; then
    fuse_reason="nbdfuse is not installed"
elif [ ! -c /dev/fuse ]; then
    fuse_reason="/dev/fuse does not exist"
elif ! (exec 3<>/dev/fuse) 2>/dev/null; then
    fuse_reason="/dev/fuse cannot be opened"
fi

# mount_nbdfuse SIDE URI: mount URI on $T/mnt/disk with SIDE's library; the
# pid is in $fuse_pid.  Fails if the file does not appear.
mount_nbdfuse() {
    local side=$1 i
    rm -f "$W/fuse.pid"
    lib_env "$side"
    "${LIBENV[@]}" nbdfuse -P "$W/fuse.pid" "$T/mnt/disk" "$2" \
        </dev/null >/dev/null 2>"$W/fuse.err" &
    fuse_pid=$!
    for i in $(seq 100); do
        [ -s "$W/fuse.pid" ] && [ -f "$T/mnt/disk" ] && return 0
        kill -0 "$fuse_pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$fuse_pid"
    return 1
}

unmount_nbdfuse() {
    umount "$T/mnt" 2>/dev/null || umount -l "$T/mnt" 2>/dev/null
    wait "$fuse_pid" 2>/dev/null
}

case_nbdfuse() {
    local side=$1 s=$W/fuse.sock
    start_nbdkit "$s" memory 64M
    local pmem=$last_pid
    env -u LD_LIBRARY_PATH nbdcopy "$SRC" "$(uri "$s")"
    if ! mount_nbdfuse "$side" "$(uri "$s")"; then
        echo "NOT OK: nbdfuse did not mount: $(cat "$W/fuse.err")"
        stop_pid "$pmem"
        return
    fi
    if [ "$side" = ours ]; then
        prove_mapped nbdfuse "$fuse_pid" >>"$T/fuse-proof"
    fi
    echo "file size $(stat -c %s "$T/mnt/disk")"
    check "reading the FUSE file gives the source" test "$(sha "$T/mnt/disk")" = "$SRC_SHA"
    # Write 1M at 3M through FUSE, then compare with the same edit made locally.
    cp "$SRC" "$W/expect.img"
    head -c 1M "$SRC" >"$W/patch"
    dd if="$W/patch" of="$W/expect.img" bs=1M seek=3 conv=notrunc status=none
    dd if="$W/patch" of="$T/mnt/disk" bs=1M seek=3 conv=notrunc,fsync status=none
    echo "dd exit $?"
    unmount_nbdfuse
    env -u LD_LIBRARY_PATH nbdcopy "$(uri "$s")" "$W/after.img"
    check "the server has the write made through FUSE" cmp -s "$W/expect.img" "$W/after.img"
    # Read-only mount of the pattern disk.
    if mount_nbdfuse "$side" "$(uri "$S_PAT")"; then
        echo "pattern sha256 $(sha "$T/mnt/disk")"
        unmount_nbdfuse
    else
        echo "NOT OK: nbdfuse did not mount the pattern disk: $(cat "$W/fuse.err")"
    fi
    stop_pid "$pmem"
}

if [ -z "$fuse_reason" ]; then
    mkdir -p "$T/mnt"
    # Can FUSE mount here at all?  Try with the system library first.
    mkdir -p "$W"
    if mount_nbdfuse sys "$(uri "$S_PAT")"; then
        unmount_nbdfuse
        compare nbdfuse case_nbdfuse
        [ -s "$T/fuse-proof" ] && cat "$T/fuse-proof"
    else
        skip nbdfuse "FUSE mounts do not work here with the system library either: $(head -n 1 "$W/fuse.err")"
    fi
else
    skip nbdfuse "$fuse_reason"
fi

[ "$xfailed" -eq 0 ] || echo "($xfailed known differences from the oracle, KNOWN_DIFFERENCES)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
