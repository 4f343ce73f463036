#!/bin/bash
# check-abi.sh LIBDIR
# check-abi.sh --print-table
#
# Checks the dynamic ABI of LIBDIR/libnbd.so.0 against src/abi.rs, the one
# list of exported calls and their version nodes:
#   - SONAME is libnbd.so.0
#   - the version definitions are exactly abi::NODES, each inheriting the
#     one before it (LIBNBD_1.2 -> LIBNBD_1.0, ...)
#   - every call of abi::SYMBOLS is exported as a function at its node, as
#     the default version (name@@NODE)
#   - nothing else is exported (no Rust runtime or std symbols)
#   - the oracle's libnbd.so.0 (libnbd 1.22.2, tests/oracle.sh) has the
#     same version definitions and exports exactly the same symbols at the
#     same nodes
#   - if Debian's libnbd.so.0 is installed, every symbol it exports is
#     exported here at the same node
# The table is read by compiling src/abi.rs itself (rustc, a few tenths of
# a second), not by parsing it as text.
#
# --print-table prints the table, "NAME NODE" per line, and exits.
# Exit status: 0 all good, 1 a mismatch, 2 usage or tool error.

set -u
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
debian_lib=/usr/lib/x86_64-linux-gnu/libnbd.so.0

usage() { echo "usage: $0 LIBDIR | --print-table" >&2; exit 2; }
[ $# -eq 1 ] || usage

tmp=$(mktemp -d /tmp/check-abi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --- the table, from src/abi.rs ---------------------------------------------
# Prints "NODE PARENT" lines (PARENT "-" for the first node) to $tmp/nodes
# and "NAME NODE" lines to $tmp/table.
load_table() {
    command -v rustc >/dev/null || { echo "check-abi: rustc not found" >&2; exit 2; }
    cat >"$tmp/print_abi.rs" <<EOF
#[path = "$root/src/abi.rs"]
#[allow(dead_code)]
mod abi;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    if what == "nodes" {
        let mut parent = "-";
        for node in abi::NODES {
            println!("{node} {parent}");
            parent = node;
        }
        // The extension node (libnbd-ext.h) inherits none of libnbd's.
        for node in abi::EXT_NODES {
            println!("{node} -");
        }
    } else {
        for sym in abi::SYMBOLS.iter().chain(abi::EXT_SYMBOLS) {
            println!("{} {}", sym.name, sym.node);
        }
    }
}
EOF
    if ! rustc --edition 2021 -O -o "$tmp/print_abi" "$tmp/print_abi.rs" 2>"$tmp/rustc.err"; then
        echo "check-abi: could not compile src/abi.rs:" >&2
        cat "$tmp/rustc.err" >&2
        exit 2
    fi
    "$tmp/print_abi" nodes >"$tmp/nodes"
    "$tmp/print_abi" symbols >"$tmp/table"
    if [ ! -s "$tmp/table" ]; then
        echo "check-abi: src/abi.rs lists no symbols" >&2
        exit 2
    fi
}

if [ "$1" = "--print-table" ]; then
    load_table
    cat "$tmp/table"
    exit 0
fi
case "$1" in -*) usage ;; esac

for tool in readelf rustc; do
    command -v $tool >/dev/null || { echo "check-abi: $tool not found" >&2; exit 2; }
done
load_table

lib="$1/libnbd.so.0"
errors=0
err() { echo "FAIL: $*"; errors=$((errors + 1)); }

if [ ! -e "$lib" ]; then
    echo "FAIL: $lib does not exist (run make first)"
    exit 1
fi

# --- SONAME ----------------------------------------------------------------
soname() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p'; }
so=$(soname "$lib")
if [ "$so" = "libnbd.so.0" ]; then
    echo "ok: SONAME $so"
else
    err "SONAME is '${so:-<none>}', expected libnbd.so.0"
fi

# --- version definitions -----------------------------------------------------
# "NODE PARENT" per definition, without the BASE one (the soname).
verdefs() {
    readelf -V -W "$1" | awk '
        /^Version definition section/ { on = 1; next }
        /^Version (needs|symbols) section/ { on = 0 }
        !on { next }
        /Flags: BASE/ { base = 1; next }
        / Name: / {
            if (node != "") print node, (parent == "" ? "-" : parent)
            node = $NF; parent = ""; base = 0; next
        }
        /Parent 1:/ { if (!base) parent = $NF }
        END { if (node != "") print node, (parent == "" ? "-" : parent) }'
}
verdefs "$lib" >"$tmp/lib.nodes"
if diff -u "$tmp/nodes" "$tmp/lib.nodes" >"$tmp/nodes.diff"; then
    echo "ok: version nodes $(cut -d' ' -f1 "$tmp/nodes" | paste -sd' ')"
else
    err "version definitions differ from abi::NODES (- expected, + library):"
    sed -n '3,$p' "$tmp/nodes.diff"
fi

# --- exported symbols --------------------------------------------------------
# "NAME NODE MARK TYPE" per defined, non-local dynamic symbol; MARK is @@, @
# or - (unversioned). The ABS entries that only name a version node are
# left out.
exports() {
    readelf --dyn-syms -W "$1" | awk '
        $1 ~ /^[0-9]+:$/ && NF >= 8 && $7 != "UND" && $5 != "LOCAL" {
            name = $8; node = "-"; mark = "-"
            if ((i = index(name, "@@")) > 0) {
                node = substr(name, i + 2); name = substr(name, 1, i - 1); mark = "@@"
            } else if ((i = index(name, "@")) > 0) {
                node = substr(name, i + 1); name = substr(name, 1, i - 1); mark = "@"
            }
            if ($7 == "ABS" && (name == node || name ~ /^(LIBNBD|RNBD)_[0-9.]+$/)) next
            print name, node, mark, $4
        }' | sort -u
}
exports "$lib" >"$tmp/lib.syms"

sort -u "$tmp/table" >"$tmp/table.sorted"
dups=$(cut -d' ' -f1 "$tmp/table.sorted" | uniq -d)
[ -n "$dups" ] && err "src/abi.rs lists these more than once: $dups"

missing=0 wrong=0
while read -r name node; do
    line=$(awk -v n="$name" '$1 == n' "$tmp/lib.syms")
    if [ -z "$line" ]; then
        echo "MISSING: $name@@$node"
        missing=$((missing + 1))
    elif ! awk -v v="$node" '$2 == v && $3 == "@@" && $4 == "FUNC" { f = 1 } END { exit !f }' <<<"$line"; then
        echo "WRONG: $name: expected FUNC $name@@$node, library has:" \
            "$(awk '{ if ($3 == "-") printf "%s %s (unversioned); ", $4, $1
                      else printf "%s %s%s%s; ", $4, $1, $3, $2 }' <<<"$line")"
        wrong=$((wrong + 1))
    fi
done <"$tmp/table.sorted"

extra=0
while read -r name node mark type; do
    if ! awk -v n="$name" '$1 == n { f = 1 } END { exit !f }' "$tmp/table.sorted"; then
        extra=$((extra + 1))
        [ $extra -le 20 ] &&
            echo "EXTRA: $type $name$([ "$mark" = - ] || echo "$mark$node") is exported but not in src/abi.rs"
    fi
done <"$tmp/lib.syms"

ntable=$(wc -l <"$tmp/table.sorted")
[ $missing -gt 0 ] && err "$missing of $ntable calls in src/abi.rs are not exported"
[ $wrong -gt 0 ] && err "$wrong calls are exported at the wrong node, type or default marker"
[ $extra -gt 20 ] && echo "EXTRA: ... and $((extra - 20)) more"
[ $extra -gt 0 ] && err "$extra symbols are exported that src/abi.rs does not list"
[ $missing -eq 0 ] && [ $wrong -eq 0 ] &&
    echo "ok: all $ntable calls of src/abi.rs exported at their nodes"
[ $extra -eq 0 ] && echo "ok: nothing else exported"

# --- the oracle, libnbd 1.22.2 ------------------------------------------------
# shellcheck source=tests/oracle.sh
. "$root/tests/oracle.sh"
oracle_lib=$ORACLE_LIBDIR/libnbd.so.0
if oracle_ok; then
    verdefs "$oracle_lib" >"$tmp/oracle.nodes"
    # Exactly the extension node RNBD_1.0 (libnbd-ext.h) is ours alone; the
    # rest must be libnbd's.
    grep -v '^RNBD_' "$tmp/lib.nodes" >"$tmp/lib.libnbd.nodes"
    if [ "$(grep '^RNBD_' "$tmp/lib.nodes" | paste -sd' ')" != "RNBD_1.0 -" ]; then
        err "expected exactly the extension node RNBD_1.0 besides libnbd's, have:" \
            "$(grep '^RNBD_' "$tmp/lib.nodes" | paste -sd' ')"
    fi
    if diff -u "$tmp/oracle.nodes" "$tmp/lib.libnbd.nodes" >"$tmp/onodes.diff"; then
        echo "ok: the version nodes of libnbd $(oracle_version), and RNBD_1.0"
    else
        err "version definitions differ from libnbd $(oracle_version)'s (- oracle, + ours):"
        sed -n '3,$p' "$tmp/onodes.diff"
    fi
    exports "$oracle_lib" >"$tmp/oracle.syms"
    awk '$2 != "RNBD_1.0"' "$tmp/lib.syms" >"$tmp/lib.libnbd.syms"
    if diff -u "$tmp/oracle.syms" "$tmp/lib.libnbd.syms" >"$tmp/osyms.diff"; then
        echo "ok: the $(wc -l <"$tmp/oracle.syms") exports of libnbd $(oracle_version), at the same nodes"
    else
        err "exports differ from $oracle_lib (- oracle, + ours):"
        grep '^[-+][a-z]' "$tmp/osyms.diff" | head -n 40
    fi
else
    err "no oracle libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX (tests/oracle.sh ensure)"
fi

# --- Debian's libnbd ---------------------------------------------------------
if [ -e "$debian_lib" ]; then
    exports "$debian_lib" >"$tmp/debian.syms"
    ndeb=$(wc -l <"$tmp/debian.syms")
    dmiss=0
    while read -r name node mark type; do
        if ! awk -v n="$name" -v v="$node" -v m="$mark" -v t="$type" \
                '$1 == n && $2 == v && $3 == m && $4 == t { f = 1 } END { exit !f }' \
                "$tmp/lib.syms"; then
            have=$(awk -v n="$name" '$1 == n { printf "%s%s%s ", $1, $3, $2 }' "$tmp/lib.syms")
            echo "DEBIAN: $name$mark$node ($type) ${have:+differs: we have $have}${have:-missing}"
            dmiss=$((dmiss + 1))
        fi
    done <"$tmp/debian.syms"
    if [ $dmiss -eq 0 ]; then
        echo "ok: all $ndeb symbols of $debian_lib present at the same node"
    else
        err "$dmiss of $ndeb symbols of Debian's $debian_lib are missing or at another node"
    fi
else
    echo "skip: $debian_lib not installed; Debian comparison not done" \
        "(apt-get install -y libnbd0)"
fi

if [ $errors -gt 0 ]; then
    echo "check-abi: $errors problem(s) in $lib"
    exit 1
fi
echo "check-abi: $lib ok"
exit 0
