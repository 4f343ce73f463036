#!/bin/bash
# bench/run.sh: our libnbd.so.0 against the oracle's, libnbd 1.22.2
# (tests/oracle.sh: /opt/libnbd-1.22), side by side.
#
# Builds bench/nbdbench.c once (against include/libnbd.h), starts nbdkit
# servers on Unix sockets, then for each metric runs the benchmark on our
# library (build/) and on the reference library in interleaved pairs (the
# order alternates: ours-first, theirs-first, ...).  For each metric it
# prints the medians of the absolute numbers and the median of the per-pair
# ratios ours/theirs, plus the same ratio for the reference library against
# itself (the noise of this machine).  The oracle's nbdcopy (1.22.2),
# copying a 1 GiB pattern disk to null:, is measured the same way.
#
# Environment:
#   PAIRS=5        pairs per metric (and as many reference-vs-reference pairs)
#   SECS=2         seconds per timed nbdbench run
#   OURS=build     directory holding our libnbd.so.0
#   THEIRS=/opt/libnbd-1.22/lib   the reference library's directory (the
#                  oracle's; /usr/lib/x86_64-linux-gnu for Debian's 1.14)
#   NBDCOPY=/opt/libnbd-1.22/bin/nbdcopy   the nbdcopy of the nbdcopy metric
#   METRICS="pread4k pwrite4k pread4k-spin pwrite4k-spin pread4k-mt
#            read1m write1m read1m-tls aio-loop aio-poll connect handle-rss
#            nbdcopy multiconn multiconn-1conn multiconn-nbdcopy"
#                  (handle-rss: resident KiB per connected handle, 500
#                  handles; lower is better, so its target is "<=")
#                  (-spin: our library with LIBNBD_SPIN_USEC=50, the opt-in
#                  spin; spinning is off by default)
#   MC_CONNS=4 MC_REQUEST=8388608   the multiconn pool's connections and
#                  the size of each of its reads
#
# The multiconn rows compare our nbd::MultiConn with other ways of reading
# the whole 1 GiB pattern disk once (examples/multiconn_bench.rs, built
# from this tree, so OURS does not apply to it; it links the Rust crate
# statically).  There "ours" is the pool (MC_CONNS connections, reads of
# MC_REQUEST bytes, each split over the connections) and "theirs" is:
#   multiconn          one Handle, sequential 1 MiB Handle::pread
#   multiconn-1conn    the same pool code with a single connection
#   multiconn-nbdcopy  the oracle's nbdcopy --connections=MC_CONNS to null:
# and the noise column is that baseline against itself.
#   RESULTS=build/bench/results.txt    where the table is also written
#
# Exit status: 0 once the table is printed (a metric our library fails is
# a row saying FAIL with the error), 2 if the setup itself fails.

set -u
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=${PAIRS:-5}
SECS=${SECS:-2}
OURS=$(cd "${OURS:-$ROOT/build}" && pwd -P) || exit 2
# shellcheck source=tests/oracle.sh
. "$ROOT/tests/oracle.sh"
if [ -z "${THEIRS:-}" ] && ! oracle_ok; then
    echo "bench: no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX (make oracle), or set THEIRS" >&2
    exit 2
fi
THEIRS=$(cd "${THEIRS:-$ORACLE_LIBDIR}" && pwd -P) || exit 2
NBDCOPY=${NBDCOPY:-$ORACLE_BINDIR/nbdcopy}
[ -x "$NBDCOPY" ] || NBDCOPY=$(command -v nbdcopy)
METRICS=${METRICS:-pread4k pwrite4k pread4k-spin pwrite4k-spin pread4k-mt read1m write1m read1m-tls aio-loop aio-poll connect handle-rss nbdcopy multiconn multiconn-1conn multiconn-nbdcopy}
MC_CONNS=${MC_CONNS:-4}
MC_REQUEST=${MC_REQUEST:-8388608}
RESULTS=${RESULTS:-$ROOT/build/bench/results.txt}

for tool in gcc nbdkit "$NBDCOPY"; do
    command -v $tool >/dev/null || { echo "bench: $tool is needed" >&2; exit 2; }
done
[ -e "$OURS/libnbd.so.0" ] || { echo "bench: no $OURS/libnbd.so.0 (run make)" >&2; exit 2; }
[ -e "$THEIRS/libnbd.so.0" ] || { echo "bench: no $THEIRS/libnbd.so.0" >&2; exit 2; }
# The real files, as /proc/self/maps names them.
OURS_SO=$(readlink -f "$OURS/libnbd.so.0")
THEIRS_SO=$(readlink -f "$THEIRS/libnbd.so.0")
if [ "$OURS_SO" = "$THEIRS_SO" ]; then
    echo "bench: $OURS and $THEIRS hold the same library" >&2; exit 2
fi

WORK=$(mktemp -d /tmp/nbdbench.XXXXXX)
SERVER_PIDS=()
cleanup() {
    for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

BENCH=$WORK/nbdbench
# Compiled once; the library is chosen at run time by LD_LIBRARY_PATH.
gcc -O2 -Wall -Wextra -pthread -I"$ROOT/include" -o "$BENCH" "$ROOT/bench/nbdbench.c" \
    -L"$OURS" -lnbd || { echo "bench: cannot build nbdbench" >&2; exit 2; }

MCBENCH=
if [[ " $METRICS " == *" multiconn"* ]]; then
    (cd "$ROOT" && cargo build --release --quiet --example multiconn_bench) ||
        { echo "bench: cannot build examples/multiconn_bench.rs" >&2; exit 2; }
    MCBENCH=$(cd "$ROOT" && pwd)/${CARGO_TARGET_DIR:-target}/release/examples/multiconn_bench
    [[ ${CARGO_TARGET_DIR:-} == /* ]] && MCBENCH=$CARGO_TARGET_DIR/release/examples/multiconn_bench
fi

start_server() { # SOCKET PLUGIN ARGS...
    local sock=$1; shift
    nbdkit -U "$sock" -f --exit-with-parent "$@" >"$WORK/nbdkit-$1.log" 2>&1 &
    SERVER_PIDS+=($!)
    for _ in $(seq 100); do
        [ -S "$sock" ] && return 0
        sleep 0.1
    done
    echo "bench: nbdkit $* did not start:" >&2
    cat "$WORK/nbdkit-$1.log" >&2
    exit 2
}
PATTERN_SOCK=$WORK/pattern.sock   # reads, connect, nbdcopy source
MEMORY_SOCK=$WORK/memory.sock     # writes
start_server "$PATTERN_SOCK" pattern 1G
start_server "$MEMORY_SOCK" memory 1G
# Fill the memory disk first, so that no measured write (whichever library
# runs first) pays for nbdkit allocating its pages.
"$NBDCOPY" "nbd+unix:///?socket=$PATTERN_SOCK" "nbd+unix:///?socket=$MEMORY_SOCK" ||
    { echo "bench: cannot fill the memory disk" >&2; exit 2; }
# read1m-tls: the same 1 MiB reads over TLS with a pre-shared key.
TLS_SOCK=$WORK/tls.sock
PSK_FILE=$WORK/bench.psk
printf 'bench:%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$PSK_FILE"
start_server "$TLS_SOCK" --tls=require --tls-psk="$PSK_FILE" pattern 1G

# run_multiconn SIDE METRIC: one multiconn measurement; SIDE is $OURS for
# the pool, anything else for the metric's baseline.  Output as run_one.
run_multiconn() {
    local side=$1 metric=$2 out line value cpu pergib
    local uri="nbd+unix:///?socket=$PATTERN_SOCK"
    if [ "$side" = "$OURS" ]; then
        out=$("$MCBENCH" pool "$MC_CONNS" "$PATTERN_SOCK" "$MC_REQUEST" 2>&1)
    else
        case $metric in
            multiconn) out=$("$MCBENCH" handle "$PATTERN_SOCK" 1048576 2>&1) ;;
            multiconn-1conn) out=$("$MCBENCH" pool 1 "$PATTERN_SOCK" "$MC_REQUEST" 2>&1) ;;
            multiconn-nbdcopy)
                out=$(LD_LIBRARY_PATH=$THEIRS timeout 120 "$BENCH" exec \
                      "$NBDCOPY" --connections="$MC_CONNS" "$uri" null: 2>&1) ;;
        esac
    fi
    echo "$side $metric: $out" >>"$WORK/raw.log"
    line=$(grep '^RESULT ' <<<"$out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $(head -n 2 <<<"$out" | paste -sd ';' | sed 's/;/; /g')"
        return
    fi
    value=$(sed -n 's/.* value=\([^ ]*\).*/\1/p' <<<"$line")
    cpu=$(sed -n 's/.* cpu=\([^ ]*\).*/\1/p' <<<"$line")
    pergib=$(sed -n 's/.* cpu_per_gib=\([^ ]*\).*/\1/p' <<<"$line")
    if grep -q 'mode=exec' <<<"$line"; then
        # nbdcopy: 1 GiB in value seconds.
        value=$(awk -v s="$value" 'BEGIN { printf "%.3f", 1024 / s }')
        pergib=$cpu
    fi
    echo "$value $pergib"
}

# run_one LIBDIR METRIC: one measurement.  Prints "VALUE CPU_PER_GIB" on
# success, or "FAIL error text" on failure.
run_one() {
    local dir=$1 metric=$2 expect out line
    if [[ $metric == multiconn* ]]; then
        run_multiconn "$dir" "$metric"
        return
    fi
    if [ "$dir" = "$OURS" ]; then expect=$OURS_SO; else expect=$THEIRS_SO; fi
    if [ "$metric" = nbdcopy ]; then
        out=$(LD_LIBRARY_PATH=$dir timeout 120 "$BENCH" exec \
              "$NBDCOPY" "nbd+unix:///?socket=$PATTERN_SOCK" null: 2>&1)
    else
        local sock=$PATTERN_SOCK mode=${metric%-spin} envs=()
        # -spin: the same with our opt-in spin budget on (libnbd ignores it).
        [ "$mode" != "$metric" ] && envs=(LIBNBD_SPIN_USEC=50)
        case $mode in pwrite4k|write1m) sock=$MEMORY_SOCK ;; esac
        if [ "$metric" = read1m-tls ]; then
            sock=$TLS_SOCK mode=read1m envs=(NBDBENCH_TLS_PSK="$PSK_FILE")
        fi
        out=$(env LD_LIBRARY_PATH="$dir" "${envs[@]}" timeout $((SECS * 10 + 30)) \
              "$BENCH" "$mode" "$sock" "$SECS" 2>&1)
    fi
    echo "$dir $metric: $out" >>"$WORK/raw.log"
    line=$(grep '^RESULT ' <<<"$out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $(grep -v '^RESULT ' <<<"$out" | head -n 2 | paste -sd ';' | sed 's/;/; /g')"
        return
    fi
    local lib value cpu pergib
    lib=$(sed -n 's/.* lib=\([^ ]*\).*/\1/p' <<<"$line")
    value=$(sed -n 's/.* value=\([^ ]*\).*/\1/p' <<<"$line")
    cpu=$(sed -n 's/.* cpu=\([^ ]*\).*/\1/p' <<<"$line")
    pergib=$(sed -n 's/.* cpu_per_gib=\([^ ]*\).*/\1/p' <<<"$line")
    if [ "$metric" = connect ]; then
        # No bytes moved: CPU microseconds per connection instead.
        local ops
        ops=$(sed -n 's/.* ops=\([^ ]*\).*/\1/p' <<<"$line")
        pergib=$(awk -v c="$cpu" -v n="$ops" 'BEGIN { printf "%.3f", c * 1e6 / n }')
    fi
    if [ "$metric" = nbdcopy ]; then
        # 1 GiB moved: value is seconds; turn it into MiB/s.
        value=$(awk -v s="$value" 'BEGIN { printf "%.3f", 1024 / s }')
        pergib=$cpu
    elif [ "$lib" != "$expect" ]; then
        echo "FAIL loaded $lib instead of $expect"
        return
    fi
    # handle-rss moves no bytes: its CPU column is the whole run's.
    [ "$metric" = handle-rss ] && pergib=$cpu
    echo "$value $pergib"
}

# The library nbdcopy really loads, checked once per side.
check_nbdcopy_lib() { # LIBDIR EXPECTED_SO
    local found
    found=$(LD_LIBRARY_PATH=$1 LD_TRACE_LOADED_OBJECTS=1 "$NBDCOPY" 2>/dev/null |
            awk '/libnbd\.so\.0/ { print $3 }')
    found=$(readlink -f "$found")
    if [ "$found" != "$2" ]; then
        echo "bench: nbdcopy with LD_LIBRARY_PATH=$1 loads $found, not $2" >&2
        exit 2
    fi
}
check_nbdcopy_lib "$OURS" "$OURS_SO"
check_nbdcopy_lib "$THEIRS" "$THEIRS_SO"

# stats FILE: FILE holds "a b" per pair; prints
#   median(a) median(b) median(a/b) min(a/b) max(a/b)
stats() {
    awk '
        function median(arr, n,   i, j, t) {
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && arr[j-1] > arr[j]; j--) {
                    t = arr[j]; arr[j] = arr[j-1]; arr[j-1] = t
                }
            return n % 2 ? arr[(n+1)/2] : (arr[n/2] + arr[n/2+1]) / 2
        }
        $2 > 0 { n++; a[n] = $1; b[n] = $2; r[n] = $1 / $2 }
        END {
            if (n == 0) { print "- - - - -"; exit }
            lo = hi = r[1]
            for (i = 2; i <= n; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
            printf "%g %g %.3f %.3f %.3f\n", median(a, n), median(b, n), median(r, n), lo, hi
        }' "$1"
}

# pairs A_DIR B_DIR METRIC TAG: PAIRS interleaved pairs; writes
# $WORK/TAG.val and $WORK/TAG.cpu ("a b" lines), $WORK/TAG.fail on a
# failure of A (then stops early).
pairs() {
    local a=$1 b=$2 metric=$3 tag=$4 i ra rb
    : >"$WORK/$tag.val"; : >"$WORK/$tag.cpu"; rm -f "$WORK/$tag.fail"
    for ((i = 1; i <= PAIRS; i++)); do
        if ((i % 2)); then
            ra=$(run_one "$a" "$metric"); rb=$(run_one "$b" "$metric")
        else
            rb=$(run_one "$b" "$metric"); ra=$(run_one "$a" "$metric")
        fi
        if [[ $ra == FAIL* ]]; then echo "${ra#FAIL }" >"$WORK/$tag.fail"; return; fi
        if [[ $rb == FAIL* ]]; then echo "reference: ${rb#FAIL }" >"$WORK/$tag.fail"; return; fi
        echo "${ra%% *} ${rb%% *}" >>"$WORK/$tag.val"
        echo "${ra##* } ${rb##* }" >>"$WORK/$tag.cpu"
        printf '  %-9s pair %d: A %s  B %s\n' "$metric" "$i" "$ra" "$rb" >&2
    done
}

unit_of() {
    case $1 in
        pread4k*|pwrite4k*) echo ops/s ;;
        connect) echo conn/s ;;
        handle-rss) echo KiB/handle ;;
        *) echo MiB/s ;;
    esac
}
# Targets of issue 20 (against libnbd 1.22.2): never behind; QD1 ahead
# without spinning (1.1), with the opt-in spin 1.15; the program's own aio
# loop 1.05; and client CPU no more than libnbd's, except where a row
# measures an opt-in trade of CPU for latency (-spin).
target_of() {
    case $1 in
        pread4k-spin|pwrite4k-spin) echo 1.15 ;;
        pread4k|pwrite4k) echo 1.1 ;;
        pread4k-mt) echo 1.0 ;;
        read1m|write1m|read1m-tls|aio-poll|connect|nbdcopy) echo 1.0 ;;
        aio-loop) echo 1.05 ;;
        handle-rss) echo 1.0 ;;  # lower is better: met when ratio <= 1.0
        multiconn) echo 1.3 ;;   # issue 19: pool vs one connection
        multiconn-*) echo - ;;
    esac
}

mkdir -p "$(dirname "$RESULTS")"
TABLE=$WORK/table
{
    printf '%-20s %12s %12s %8s %13s %7s %13s %7s %s\n' \
        metric ours theirs ratio "ratio range" noise "noise range" target met
} >"$TABLE"
CPUTABLE=$WORK/cputable
: >"$CPUTABLE"

start=$(date +%s)
echo "bench: ours   = $OURS_SO" >&2
echo "bench: theirs = $THEIRS_SO" >&2
echo "bench: nbdcopy = $NBDCOPY" >&2
echo "bench: $PAIRS pairs x ${SECS}s per metric; A = ours then B = theirs, then theirs vs theirs" >&2
for metric in $METRICS; do
    echo "bench: $metric" >&2
    pairs "$OURS" "$THEIRS" "$metric" cmp
    pairs "$THEIRS" "$THEIRS" "$metric" noise
    unit=$(unit_of "$metric")
    target=$(target_of "$metric")
    read -r _ _ nv nlo nhi < <(stats "$WORK/noise.val")
    read -r _ _ cn cnlo cnhi < <(stats "$WORK/noise.cpu")
    echo "$nv $cn" >>"$WORK/noise.all"
    if [ -e "$WORK/noise.fail" ]; then nv="n/a"; nlo=; nhi=; cn="n/a"; cnlo=; cnhi=; fi
    target_col=">=$target"
    [ "$metric" = handle-rss ] && target_col="<=$target"
    [ "$target" = - ] && target_col=-
    if [ -e "$WORK/cmp.fail" ]; then
        printf '%-20s %12s %12s %8s %13s %7s %13s %7s %s\n' "$metric ($unit)" FAIL - - - \
            "$nv" "$nlo..$nhi" "$target_col" "no: $(cat "$WORK/cmp.fail")" >>"$TABLE"
        continue
    fi
    read -r ma mb r lo hi < <(stats "$WORK/cmp.val")
    if [ "$target" = - ]; then
        met=-
    elif [ "$metric" = handle-rss ]; then
        met=$(awk -v r="$r" -v t="$target" 'BEGIN { print (r <= t ? "yes" : "no") }')
    else
        met=$(awk -v r="$r" -v t="$target" 'BEGIN { print (r >= t ? "yes" : "no") }')
    fi
    printf '%-20s %12s %12s %8s %13s %7s %13s %7s %s\n' "$metric ($unit)" "$ma" "$mb" "$r" \
        "$lo..$hi" "$nv" "$nlo..$nhi" "$target_col" "$met" >>"$TABLE"
    read -r ca cb cr clo chi < <(stats "$WORK/cmp.cpu")
    if [ "$metric" = handle-rss ]; then
        continue   # no bytes moved; its CPU is connecting, as in connect
    elif [ "$metric" = connect ]; then
        name="cpu us/conn"; ctarget="-"; cmet="-"
    elif [[ $metric == multiconn* ]]; then
        name="cpu s/GiB $metric"; ctarget="-"; cmet="-"
    else
        name="cpu s/GiB $metric"; ctarget="<=1.0"; climit=1.0
        if [[ $metric == *-spin ]]; then
            ctarget="-"; cmet="-"
        else
            cmet=$(awk -v r="$cr" -v t="$climit" 'BEGIN { print (r <= t ? "yes" : "no") }')
        fi
    fi
    printf '%-20s %12s %12s %8s %13s %7s %13s %7s %s\n' "$name" "$ca" "$cb" "$cr" \
        "$clo..$chi" "$cn" "$cnlo..$cnhi" "$ctarget" "$cmet" >>"$CPUTABLE"
done
cat "$CPUTABLE" >>"$TABLE"
{
    echo
    echo "ours   = $OURS_SO"
    echo "theirs = $THEIRS_SO"
    echo "$PAIRS interleaved pairs per metric, ${SECS}s per nbdbench run; nbdcopy copies 1 GiB"
    echo "ratio = median of per-pair ours/theirs (range = min..max over pairs);"
    echo "noise = the same median ratio for the reference library against itself;"
    echo "nbdcopy = $NBDCOPY"
    echo "cpu/GiB = client CPU seconds (user+sys, all threads) per GiB moved (lower is better)."
    if [[ " $METRICS " == *" multiconn"* ]]; then
        echo "multiconn rows: ours = nbd::MultiConn, $MC_CONNS connections, $MC_REQUEST-byte reads of the"
        echo "  1 GiB pattern disk; theirs = multiconn: one Handle, 1 MiB preads;"
        echo "  multiconn-1conn: the pool with 1 connection; multiconn-nbdcopy: the oracle's"
        echo "  nbdcopy --connections=$MC_CONNS to null:.  noise = that baseline against itself."
    fi
    awk '$1 != "n/a" && $1 != "-" { v[++n] = $1 } $2 != "n/a" && $2 != "-" { v[++n] = $2 }
         END { if (n) { lo = hi = v[1]; for (i = 2; i <= n; i++) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
                        printf "noise: theirs-vs-theirs median ratios over all rows span %.3f..%.3f\n", lo, hi } }' \
        "$WORK/noise.all" 2>/dev/null
    echo "elapsed $(( $(date +%s) - start ))s"
} >>"$TABLE"
echo >&2
cat "$TABLE"
cp "$TABLE" "$RESULTS"
cp "$WORK/raw.log" "${RESULTS%.txt}.raw.log"
exit 0
