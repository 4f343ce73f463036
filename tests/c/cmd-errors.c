/* Argument validation of the synchronous commands: unknown flags,
 * count 0, out-of-bounds ranges, oversized requests, and the order in
 * which these checks are applied.  None of these may disturb the
 * connection.
 */
#include "test-util.h"

#define MiB (1024 * 1024)
#define MAX_BUF (64 * MiB)

#define BAD_FLAG(fn, val) \
  fn ": flags: invalid value for flag: " val ": Invalid argument"
#define ZERO_COUNT(fn) fn ": count cannot be 0: Invalid argument"
#define OOB_EINVAL(fn) fn ": request out of bounds: Invalid argument"
#define OOB_ENOSPC(fn) fn ": request out of bounds: No space left on device"

int
main (void)
{
  char *memory[] = { NBDKIT, "memory", "1M", NULL };
  char *memory_big[] = { NBDKIT, "memory", "8G", NULL };
  struct nbd_handle *h;
  char buf[512];
  char *big;
  const uint64_t size = MiB;

  memset (buf, 0, sizeof buf);
  h = tu_connect (memory);

  /* --- unknown / not permitted flags --- */
  CHECK_ERR (nbd_pread (h, buf, 512, 0, 0x63), EINVAL,
             BAD_FLAG ("nbd_pread", "0x63"));
  /* pread accepts no flags at all, not even FUA or DF. */
  CHECK_ERR (nbd_pread (h, buf, 512, 0, LIBNBD_CMD_FLAG_FUA), EINVAL,
             BAD_FLAG ("nbd_pread", "0x1"));
  CHECK_ERR (nbd_pread (h, buf, 512, 0, LIBNBD_CMD_FLAG_DF), EINVAL,
             BAD_FLAG ("nbd_pread", "0x4"));
  CHECK_ERR (nbd_pwrite (h, buf, 512, 0, 0x63), EINVAL,
             BAD_FLAG ("nbd_pwrite", "0x63"));
  CHECK_ERR (nbd_pwrite (h, buf, 512, 0, LIBNBD_CMD_FLAG_NO_HOLE), EINVAL,
             BAD_FLAG ("nbd_pwrite", "0x2"));
  CHECK_ERR (nbd_pwrite (h, buf, 512, 0, 0x80000000U), EINVAL,
             BAD_FLAG ("nbd_pwrite", "0x80000000"));
  CHECK_ERR (nbd_flush (h, LIBNBD_CMD_FLAG_FUA), EINVAL,
             BAD_FLAG ("nbd_flush", "0x1"));
  CHECK_ERR (nbd_flush (h, 0x63), EINVAL, BAD_FLAG ("nbd_flush", "0x63"));
  CHECK_ERR (nbd_trim (h, 512, 0, LIBNBD_CMD_FLAG_NO_HOLE), EINVAL,
             BAD_FLAG ("nbd_trim", "0x2"));
  CHECK_ERR (nbd_trim (h, 512, 0, 0x63), EINVAL,
             BAD_FLAG ("nbd_trim", "0x63"));
  CHECK_ERR (nbd_zero (h, 512, 0, LIBNBD_CMD_FLAG_DF), EINVAL,
             BAD_FLAG ("nbd_zero", "0x4"));
  CHECK_ERR (nbd_zero (h, 512, 0, 0x63), EINVAL,
             BAD_FLAG ("nbd_zero", "0x63"));
  CHECK_ERR (nbd_cache (h, 512, 0, LIBNBD_CMD_FLAG_FUA), EINVAL,
             BAD_FLAG ("nbd_cache", "0x1"));
  CHECK_ERR (nbd_cache (h, 512, 0, 0x63), EINVAL,
             BAD_FLAG ("nbd_cache", "0x63"));

  /* --- count 0 --- */
  CHECK_ERR (nbd_pread (h, buf, 0, 0, 0), EINVAL, ZERO_COUNT ("nbd_pread"));
  CHECK_ERR (nbd_pwrite (h, buf, 0, 0, 0), EINVAL,
             ZERO_COUNT ("nbd_pwrite"));
  CHECK_ERR (nbd_trim (h, 0, 0, 0), EINVAL, ZERO_COUNT ("nbd_trim"));
  CHECK_ERR (nbd_zero (h, 0, 0, 0), EINVAL, ZERO_COUNT ("nbd_zero"));
  CHECK_ERR (nbd_cache (h, 0, 0, 0), EINVAL, ZERO_COUNT ("nbd_cache"));

  /* --- out of bounds: EINVAL for reads/cache, ENOSPC for writes --- */
  CHECK_ERR (nbd_pread (h, buf, 512, size, 0), EINVAL,
             OOB_EINVAL ("nbd_pread"));
  CHECK_ERR (nbd_pread (h, buf, 512, size - 256, 0), EINVAL,
             OOB_EINVAL ("nbd_pread"));
  CHECK_ERR (nbd_pread (h, buf, 512, UINT64_MAX - 100, 0), EINVAL,
             OOB_EINVAL ("nbd_pread"));
  CHECK_ERR (nbd_cache (h, 512, size, 0), EINVAL, OOB_EINVAL ("nbd_cache"));
  CHECK_ERR (nbd_pwrite (h, buf, 512, size, 0), ENOSPC,
             OOB_ENOSPC ("nbd_pwrite"));
  CHECK_ERR (nbd_pwrite (h, buf, 1, size, LIBNBD_CMD_FLAG_FUA), ENOSPC,
             OOB_ENOSPC ("nbd_pwrite"));
  CHECK_ERR (nbd_pwrite (h, buf, 512, UINT64_MAX - 100, 0), ENOSPC,
             OOB_ENOSPC ("nbd_pwrite"));
  CHECK_ERR (nbd_trim (h, 512, size - 511, 0), ENOSPC,
             OOB_ENOSPC ("nbd_trim"));
  CHECK_ERR (nbd_zero (h, 512, size, 0), ENOSPC, OOB_ENOSPC ("nbd_zero"));
  CHECK_ERR (nbd_zero (h, UINT64_MAX, 0, 0), ENOSPC,
             OOB_ENOSPC ("nbd_zero"));

  /* Exactly up to the end is fine. */
  CHECK_OK (nbd_pread (h, buf, 512, size - 512, 0));
  CHECK_OK (nbd_pwrite (h, buf, 512, size - 512, 0));
  CHECK_OK (nbd_trim (h, 512, size - 512, 0));
  CHECK_OK (nbd_zero (h, 512, size - 512, 0));
  CHECK_OK (nbd_cache (h, 512, size - 512, 0));

  /* --- order of checks: flags, then count 0, then bounds --- */
  CHECK_ERR (nbd_pread (h, buf, 0, size * 2, 0x63), EINVAL,
             BAD_FLAG ("nbd_pread", "0x63"));
  CHECK_ERR (nbd_pread (h, buf, 0, size * 2, 0), EINVAL,
             ZERO_COUNT ("nbd_pread"));
  CHECK_ERR (nbd_pwrite (h, buf, 0, size * 2, 0x63), EINVAL,
             BAD_FLAG ("nbd_pwrite", "0x63"));
  CHECK_ERR (nbd_pwrite (h, buf, 0, size * 2, LIBNBD_CMD_FLAG_FUA), EINVAL,
             ZERO_COUNT ("nbd_pwrite"));
  CHECK_ERR (nbd_trim (h, 0, size * 2, 0x63), EINVAL,
             BAD_FLAG ("nbd_trim", "0x63"));
  CHECK_ERR (nbd_trim (h, 0, size * 2, LIBNBD_CMD_FLAG_FUA), EINVAL,
             ZERO_COUNT ("nbd_trim"));
  CHECK_ERR (nbd_zero (h, 0, size * 2, 0), EINVAL, ZERO_COUNT ("nbd_zero"));
  CHECK_ERR (nbd_cache (h, 0, size * 2, 0x63), EINVAL,
             BAD_FLAG ("nbd_cache", "0x63"));

  /* Bounds are checked before the 64 MiB buffer limit. */
  big = malloc (MAX_BUF + 1);
  CHECK (big != NULL);
  CHECK_ERR (nbd_pread (h, big, MAX_BUF + 1, 0, 0), EINVAL,
             OOB_EINVAL ("nbd_pread"));
  CHECK_ERR (nbd_pwrite (h, big, MAX_BUF + 1, 0, 0), ENOSPC,
             OOB_ENOSPC ("nbd_pwrite"));

  /* The connection survived all of that. */
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_OK (nbd_pread (h, buf, 512, 0, 0));
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);

  /* --- request size limits, on a disk big enough to be in bounds --- */
  h = tu_connect (memory_big);
  CHECK_INT (nbd_get_size (h), 8LL * 1024 * MiB);
  CHECK_ERR (nbd_pread (h, big, MAX_BUF + 1, 0, 0), ERANGE,
             "nbd_pread: request too large: maximum request size is "
             "67108864: Numerical result out of range");
  /* A write meets the server's payload limit first (32M when it says
   * nothing), as in libnbd 1.22.
   */
  CHECK_ERR (nbd_pwrite (h, big, MAX_BUF + 1, 0, 0), ERANGE,
             "nbd_pwrite: request too large: maximum payload size is "
             "33554432: Numerical result out of range");
  CHECK_ERR (nbd_trim (h, 0x100000000ULL, 0, 0), ERANGE,
             "nbd_trim: request too large: maximum request size is "
             "4294967295: Numerical result out of range");
  CHECK_ERR (nbd_zero (h, 0x100000000ULL, 0, 0), ERANGE,
             "nbd_zero: request too large: maximum request size is "
             "4294967295: Numerical result out of range");
  CHECK_ERR (nbd_cache (h, 0x100000000ULL, 0, 0), ERANGE,
             "nbd_cache: request too large: maximum request size is "
             "4294967295: Numerical result out of range");
  /* The largest allowed sizes work. */
  CHECK_OK (nbd_zero (h, 0xffffffffULL, 0, 0));
  CHECK_OK (nbd_trim (h, 0xffffffffULL, 0, LIBNBD_CMD_FLAG_FUA));
  CHECK_OK (nbd_pwrite (h, buf, 512, 8LL * 1024 * MiB - 512, 0));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  nbd_close (h);
  free (big);

  return 0;
}
