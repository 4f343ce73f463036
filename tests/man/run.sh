#!/bin/bash
# tests/man/run.sh STAGE ABI_RS
#
# Checks the man pages of an install staged under STAGE (make check-man):
# every call listed in ABI_RS (src/abi.rs) has a page under
# STAGE/share/man/man3, man(1) renders each one (and libnbd(3)) with no
# groff warning, lexgrog reads its NAME line, each has the sections a
# libnbd page has, each SYNOPSIS prototype is the declaration of the call
# in STAGE/include/libnbd.h (libnbd-ext.h for the rnbd_* calls), and each
# VERSION names the call's node.

set -u
stage=${1:?usage: run.sh STAGE ABI_RS}
abi=${2:?usage: run.sh STAGE ABI_RS}
mandir=$stage/share/man
header=$stage/include/libnbd.h

for prog in man lexgrog groff python3; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        echo "man: $prog is not installed (tests/ensure-deps.sh installs man-db)"
        exit 1
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name node, one call a line, from the table.
sed -n 's/.*Symbol { name: "\(r\{0,1\}nbd_[a-z0-9_]*\)", node: "\([A-Z0-9_.]*\)" }.*/\1 \2/p' \
    "$abi" >"$work/calls"
ncalls=$(wc -l <"$work/calls")
if [ "$ncalls" -lt 100 ]; then
    echo "man: only $ncalls calls read from $abi"
    exit 1
fi

fail=0
# Renders page $1 at 80 columns into $work/$1.txt; groff's warnings (all
# of them: -ww) go to $work/$1.err.
render() {
    MANWIDTH=80 MAN_KEEP_FORMATTING= LC_ALL=C.UTF-8 \
        man --warnings=w -M "$mandir" 3 "$1" >"$work/$1.txt" 2>"$work/$1.err"
}

for page in libnbd $(cut -d' ' -f1 "$work/calls"); do
    file=$mandir/man3/$page.3
    if [ ! -f "$file" ]; then
        echo "man: no page for $page ($file)"
        fail=1
        continue
    fi
    if ! render "$page" || [ ! -s "$work/$page.txt" ]; then
        echo "man: man 3 $page failed:"
        cat "$work/$page.err"
        fail=1
        continue
    fi
    if [ -s "$work/$page.err" ]; then
        echo "man: man 3 $page: warnings:"
        cat "$work/$page.err"
        fail=1
    fi
    if ! lexgrog "$file" | grep -q ": \"$page - ."; then
        echo "man: lexgrog cannot read the NAME line of $page:"
        lexgrog "$file"
        fail=1
    fi
done

# Sections, SYNOPSIS against the header, VERSION against the table.
python3 - "$work" "$header" "$work/calls" <<'EOF' || fail=1
import re, sys

work, header, calls_file = sys.argv[1:]
calls = [l.split() for l in open(calls_file) if l.strip()]

def norm(s):
    s = " ".join(s.split())
    return re.sub(r"\s*([(),;*])\s*", r"\1", s)

# The header's declarations, comments and attribute macros left out.
ext_header = header.removesuffix("libnbd.h") + "libnbd-ext.h"
text = open(header).read() + open(ext_header).read()
text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
text = re.sub(r"^#.*$", "", text, flags=re.M)
text = text.replace('extern "C" {', ";")
decls = {}
for stmt in text.split(";"):
    stmt = re.sub(r"LIBNBD_ATTRIBUTE_\w+\s*\([^()]*\)", "", stmt)
    m = re.search(r"\b(r?nbd_\w+)\s*\(", stmt)
    if m and "typedef" not in stmt and "{" not in stmt:
        decls[m.group(1)] = norm(stmt) + ";"

SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "RETURN VALUE", "ERRORS",
            "VERSION", "SEE ALSO"]
bad = 0
for name, node in calls:
    try:
        page = open(f"{work}/{name}.txt").read()
    except OSError:
        continue  # already reported
    lines = page.splitlines()
    heads = [l for l in lines if re.match(r"^[A-Z][A-Z ]+$", l)]
    sections = {}
    cur = None
    for l in lines[1:-1]:
        if l in heads:
            cur = l
            sections[cur] = []
        elif cur:
            sections[cur].append(l)
    for s in SECTIONS:
        if not "".join(sections.get(s, [])).strip():
            print(f"man: {name}: section {s} is missing or empty")
            bad = 1
    order = [h for h in heads if h in SECTIONS]
    if order != [s for s in SECTIONS if s in order]:
        print(f"man: {name}: sections out of order: {order}")
        bad = 1
    syn = "\n".join(sections.get("SYNOPSIS", []))
    inc = "#include <libnbd-ext.h>" if name.startswith("rnbd_") else "#include <libnbd.h>"
    if inc not in syn:
        print(f"man: {name}: SYNOPSIS lacks {inc}")
        bad = 1
    proto = norm(syn.split(inc, 1)[-1])
    if name not in decls:
        print(f"man: {name}: not declared in {header}")
        bad = 1
    elif proto != decls[name]:
        print(f"man: {name}: SYNOPSIS prototype\n  {proto}\nis not the header's\n  {decls[name]}")
        bad = 1
    version = " ".join(" ".join(sections.get("VERSION", [])).split())
    release = node.removeprefix("LIBNBD_")
    if name.startswith("rnbd_"):
        have = f"RNBD_HAVE_{name.upper()}"
        if node not in version or "extension" not in version:
            print(f"man: {name}: VERSION does not name {node} as an extension: {version}")
            bad = 1
    else:
        have = f"LIBNBD_HAVE_{name.upper()}"
        if f"libnbd {release} " not in version or node not in version:
            print(f"man: {name}: VERSION does not name {node}: {version}")
            bad = 1
    if have not in version:
        print(f"man: {name}: VERSION does not name {have}")
        bad = 1

# The overview lists every call.
overview = open(f"{work}/libnbd.txt").read()
for name, _ in calls:
    if not re.search(rf"\b{name}\(3\)", overview):
        print(f"man: libnbd(3) does not list {name}")
        bad = 1
sys.exit(bad)
EOF

# What a user types.
if ! MANWIDTH=80 man -M "$mandir" 3 nbd_connect_command 2>&1 |
        grep -q 'int nbd_connect_command(struct nbd_handle \*h, char \*\*argv);'; then
    echo "man: man 3 nbd_connect_command does not show its prototype"
    fail=1
fi
if ! MANWIDTH=80 man -M "$mandir" 3 nbd_pread 2>&1 | grep -q 'LIBNBD_1\.0'; then
    echo "man: man 3 nbd_pread does not name its version node"
    fail=1
fi

if [ $fail -ne 0 ]; then
    echo "man: FAILED"
    exit 1
fi
echo "man: $ncalls call pages and libnbd(3) render cleanly and match the header"
