/* Export size, read-only flag and the can_* capability flags, for
 * servers advertising different combinations, and how each command
 * behaves when the server lacks the capability.
 */
#include "test-util.h"

struct expect {
  const char *what;
  char **argv;
  int64_t size;
  int ro, flush, fua, trim, zero, cache, multi_conn;
};

#define EVAL_COMMON                                                     \
  NBDKIT, "--log=null", "eval",                                         \
    "pread=head -c $3 /dev/zero",                                       \
    "can_write=exit 0", "pwrite=cat >/dev/null"

/* writable, flush + native FUA, no trim, no zero, no cache, no
 * multi-conn, larger than 4 GiB.
 */
static char *eval_a[] = {
  NBDKIT, "--log=null", "--filter=nozero", "eval",
  "pread=head -c $3 /dev/zero",
  "can_write=exit 0", "pwrite=cat >/dev/null",
  "get_size=echo 5000000000",
  "can_flush=exit 0", "flush=exit 0",
  "can_fua=echo native",
  "can_trim=exit 3",
  "can_cache=echo none",
  "can_multi_conn=exit 3",
  NULL
};

/* writable, no flush, no FUA, trim, zero, native cache, multi-conn,
 * odd size.
 */
static char *eval_b[] = {
  EVAL_COMMON,
  "get_size=echo 12345",
  "can_flush=exit 3",
  "can_fua=echo none",
  "can_trim=exit 0", "trim=exit 0",
  "can_zero=exit 0", "zero=exit 0",
  "can_cache=echo native", "cache=exit 0",
  "can_multi_conn=exit 0",
  NULL
};

static char *memory[] = { NBDKIT, "memory", "1M", NULL };
static char *memory_ro[] = { NBDKIT, "-r", "memory", "1M", NULL };
static char *pattern[] = { NBDKIT, "pattern", "64K", NULL };
static char *memory_nozero_nocache[] = {
  NBDKIT, "--filter=nozero", "--filter=nocache", "memory", "2M", NULL
};

static const struct expect servers[] = {
  /* what             argv                   size ro fl fua tr ze ca mc */
  { "memory",         memory,             1048576, 0, 1, 1, 1, 1, 1, 1 },
  { "memory -r",      memory_ro,          1048576, 1, 1, 0, 0, 0, 1, 1 },
  { "pattern",        pattern,              65536, 1, 0, 0, 0, 0, 1, 1 },
  { "nozero+nocache", memory_nozero_nocache,
                                          2097152, 0, 1, 1, 1, 0, 0, 1 },
  { "eval a",         eval_a,         5000000000LL, 0, 1, 1, 0, 0, 0, 0 },
  { "eval b",         eval_b,               12345, 0, 0, 0, 1, 1, 1, 1 },
};

#define UNSUPPORTED(fn, op) \
  fn ": server does not support " op " operations: Invalid argument"
#define NO_FUA(fn) \
  fn ": server does not support the FUA flag: Invalid argument"

static void
test_server (const struct expect *e)
{
  struct nbd_handle *h;
  char buf[512];

  fprintf (stderr, "server: %s\n", e->what);
  memset (buf, 0, sizeof buf);
  h = tu_connect (e->argv);

  CHECK_INT (nbd_get_size (h), e->size);
  CHECK_INT (nbd_is_read_only (h), e->ro);
  CHECK_INT (nbd_can_flush (h), e->flush);
  CHECK_INT (nbd_can_fua (h), e->fua);
  CHECK_INT (nbd_can_trim (h), e->trim);
  CHECK_INT (nbd_can_zero (h), e->zero);
  CHECK_INT (nbd_can_cache (h), e->cache);
  CHECK_INT (nbd_can_multi_conn (h), e->multi_conn);

  /* Reading always works. */
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));

  /* Writes. */
  if (e->ro) {
    CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, 0), EPERM,
               "nbd_pwrite: server does not support write operations: "
               "Operation not permitted");
    CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, LIBNBD_CMD_FLAG_FUA),
               EPERM,
               "nbd_pwrite: server does not support write operations: "
               "Operation not permitted");
  }
  else {
    CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, 0));
    if (e->fua)
      CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, LIBNBD_CMD_FLAG_FUA));
    else
      CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, LIBNBD_CMD_FLAG_FUA),
                 EINVAL, NO_FUA ("nbd_pwrite"));
  }

  /* Flush. */
  if (e->flush)
    CHECK_OK (nbd_flush (h, 0));
  else
    CHECK_ERR (nbd_flush (h, 0), EINVAL,
               UNSUPPORTED ("nbd_flush", "flush"));

  /* Trim. */
  if (e->trim) {
    CHECK_OK (nbd_trim (h, 512, 0, 0));
    if (e->fua)
      CHECK_OK (nbd_trim (h, 512, 0, LIBNBD_CMD_FLAG_FUA));
    else
      CHECK_ERR (nbd_trim (h, 512, 0, LIBNBD_CMD_FLAG_FUA), EINVAL,
                 NO_FUA ("nbd_trim"));
  }
  else {
    CHECK_ERR (nbd_trim (h, 512, 0, 0), EINVAL,
               UNSUPPORTED ("nbd_trim", "trim"));
    /* The missing capability is reported before the FUA problem and
     * before argument checks (count 0).
     */
    CHECK_ERR (nbd_trim (h, 0, 0, LIBNBD_CMD_FLAG_FUA), EINVAL,
               UNSUPPORTED ("nbd_trim", "trim"));
  }

  /* Zero. */
  if (e->zero) {
    CHECK_OK (nbd_zero (h, 512, 0, 0));
    CHECK_OK (nbd_zero (h, 512, 0, LIBNBD_CMD_FLAG_NO_HOLE));
    if (e->fua)
      CHECK_OK (nbd_zero (h, 512, 0, LIBNBD_CMD_FLAG_FUA));
    else
      CHECK_ERR (nbd_zero (h, 512, 0, LIBNBD_CMD_FLAG_FUA), EINVAL,
                 NO_FUA ("nbd_zero"));
  }
  else {
    CHECK_ERR (nbd_zero (h, 512, 0, 0), EINVAL,
               UNSUPPORTED ("nbd_zero", "zero"));
    CHECK_ERR (nbd_zero (h, 0, 0, LIBNBD_CMD_FLAG_FUA), EINVAL,
               UNSUPPORTED ("nbd_zero", "zero"));
  }

  /* Cache. */
  if (e->cache)
    CHECK_OK (nbd_cache (h, 512, 0, 0));
  else {
    CHECK_ERR (nbd_cache (h, 512, 0, 0), EINVAL,
               UNSUPPORTED ("nbd_cache", "cache"));
    /* ... even for an out-of-bounds request. */
    CHECK_ERR (nbd_cache (h, 512, (uint64_t) e->size, 0), EINVAL,
               UNSUPPORTED ("nbd_cache", "cache"));
  }

  /* None of the refused requests hurt the connection. */
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
}

int
main (void)
{
  size_t i;

  for (i = 0; i < sizeof servers / sizeof servers[0]; ++i)
    test_server (&servers[i]);
  return 0;
}
