#!/bin/bash
# tests/header/run.sh INCLUDEDIR [LIBDIR]
#
# Header tests for INCLUDEDIR/libnbd.h:
#   1. use.c builds as C99, C11 and GNU89 and use.cpp as C++17, all with
#      -Wall -Wextra -Werror, the header included twice; with LIBDIR (holding
#      libnbd.so.0) they are also linked against it and run.
#   2. The header declares exactly the calls of src/abi.rs, each with its
#      LIBNBD_HAVE_NBD_* macro.
#   3. Against the oracle's header (libnbd 1.22.2, tests/oracle.sh): every
#      LIBNBD_* constant it defines has the same value and type here, every
#      call it declares that we have has a compatible prototype, and its
#      callback structs have the same layout and member types.
#   4. The same attributes (LIBNBD_ATTRIBUTE_NONNULL, _ALLOC_DEALLOC) on
#      every prototype as the oracle's header, and the same compiler
#      warnings for a program passing NULL or freeing with the wrong call
#      (tests/header/attributes.sh).
#   5. INCLUDEDIR/libnbd-ext.h (the calls beyond libnbd) builds as C and
#      C++ with -Wall -Wextra -Werror, declares exactly the rnbd_* calls of
#      src/abi.rs EXT_SYMBOLS, each with its RNBD_HAVE_* macro, and
#      libnbd.h names no rnbd_ call nor RNBD_ macro.
# Prints "PASS"/"FAIL" per test and exits non-zero if any failed.

set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 INCLUDEDIR [LIBDIR]" >&2; exit 2; }
incdir=$(cd "$1" && pwd) || exit 2
libdir=
if [ $# -eq 2 ]; then
    libdir=$(cd "$2" && pwd) || exit 2
    [ -e "$libdir/libnbd.so.0" ] || { echo "$libdir/libnbd.so.0 not found" >&2; exit 2; }
fi
header="$incdir/libnbd.h"
[ -e "$header" ] || { echo "$header not found" >&2; exit 2; }
# shellcheck source=tests/oracle.sh
. "$root/tests/oracle.sh"
debian_header=$ORACLE_INCDIR/libnbd.h

CC=${CC:-cc}
CXX=${CXX:-c++}
WARN="-Wall -Wextra -Werror"

tmp=$(mktemp -d /tmp/header-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# Builds one program, links and runs it when a library was given.
# build NAME COMPILER FLAGS... -- SOURCE
build() {
    local name=$1 compiler=$2
    shift 2
    local flags=()
    while [ "$1" != "--" ]; do flags+=("$1"); shift; done
    local src=$2
    if [ -z "$libdir" ]; then
        if "$compiler" "${flags[@]}" -I"$incdir" -c -o "$tmp/$name.o" "$src" >"$tmp/$name.log" 2>&1; then
            pass "$name: compiles"
        else
            fail "$name: does not compile"; sed 's/^/    /' "$tmp/$name.log"
        fi
        return
    fi
    if ! "$compiler" "${flags[@]}" -I"$incdir" -o "$tmp/$name" "$src" \
            -L"$libdir" -l:libnbd.so.0 -Wl,-rpath,"$libdir" >"$tmp/$name.log" 2>&1; then
        fail "$name: does not build"; sed 's/^/    /' "$tmp/$name.log"
    elif ! LD_LIBRARY_PATH="$libdir" "$tmp/$name" >"$tmp/$name.run" 2>&1; then
        fail "$name: builds but fails when run"; sed 's/^/    /' "$tmp/$name.run"
    else
        pass "$name: builds, links and runs"
    fi
}

# --- 1. language modes -------------------------------------------------------
build c99   "$CC"  -std=c99   $WARN -- "$here/use.c"
build c11   "$CC"  -std=c11   $WARN -- "$here/use.c"
build gnu89 "$CC"  -std=gnu89 $WARN -- "$here/use.c"
build c++17 "$CXX" -std=c++17 $WARN -- "$here/use.cpp"

# --- 2. declarations = src/abi.rs = LIBNBD_HAVE_* ------------------------------
if "$root/tests/check-abi.sh" --print-table >"$tmp/table.raw" 2>"$tmp/table.err"; then
    grep '^nbd_' "$tmp/table.raw" | cut -d' ' -f1 | sort -u >"$tmp/table"
    "$CC" -E -P -I"$incdir" -x c "$header" -o "$tmp/pp.h"
    grep -v '^#' "$tmp/pp.h" | grep -oE '\bnbd_[a-z0-9_]+[[:space:]]*\(' |
        sed 's/[[:space:]]*($//' | sort -u >"$tmp/declared"
    # LIBNBD_HAVE_NBD_X_CALLBACK names the callback struct nbd_x_callback,
    # not a call; those structs are the typedefs ending in _callback.
    grep -oE '\}[[:space:]]*nbd_[a-z0-9_]+_callback;' "$tmp/pp.h" |
        sed 's/^}[[:space:]]*//; s/;$//' | sort -u >"$tmp/cbtypes"
    sed -n 's/^#define[[:space:]]\{1,\}LIBNBD_HAVE_\(NBD_[A-Z0-9_]*\)[[:space:]].*/\1/p' "$header" |
        tr 'A-Z' 'a-z' | sort -u | comm -23 - "$tmp/cbtypes" >"$tmp/have"
    ok=1
    if ! comm -3 "$tmp/table" "$tmp/declared" >"$tmp/d1" || [ -s "$tmp/d1" ]; then
        ok=0
        echo "  src/abi.rs calls not declared in libnbd.h:"
        comm -23 "$tmp/table" "$tmp/declared" | sed 's/^/    /'
        echo "  functions declared in libnbd.h but not in src/abi.rs:"
        comm -13 "$tmp/table" "$tmp/declared" | sed 's/^/    /'
    fi
    if ! comm -3 "$tmp/declared" "$tmp/have" >"$tmp/d2" || [ -s "$tmp/d2" ]; then
        ok=0
        echo "  declared calls without LIBNBD_HAVE_* / LIBNBD_HAVE_* without declaration:"
        sed 's/^/    /' "$tmp/d2"
    fi
    if [ $ok -eq 1 ]; then
        pass "libnbd.h declares the $(wc -l <"$tmp/table") calls of src/abi.rs, each with LIBNBD_HAVE_*"
    else
        fail "libnbd.h declarations and src/abi.rs differ"
    fi
else
    fail "could not read src/abi.rs"; sed 's/^/    /' "$tmp/table.err"
fi

# --- 3. against the oracle's libnbd.h --------------------------------------------
# Nothing is left out: every constant is compared below.
known_missing=
if [ ! -e "$debian_header" ]; then
    fail "$debian_header not installed, no comparison with the oracle's header" \
        "(tests/oracle.sh ensure)"
else
    gen="$tmp/oracle.c"
    {
        echo '#include <libnbd.h>'
        echo '#include <stddef.h>'
        echo '#include <stdio.h>'
        echo '#include <string.h>'
        echo 'static int bad;'
        echo 'static void check (int ok, const char *what) {'
        echo '  if (!ok) { fprintf (stderr, "mismatch: %s\n", what); bad++; }'
        echo '}'
        echo '#define SAME_TYPE(a, b) __builtin_types_compatible_p (__typeof__ (a), __typeof__ (b))'
        # The oracle's structs (callbacks, nbd_extent), renamed so both can
        # be compared.
        sed -n '/^typedef struct {/,/^} nbd_[a-z0-9_]*;/p' "$debian_header" |
            sed 's/^} nbd_\([a-z0-9]*\)_callback;/} debian_nbd_\1_callback;/
                 s/^} nbd_extent;/} debian_nbd_extent;/'
        # Debian's prototypes: a conflicting redeclaration is a compile error.
        "$CC" -E -P -D'LIBNBD_ATTRIBUTE_NONNULL(...)=' -D'LIBNBD_ATTRIBUTE_ALLOC_DEALLOC(x)=' \
            -DLIBNBD_H -x c - <<<"$(sed -n '/^extern .*nbd_/,/;/p' "$debian_header")" |
            tr '\n' ' ' | tr ';' '\n' | sed -n 's/^[[:space:]]*\(extern .*\<\(nbd_[a-z0-9_]*\)[[:space:]]*(.*\)$/\2 \1/p' |
            while read -r fn decl; do
                up=$(tr 'a-z' 'A-Z' <<<"$fn")
                printf '#ifdef LIBNBD_HAVE_%s\n%s;\n#endif\n' "$up" "$decl"
            done
        echo 'int main (void) {'
        grep -E '^#define[[:space:]]+LIBNBD_[A-Z0-9_]+[[:space:]]+[^[:space:]]' "$debian_header" |
            grep -vE 'LIBNBD_(HAVE_|GCC_VERSION|ATTRIBUTE_)' |
            while read -r _ name value; do
                case " $known_missing " in *" $name "*) continue ;; esac
                printf '#ifdef %s\n' "$name"
                if [ "${value#\"}" != "$value" ]; then
                    printf '  check (strcmp (%s, %s) == 0, "%s value");\n' "$name" "$value" "$name"
                elif [ "${name%_MASK}" != "$name" ]; then
                    # Newer libnbd versions add flags, so masks may grow.
                    printf '  check ((%s & %s) == %s, "%s value (a superset)");\n' \
                        "$name" "$value" "$value" "$name"
                    printf '  check (SAME_TYPE (%s, %s), "%s type (U suffix?)");\n' "$name" "$value" "$name"
                else
                    printf '  check (%s == %s, "%s value");\n' "$name" "$value" "$name"
                    printf '  check (SAME_TYPE (%s, %s), "%s type (U suffix?)");\n' "$name" "$value" "$name"
                fi
                printf '#else\n  check (0, "%s not defined");\n#endif\n' "$name"
            done
        sed -n 's/^} nbd_\([a-z0-9]*\)_callback;/\1/p' "$debian_header" | while read -r cb; do
            t="nbd_${cb}_callback" d="debian_nbd_${cb}_callback"
            printf '  check (sizeof (%s) == sizeof (%s), "%s size");\n' "$t" "$d" "$t"
            for m in callback user_data free; do
                printf '  check (offsetof (%s, %s) == offsetof (%s, %s), "%s.%s offset");\n' \
                    "$t" "$m" "$d" "$m" "$t" "$m"
                printf '  check (SAME_TYPE (((%s *) 0)->%s, ((%s *) 0)->%s), "%s.%s type");\n' \
                    "$t" "$m" "$d" "$m" "$t" "$m"
            done
        done
        if grep -q '^} nbd_extent;' "$debian_header"; then
            printf '  check (sizeof (nbd_extent) == sizeof (debian_nbd_extent), "nbd_extent size");\n'
            for m in length flags; do
                printf '  check (offsetof (nbd_extent, %s) == offsetof (debian_nbd_extent, %s), "nbd_extent.%s offset");\n' "$m" "$m" "$m"
                printf '  check (SAME_TYPE (((nbd_extent *) 0)->%s, ((debian_nbd_extent *) 0)->%s), "nbd_extent.%s type");\n' "$m" "$m" "$m"
            done
        fi
        echo '  return bad != 0;'
        echo '}'
    } >"$gen"
    if ! "$CC" -std=gnu11 $WARN -fmax-errors=0 -I"$incdir" -o "$tmp/oracle" "$gen" >"$tmp/oracle.log" 2>&1; then
        fail "does not agree with $debian_header (prototypes or constants; test source kept in $root/build/header-oracle.c)"
        grep -E 'error|note: previous' "$tmp/oracle.log" | head -40 | sed 's/^/    /'
        mkdir -p "$root/build" && cp "$gen" "$root/build/header-oracle.c"
    elif ! "$tmp/oracle" >"$tmp/oracle.run" 2>&1; then
        fail "constants or callback structs differ from $debian_header"
        sed 's/^/    /' "$tmp/oracle.run"
    else
        nconst=$(grep -c 'value.*");' "$gen")
        nfn=$(grep -c '^#ifdef LIBNBD_HAVE_' "$gen")
        ncb=$(grep -c 'size");' "$gen")
        pass "agrees with $debian_header: $nconst constants, $nfn prototypes, $ncb callback structs"
    fi
fi

# --- 4. attributes, against the oracle's libnbd.h -------------------------------
if [ -e "$debian_header" ]; then
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
            PASS:*) passed=$((passed + 1)) ;;
            FAIL:*) failed=$((failed + 1)) ;;
        esac
    done < <("$here/attributes.sh" "$header" "$debian_header" 2>&1)
fi

# --- 5. the extension header libnbd-ext.h ---------------------------------------
ext="$incdir/libnbd-ext.h"
if [ ! -e "$ext" ]; then
    fail "$ext not found"
else
    printf '#include <libnbd-ext.h>\n#include <libnbd-ext.h>\nint main (void) { return RNBD_IP_FAMILY_V6 == 6 ? 0 : 1; }\n' >"$tmp/ext.c"
    cp "$tmp/ext.c" "$tmp/ext.cpp"
    build ext-c99 "$CC" -std=c99 $WARN -- "$tmp/ext.c"
    build ext-c++17 "$CXX" -std=c++17 $WARN -- "$tmp/ext.cpp"
    if [ -s "$tmp/table.raw" ]; then
        grep '^rnbd_' "$tmp/table.raw" | cut -d' ' -f1 | sort -u >"$tmp/ext.table"
        "$CC" -E -P -I"$incdir" -x c "$ext" -o "$tmp/ext.pp.h"
        grep -v '^#' "$tmp/ext.pp.h" | grep -oE '\brnbd_[a-z0-9_]+[[:space:]]*\(' |
            sed 's/[[:space:]]*($//' | sort -u >"$tmp/ext.declared"
        sed -n 's/^#define[[:space:]]\{1,\}RNBD_HAVE_\(RNBD_[A-Z0-9_]*\)[[:space:]].*/\1/p' "$ext" |
            tr 'A-Z' 'a-z' | sort -u >"$tmp/ext.have"
        if [ -s "$tmp/ext.table" ] && cmp -s "$tmp/ext.table" "$tmp/ext.declared" &&
                cmp -s "$tmp/ext.table" "$tmp/ext.have"; then
            pass "libnbd-ext.h declares the $(wc -l <"$tmp/ext.table") calls of EXT_SYMBOLS, each with RNBD_HAVE_*"
        else
            fail "libnbd-ext.h declarations, RNBD_HAVE_* and src/abi.rs EXT_SYMBOLS differ"
            diff "$tmp/ext.table" "$tmp/ext.declared" | sed 's/^/    decl /'
            diff "$tmp/ext.table" "$tmp/ext.have" | sed 's/^/    have /'
        fi
    fi
    if grep -nE '\brnbd_|\bRNBD_' "$header" >"$tmp/leak"; then
        fail "libnbd.h names extension calls or macros:"; sed 's/^/    /' "$tmp/leak"
    else
        pass "libnbd.h names no rnbd_ call nor RNBD_ macro"
    fi
fi

echo "header tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
