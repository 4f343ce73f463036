/* Errors reported by the server for a single request fail that call
 * with the server's errno, and leave the connection usable.
 */
#include "test-util.h"

int
main (void)
{
  /* pread fails with EIO in the second 4 KiB block, returns zeroes
   * elsewhere; other commands fail with various errors.
   */
  char *failing[] = {
    NBDKIT, "--log=null", "eval",
    "get_size=echo 65536",
    "pread=if [ $4 -ge 4096 ] && [ $4 -lt 8192 ]; then "
      "echo EIO >&2; exit 1; fi; head -c $3 /dev/zero",
    "can_write=exit 0",
    "pwrite=cat >/dev/null; echo ENOSPC >&2; exit 1",
    "can_flush=exit 0", "flush=echo EIO >&2; exit 1",
    "can_trim=exit 0", "trim=echo EPERM >&2; exit 1",
    "can_zero=exit 0", "zero=echo EINVAL >&2; exit 1",
    "can_cache=echo native", "cache=echo ESHUTDOWN >&2; exit 1",
    "can_fua=echo native",
    NULL
  };
  struct nbd_handle *h;
  char buf[512];
  int i;

  h = tu_connect (failing);

  memset (buf, 1, sizeof buf);
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  for (i = 0; i < (int) sizeof buf; ++i)
    CHECK (buf[i] == 0);

  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 4096, 0), EIO,
             "nbd_pread: read: command failed: Input/output error");
  /* The same again, and the handle stays ready between failures. */
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 8191, 0), EIO,
             "nbd_pread: read: command failed: Input/output error");
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 8192, 0));
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 3584, 0));

  CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, 0), ENOSPC,
             "nbd_pwrite: write: command failed: No space left on device");
  CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, LIBNBD_CMD_FLAG_FUA), ENOSPC,
             "nbd_pwrite: write: command failed: No space left on device");
  CHECK_ERR (nbd_flush (h, 0), EIO,
             "nbd_flush: flush: command failed: Input/output error");
  CHECK_ERR (nbd_trim (h, 512, 0, 0), EPERM,
             "nbd_trim: trim: command failed: Operation not permitted");
  CHECK_ERR (nbd_zero (h, 512, 0, 0), EINVAL,
             "nbd_zero: write-zeroes: command failed: Invalid argument");
  CHECK_ERR (nbd_cache (h, 512, 0, 0), ESHUTDOWN,
             "nbd_cache: cache: command failed: Cannot send after "
             "transport endpoint shutdown");

  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 60000, 0));
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);

  /* The same EIO without structured replies (simple replies). */
  h = tu_create ();
  CHECK_OK (nbd_set_request_structured_replies (h, 0));
  CHECK_OK (nbd_connect_command (h, failing));
  CHECK_INT (nbd_get_structured_replies_negotiated (h), 0);
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 4096, 0), EIO,
             "nbd_pread: read: command failed: Input/output error");
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  nbd_close (h);

  return 0;
}
