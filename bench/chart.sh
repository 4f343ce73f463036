#!/bin/bash
# bench/chart.sh: throughput and client CPU per GiB of our libnbd.so.0 and
# of libnbd 1.22.2, over request sizes and over queue depths, drawn with
# gnuplot into docs/bench-size.png and docs/bench-depth.png (`make
# bench-chart`).
#
#   sizes:  sync nbd_pread (queue depth 1) of 4 KiB .. 4 MiB
#           (nbdbench pread-size, NBDBENCH_SIZE)
#   depths: nbd_aio_pread of 64 KiB with 1 .. 64 in flight, driven by the
#           program's own poll loop (nbdbench aio-loop, NBDBENCH_DEPTH)
#
# Each point is the median of REPS runs per library, the runs interleaved
# (ours, theirs, then theirs, ours, ...), SECS seconds each, against one
# nbdkit pattern server on a Unix socket. The data files are kept next to
# the PNGs (docs/bench-size.dat, docs/bench-depth.dat).
#
# Environment: REPS=3 SECS=1 OURS=build THEIRS=/opt/libnbd-1.22/lib
#   SIZES="4096 16384 65536 262144 1048576 4194304"
#   DEPTHS="1 2 4 8 16 32 64"   OUT=docs
#   DRAW_ONLY=1: redraw the PNGs from the data files already in OUT
# Needs gnuplot (apt: gnuplot-nox), nbdkit, gcc.

set -u
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
SECS=${SECS:-1}
OURS=$(cd "${OURS:-$ROOT/build}" && pwd -P) || exit 2
THEIRS=$(cd "${THEIRS:-/opt/libnbd-1.22/lib}" && pwd -P) || exit 2
SIZES=${SIZES:-4096 16384 65536 262144 1048576 4194304}
DEPTHS=${DEPTHS:-1 2 4 8 16 32 64}
OUT=${OUT:-$ROOT/docs}

for tool in gcc nbdkit gnuplot; do
    command -v "$tool" >/dev/null || { echo "chart: $tool is needed" >&2; exit 2; }
done
WORK=$(mktemp -d /tmp/nbdchart.XXXXXX)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

BENCH=$WORK/nbdbench
gcc -O2 -Wall -pthread -I"$ROOT/include" -o "$BENCH" "$ROOT/bench/nbdbench.c" -L"$OURS" -lnbd \
    || exit 2
SOCK=$WORK/pattern.sock
nbdkit -U "$SOCK" -f --exit-with-parent pattern 1G >"$WORK/nbdkit.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "chart: nbdkit did not start" >&2; exit 2; }

# one LIBDIR MODE VAR VALUE: prints "MiB/s cpu_s_per_GiB".
one() {
    local line
    line=$(env LD_LIBRARY_PATH="$1" "$3=$4" "$BENCH" "$2" "$SOCK" "$SECS" 2>&1 |
           grep '^RESULT ')
    [ -n "$line" ] || { echo "chart: $2 $3=$4 failed on $1" >&2; exit 1; }
    echo "$(sed -n 's/.* value=\([^ ]*\).*/\1/p' <<<"$line") $(sed -n 's/.* cpu_per_gib=\([^ ]*\).*/\1/p' <<<"$line")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# series MODE VAR VALUES... > data: "x ours_MiBs ours_cpu theirs_MiBs theirs_cpu"
series() {
    local mode=$1 var=$2 x r a b
    shift 2
    for x in "$@"; do
        : >"$WORK/o" ; : >"$WORK/t"
        for r in $(seq "$REPS"); do
            if [ $((r % 2)) = 1 ]; then
                a=$(one "$OURS" "$mode" "$var" "$x") || exit 1
                b=$(one "$THEIRS" "$mode" "$var" "$x") || exit 1
            else
                b=$(one "$THEIRS" "$mode" "$var" "$x") || exit 1
                a=$(one "$OURS" "$mode" "$var" "$x") || exit 1
            fi
            echo "$a" >>"$WORK/o"; echo "$b" >>"$WORK/t"
        done
        echo "$x $(cut -d' ' -f1 "$WORK/o" | median) $(cut -d' ' -f2 "$WORK/o" | median)" \
             "$(cut -d' ' -f1 "$WORK/t" | median) $(cut -d' ' -f2 "$WORK/t" | median)"
        echo "chart: $mode $var=$x done" >&2
    done
}

mkdir -p "$OUT"
if [ -z "${DRAW_ONLY:-}" ]; then
{
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) REPS=$REPS SECS=$SECS load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# size ours_MiB/s ours_cpu_s/GiB libnbd1.22_MiB/s libnbd1.22_cpu_s/GiB"
    series pread-size NBDBENCH_SIZE $SIZES
} >"$OUT/bench-size.dat" || exit 1
{
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) REPS=$REPS SECS=$SECS load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# depth ours_MiB/s ours_cpu_s/GiB libnbd1.22_MiB/s libnbd1.22_cpu_s/GiB"
    series aio-loop NBDBENCH_DEPTH $DEPTHS
} >"$OUT/bench-depth.dat" || exit 1
fi

# draw DATA PNG TITLE XLABEL XTICS
draw() {
    gnuplot <<EOF
set terminal pngcairo size 1000,420 font ",10"
set output "$2"
set multiplot layout 1,2 title "$3 (medians of $REPS runs; rust-libnbd vs libnbd 1.22.2)"
set logscale x 2
set xtics ($5)
set offsets graph 0.03, graph 0.03, 0, 0
set xlabel "$4"
set grid
set key top left
set ylabel "MiB/s (higher is better)"
plot "$1" using 1:2 with linespoints lw 2 title "rust-libnbd", \
     "$1" using 1:4 with linespoints lw 2 title "libnbd 1.22.2"
set ylabel "client CPU s per GiB (lower is better)"
set logscale y
set key top right
plot "$1" using 1:3 with linespoints lw 2 title "rust-libnbd", \
     "$1" using 1:5 with linespoints lw 2 title "libnbd 1.22.2"
unset multiplot
EOF
}
draw "$OUT/bench-size.dat" "$OUT/bench-size.png" \
    "sync nbd\\\\_pread, queue depth 1, by request size" "request size" \
    '"4 KiB" 4096, "16 KiB" 16384, "64 KiB" 65536, "256 KiB" 262144, "1 MiB" 1048576, "4 MiB" 4194304'  || exit 1
draw "$OUT/bench-depth.dat" "$OUT/bench-depth.png" \
    "nbd\\\\_aio\\\\_pread 64 KiB, own poll loop, by queue depth" "commands in flight" \
    '1, 2, 4, 8, 16, 32, 64'  || exit 1
echo "chart: wrote $OUT/bench-size.png $OUT/bench-depth.png" >&2
