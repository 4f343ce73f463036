#!/bin/bash
# Differential test: build one deterministic C program against the
# oracle, libnbd 1.22.2 (tests/oracle.sh: /opt/libnbd-1.22, its header and
# library) and against ours, run both, and diff what they print: the
# return value of every call and, for failing calls, nbd_get_errno() and
# nbd_get_error().
#
#   tests/oracle-compare.sh LIBDIR INCLUDEDIR
#   tests/oracle-compare.sh --oracle      # oracle against itself (a
#                                         # self-check of this script)
#
# Exits 0 when the outputs are identical, 1 (showing the diff) if not.

set -u

usage () {
    echo "usage: $0 LIBDIR INCLUDEDIR | --oracle" >&2
    exit 2
}

if [ "${1:-}" = --oracle ]; then
    [ $# -eq 1 ] || usage
    libdir=
elif [ $# -eq 2 ]; then
    libdir=$(cd "$1" && pwd) || exit 2
    incdir=$(cd "$2" && pwd) || exit 2
    [ -f "$incdir/libnbd.h" ] || { echo "$0: $incdir/libnbd.h not found" >&2; exit 2; }
else
    usage
fi

# shellcheck source=tests/oracle.sh
. "$(dirname "$0")/oracle.sh"
if ! oracle_ok; then
    echo "$0: no libnbd $ORACLE_SERIES.x in $ORACLE_PREFIX (run tests/oracle.sh ensure)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rust-libnbd-compare.XXXXXX")
trap '[ -n "${KEEP_BUILD:-}" ] || rm -rf "$work"' EXIT
unset LIBNBD_DEBUG
export LC_ALL=C
CC=${CC:-cc}

cat >"$work/compare.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <inttypes.h>
#include <libnbd.h>

/* Print an integer result; on -1 also errno and message. */
#define I(expr)                                                       \
  do {                                                                \
    long long r_ = (long long) (expr);                                \
    if (r_ == -1)                                                     \
      printf ("%-58s = -1 errno=%d \"%s\"\n", #expr, nbd_get_errno (),\
              nbd_get_error () ? nbd_get_error () : "(null)");        \
    else                                                              \
      printf ("%-58s = %lld\n", #expr, r_);                           \
  } while (0)

/* Print a string result; on NULL also errno and message. */
static void
show_str (const char *label, const char *s)
{
  if (s == NULL)
    printf ("%-58s = NULL errno=%d \"%s\"\n", label, nbd_get_errno (),
            nbd_get_error () ? nbd_get_error () : "(null)");
  else
    printf ("%-58s = \"%s\"\n", label, s);
}
#define S(expr) show_str (#expr, (expr))

/* Same for malloc'd strings, which are freed afterwards. */
static void
show_str_free (const char *label, char *s)
{
  show_str (label, s);
  free (s);
}
#define SF(expr) show_str_free (#expr, (expr))

#define NBDKIT "nbdkit", "-s", "--exit-with-parent"

static char buf[1 << 16];

static void
all_info (struct nbd_handle *h)
{
  S (nbd_connection_state (h));
  I (nbd_aio_is_created (h)); I (nbd_aio_is_connecting (h));
  I (nbd_aio_is_negotiating (h)); I (nbd_aio_is_ready (h));
  I (nbd_aio_is_processing (h)); I (nbd_aio_is_dead (h));
  I (nbd_aio_is_closed (h));
  I (nbd_get_size (h)); I (nbd_is_read_only (h));
  I (nbd_can_flush (h)); I (nbd_can_fua (h)); I (nbd_can_trim (h));
  I (nbd_can_zero (h)); I (nbd_can_cache (h)); I (nbd_can_multi_conn (h));
  I (nbd_get_structured_replies_negotiated (h));
  S (nbd_get_protocol (h));
  SF (nbd_get_export_name (h));
  I (nbd_get_request_structured_replies (h));
  I (nbd_get_debug (h));
}

static void
all_commands (struct nbd_handle *h, uint64_t size)
{
  I (nbd_pread (h, buf, 512, 0, 0));
  I (nbd_pread (h, buf, 0, 0, 0));
  I (nbd_pread (h, buf, 512, 0, 0x63));
  I (nbd_pread (h, buf, 512, 0, LIBNBD_CMD_FLAG_FUA));
  I (nbd_pread (h, buf, 512, size, 0));
  I (nbd_pread (h, buf, 512, size - 1, 0));
  I (nbd_pwrite (h, buf, 512, 0, 0));
  I (nbd_pwrite (h, buf, 512, 0, LIBNBD_CMD_FLAG_FUA));
  I (nbd_pwrite (h, buf, 0, 0, 0));
  I (nbd_pwrite (h, buf, 512, 0, LIBNBD_CMD_FLAG_NO_HOLE));
  I (nbd_pwrite (h, buf, 512, size, 0));
  I (nbd_flush (h, 0));
  I (nbd_flush (h, LIBNBD_CMD_FLAG_FUA));
  I (nbd_trim (h, 512, 0, 0));
  I (nbd_trim (h, 512, 0, LIBNBD_CMD_FLAG_FUA));
  I (nbd_trim (h, 0, 0, 0));
  I (nbd_trim (h, 512, size, 0));
  I (nbd_zero (h, 512, 0, 0));
  I (nbd_zero (h, 512, 0, LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_NO_HOLE));
  I (nbd_zero (h, 0, 0, 0));
  I (nbd_zero (h, 512, 0, LIBNBD_CMD_FLAG_DF));
  I (nbd_zero (h, 512, size, 0));
  I (nbd_cache (h, 512, 0, 0));
  I (nbd_cache (h, 512, 0, LIBNBD_CMD_FLAG_FUA));
  I (nbd_cache (h, 0, 0, 0));
  I (nbd_cache (h, 512, size, 0));
  I (nbd_kill_subprocess (h, 12345678));
}

static void
server (const char *title, char **argv, const char *export_name,
        int sr, uint64_t size)
{
  struct nbd_handle *h = nbd_create ();

  printf ("\n=== %s\n", title);
  if (export_name)
    I (nbd_set_export_name (h, export_name));
  if (!sr)
    I (nbd_set_request_structured_replies (h, 0));
  I (nbd_connect_command (h, argv));
  all_info (h);
  all_commands (h, size);
  I (nbd_set_export_name (h, "late"));
  I (nbd_set_request_structured_replies (h, 1));
  I (nbd_connect_command (h, argv));
  I (nbd_shutdown (h, 1));
  I (nbd_shutdown (h, 0));
  all_info (h);
  all_commands (h, size);
  I (nbd_shutdown (h, 0));
  nbd_close (h);
}

int
main (void)
{
  struct nbd_handle *h;
  char *memory[] = { NBDKIT, "memory", "1M", NULL };
  char *memory_ro[] = { NBDKIT, "-r", "memory", "1M", NULL };
  char *pattern[] = { NBDKIT, "pattern", "12345", NULL };
  char *oldstyle[] = { NBDKIT, "-o", "memory", "64K", NULL };
  char *info[] = { NBDKIT, "info", NULL };
  char *nozero[] = { NBDKIT, "--filter=nozero", "--filter=nocache",
                     "memory", "1M", NULL };
  char *eval[] = { NBDKIT, "--log=null", "eval", "get_size=echo 65536",
                   "pread=if [ $4 -ge 4096 ]; then echo EIO >&2; exit 1; "
                   "fi; head -c $3 /dev/zero",
                   "can_write=exit 0",
                   "pwrite=cat >/dev/null; echo ENOSPC >&2; exit 1",
                   "can_flush=exit 3", "can_fua=echo none",
                   "can_trim=exit 0", "trim=echo EPERM >&2; exit 1",
                   "can_cache=echo native", "cache=exit 0",
                   "can_multi_conn=exit 3", NULL };
  char *missing[] = { "/nonexistent/program", NULL };
  char *empty[] = { NULL };
  unsigned a, b, c;

  printf ("=== fresh handle\n");
  printf ("initial error: %s errno=%d\n",
          nbd_get_error () ? nbd_get_error () : "(null)", nbd_get_errno ());
  h = nbd_create ();
  SF (nbd_get_handle_name (h));
  S (nbd_get_package_name (h));
  printf ("version looks like N.N.N: %d\n",
          sscanf (nbd_get_version (h), "%u.%u.%u", &a, &b, &c) == 3);
  S (nbd_get_version (h));
  all_info (h);
  all_commands (h, 1048576);
  I (nbd_shutdown (h, 0));
  I (nbd_shutdown (h, 0x63));
  I (nbd_set_handle_name (h, "custom"));
  SF (nbd_get_handle_name (h));
  printf ("%-58s = %ju\n", "nbd_set_private_data (h, 99)",
          (uintmax_t) nbd_set_private_data (h, 99));
  printf ("%-58s = %ju\n", "nbd_get_private_data (h)",
          (uintmax_t) nbd_get_private_data (h));
  I (nbd_set_debug (h, 2));
  I (nbd_get_debug (h));
  I (nbd_set_debug (h, 0));
  I (nbd_set_request_structured_replies (h, 5));
  I (nbd_get_request_structured_replies (h));
  I (nbd_set_export_name (h, "name"));
  SF (nbd_get_export_name (h));
  I (nbd_connect_command (h, empty));
  S (nbd_connection_state (h));
  I (nbd_connect_command (h, missing));
  all_info (h);
  all_commands (h, 1048576);
  I (nbd_connect_command (h, memory));
  I (nbd_shutdown (h, 0));
  nbd_close (h);
  nbd_close (NULL);

  server ("memory", memory, NULL, 1, 1048576);
  server ("memory, no structured replies", memory, "x", 0, 1048576);
  server ("memory -r", memory_ro, NULL, 1, 1048576);
  server ("pattern 12345", pattern, NULL, 1, 12345);
  server ("oldstyle", oldstyle, NULL, 1, 65536);
  server ("info", info, "hello", 1, 5);
  server ("nozero nocache", nozero, NULL, 1, 1048576);
  server ("eval", eval, NULL, 1, 65536);

  /* Data checks. */
  printf ("\n=== data\n");
  h = nbd_create ();
  I (nbd_connect_command (h, pattern));
  I (nbd_pread (h, buf, 12345, 0, 0));
  {
    unsigned long sum = 0;
    int i;
    for (i = 0; i < 12345; ++i)
      sum = sum * 31 + (unsigned char) buf[i];
    printf ("pattern checksum %lu\n", sum);
  }
  nbd_close (h);
  h = nbd_create ();
  I (nbd_set_export_name (h, "exportname-sent"));
  I (nbd_connect_command (h, info));
  I (nbd_pread (h, buf, 15, 0, 0));
  printf ("info data: %.15s\n", buf);
  nbd_close (h);
  return 0;
}
EOF

build () {   # build OUT CPPFLAGS... -- LDFLAGS...
    local out=$1; shift
    "$CC" -std=gnu11 -Wall -Werror -o "$out" "$work/compare.c" "$@" || {
        echo "$0: build of $out failed" >&2; exit 2; }
}

build "$work/oracle" -I "$ORACLE_INCDIR" -L "$ORACLE_LIBDIR" -lnbd
LD_LIBRARY_PATH="$ORACLE_LIBDIR" "$work/oracle" >"$work/oracle.out" 2>/dev/null ||
    { echo "$0: oracle program failed" >&2; exit 2; }

if [ -z "$libdir" ]; then
    LD_LIBRARY_PATH="$ORACLE_LIBDIR" "$work/oracle" >"$work/ours.out" 2>/dev/null
    label=oracle-again
else
    if [ -e "$libdir/libnbd.so" ]; then l=-lnbd; else l=-l:libnbd.so.0; fi
    build "$work/ours" -I "$incdir" -L "$libdir" $l
    LD_LIBRARY_PATH="$libdir" NBD_TEST_OURS=1 "$work/ours" >"$work/ours.out" 2>/dev/null
    r=$?
    [ $r -eq 0 ] || echo "$0: our program exited with status $r" >&2
    label=ours
fi

if diff -u --label "oracle $(oracle_version)" --label "$label" "$work/oracle.out" "$work/ours.out"; then
    echo "identical ($(wc -l <"$work/oracle.out") lines)"
    exit 0
else
    exit 1
fi
