#!/bin/bash
# tests/header/attributes.sh OUR_HEADER ORACLE_HEADER
#
# Our libnbd.h gives every call the attributes libnbd 1.22.2's header gives
# it, and C and C++ compilers react to them the same way:
#   1. Per prototype, the LIBNBD_ATTRIBUTE_NONNULL positions and the
#      LIBNBD_ATTRIBUTE_ALLOC_DEALLOC deallocator, read from each header and
#      written one call a line ("nbd_pread NONNULL(1,2)"), are identical.
#   2. The macros expand to the same thing in C and C++, and a program may
#      define LIBNBD_ATTRIBUTE_NONNULL itself first.
#   3. nonnull.c (NULL passed where the header forbids it, a handle freed
#      with free) compiled with each header gives the same warnings, in C
#      and in C++, and gives them at all: -Wnonnull for each NULL argument,
#      -Wmismatched-dealloc for free (nbd_create ()), none for
#      nbd_close (NULL).
# Prints PASS/FAIL lines; exits 1 if anything failed.

set -u
export LC_ALL=C

[ $# -eq 2 ] || { echo "usage: $0 OUR_HEADER ORACLE_HEADER" >&2; exit 2; }
ours=$1 oracle=$2
for f in "$ours" "$oracle"; do
    [ -f "$f" ] || { echo "$0: $f not found" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-cc}
CXX=${CXX:-c++}

tmp=$(mktemp -d /tmp/header-attrs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# --- 1. the attributes of every prototype --------------------------------------
# Comments and preprocessor lines are dropped, the rest is split into
# declarations at ';'; a declaration of a call is one whose first
# parenthesis follows its nbd_* name.
attrs_of() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
text = re.sub(r'//[^\n]*', ' ', text)
text = '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('#'))
for decl in text.split(';'):
    decl = ' '.join(decl.split())
    m = re.match(r'(?:extern )?[A-Za-z_][\w ]*?\**\s*\b(nbd_\w+)\s*\(', decl)
    if not m or decl.startswith('typedef'):
        continue
    out = [m.group(1)]
    for name, args in re.findall(r'LIBNBD_ATTRIBUTE_(\w+)\s*\(([^)]*)\)', decl):
        out.append('%s(%s)' % (name, ','.join(a.strip() for a in args.split(','))))
    print(' '.join(out))
EOF
}
attrs_of "$ours" | sort >"$tmp/ours.attrs"
attrs_of "$oracle" | sort >"$tmp/oracle.attrs"
n=$(wc -l <"$tmp/oracle.attrs")
nattr=$(grep -c ' ' "$tmp/oracle.attrs")
if [ "$n" -lt 100 ] || [ "$nattr" -lt 100 ]; then
    fail "read only $n prototypes ($nattr with attributes) from $oracle"
elif diff -u --label oracle "$tmp/oracle.attrs" --label ours "$tmp/ours.attrs" >"$tmp/attrs.diff"; then
    pass "the $n prototypes have the oracle's attributes ($nattr with attributes)"
else
    fail "prototype attributes differ from $oracle (- oracle, + ours):"
    grep '^[-+][a-z]' "$tmp/attrs.diff" | head -40 | sed 's/^/    /'
fi

# --- 2. the macros --------------------------------------------------------------
cat >"$tmp/macros.c" <<'EOF'
#include <libnbd.h>
#include <stdio.h>
#define STR_(x) #x
#define STR(x) STR_ (x)
int main (void)
{
  puts (STR (LIBNBD_ATTRIBUTE_NONNULL (1, 2, 3)));
  puts (STR (LIBNBD_ATTRIBUTE_ALLOC_DEALLOC (nbd_close)));
#ifdef LIBNBD_GCC_VERSION
  printf ("%d\n", LIBNBD_GCC_VERSION);
#endif
  return 0;
}
EOF
cat >"$tmp/override.c" <<'EOF'
#define LIBNBD_ATTRIBUTE_NONNULL(...)
#include <libnbd.h>
int main (void) { return nbd_get_size (0) == 0; }
EOF
macros_ok=1
for side in ours oracle; do
    inc=$tmp/inc-$side
    mkdir -p "$inc"
    if [ $side = ours ]; then cp "$ours" "$inc/libnbd.h"; else cp "$oracle" "$inc/libnbd.h"; fi
    for lang in c c++; do
        if [ $lang = c ]; then comp=$CC; else comp=$CXX; fi
        if ! "$comp" -x $lang -Wall -Werror -I"$inc" -o "$tmp/macros-$side-$lang" "$tmp/macros.c" \
                >"$tmp/macros-$side-$lang.log" 2>&1; then
            fail "$side header: the attribute macros do not build in $lang"
            sed 's/^/    /' "$tmp/macros-$side-$lang.log"
            macros_ok=0
            continue
        fi
        "$tmp/macros-$side-$lang" >"$tmp/macros-$side-$lang.out"
        # The override must be taken without a redefinition warning, and
        # then nothing warns about the NULL.
        if ! "$comp" -x $lang -Wall -Werror -I"$inc" -c -o "$tmp/override.o" "$tmp/override.c" \
                >"$tmp/override-$side-$lang.log" 2>&1; then
            fail "$side header: defining LIBNBD_ATTRIBUTE_NONNULL first does not work in $lang"
            sed 's/^/    /' "$tmp/override-$side-$lang.log"
            macros_ok=0
        fi
    done
done
for lang in c c++; do
    [ -e "$tmp/macros-ours-$lang.out" ] && [ -e "$tmp/macros-oracle-$lang.out" ] || continue
    if ! cmp -s "$tmp/macros-ours-$lang.out" "$tmp/macros-oracle-$lang.out"; then
        fail "the attribute macros expand differently in $lang (- oracle, + ours):"
        diff "$tmp/macros-oracle-$lang.out" "$tmp/macros-ours-$lang.out" | sed 's/^/    /'
        macros_ok=0
    elif ! grep -q '__nonnull__' "$tmp/macros-ours-$lang.out"; then
        # GCC older than 12 defines them empty, in both headers.
        echo "NOTE: the attribute macros are empty with this $lang compiler"
    fi
done
[ $macros_ok = 1 ] && pass "the attribute macros expand as the oracle's in C and C++ ($(head -n1 "$tmp/macros-ours-c.out"))"

# --- 3. the warnings a compiler gives -----------------------------------------------
# The warnings about nonnull.c itself, as "LINE: message [-Wflag]".
warnings() { # COMPILER LANG INCDIR
    "$1" -x "$2" -std=$([ "$2" = c ] && echo gnu11 || echo gnu++17) -Wall -Wextra -O2 \
        -I"$3" -c -o "$tmp/nonnull.o" "$here/nonnull.c" 2>&1 |
        sed -n 's#^[^:]*nonnull\.c:\([0-9]*\):[0-9]*: \(warning\|error\): \(.*\)$#\1: \2: \3#p' |
        sed "s/[‘’']//g" | sort -n
}
for lang in c c++; do
    if [ $lang = c ]; then comp=$CC; else comp=$CXX; fi
    warnings "$comp" $lang "$tmp/inc-ours" >"$tmp/warn-ours-$lang"
    warnings "$comp" $lang "$tmp/inc-oracle" >"$tmp/warn-oracle-$lang"
    nn=$(grep -c 'Wnonnull' "$tmp/warn-oracle-$lang")
    md=$(grep -c 'Wmismatched-dealloc' "$tmp/warn-oracle-$lang")
    if ! cmp -s "$tmp/warn-ours-$lang" "$tmp/warn-oracle-$lang"; then
        fail "$lang: nonnull.c gives other warnings with our header (- oracle, + ours):"
        diff "$tmp/warn-oracle-$lang" "$tmp/warn-ours-$lang" | sed 's/^/    /'
    elif ! grep -q '__nonnull__' "$tmp/macros-ours-$lang.out" 2>/dev/null; then
        echo "SKIP: $lang: this compiler has no libnbd attributes (GCC 12 or later needed)"
    elif [ "$nn" -ne "$(grep -c '/\* WARN: nonnull \*/' "$here/nonnull.c")" ] || [ "$md" -lt 1 ]; then
        fail "$lang: nonnull.c should give $(grep -c '/\* WARN: nonnull \*/' "$here/nonnull.c") -Wnonnull warnings and a -Wmismatched-dealloc one, gives $nn and $md:"
        sed 's/^/    /' "$tmp/warn-ours-$lang"
    elif ! awk -F: 'NR == FNR { if (/\/\* WARN: nonnull \*\//) want[FNR] = 1; next }
                    /Wnonnull/ { if (!($1 in want)) bad = 1 }
                    / error: / { bad = 1 }
                    END { exit bad }' "$here/nonnull.c" "$tmp/warn-ours-$lang"; then
        fail "$lang: a -Wnonnull warning on a line not marked WARN: nonnull:"
        sed 's/^/    /' "$tmp/warn-ours-$lang"
    else
        pass "$lang: nonnull.c gives the oracle's warnings ($nn -Wnonnull, $md -Wmismatched-dealloc)"
    fi
done

[ $failed -eq 0 ]
