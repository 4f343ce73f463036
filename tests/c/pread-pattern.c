/* nbd_pread returns byte-exact data: checked against nbdkit's pattern
 * plugin at aligned, unaligned and boundary offsets.
 */
#include "test-util.h"

static void
read_and_check (struct nbd_handle *h, size_t count, uint64_t offset)
{
  unsigned char *buf = malloc (count);

  if (buf == NULL)
    FAIL ("malloc: %s", strerror (errno));
  memset (buf, 0xAA, count);
  if (nbd_pread (h, buf, count, offset, 0) == -1)
    FAIL ("nbd_pread (count=%zu, offset=%" PRIu64 "): %s",
          count, offset, tu_errmsg ());
  tu_check_pattern (buf, count, offset);
  free (buf);
}

int
main (void)
{
  char *pattern_1m[] = { NBDKIT, "pattern", "1M", NULL };
  char *pattern_odd[] = { NBDKIT, "pattern", "12345", NULL };
  struct nbd_handle *h;
  unsigned char buf[16];

  h = tu_connect (pattern_1m);
  CHECK_INT (nbd_get_size (h), 1048576);
  CHECK_INT (nbd_is_read_only (h), 1);

  /* Sector 0 starts with the words 0 and 8. */
  CHECK_OK (nbd_pread (h, buf, 16, 0, 0));
  CHECK (memcmp (buf, "\0\0\0\0\0\0\0\0" "\0\0\0\0\0\0\0\x08", 16) == 0);

  read_and_check (h, 512, 0);
  read_and_check (h, 512, 512);
  read_and_check (h, 1, 7);
  read_and_check (h, 13, 3);
  read_and_check (h, 4096, 65536 - 100);
  read_and_check (h, 1, 1048575);
  read_and_check (h, 100, 1048576 - 100);
  read_and_check (h, 1048576, 0);           /* the whole disk at once */
  read_and_check (h, 3 * 65536 + 5, 77777);

  /* A read that only just runs past the end is refused. */
  CHECK_ERR (nbd_pread (h, buf, 2, 1048575, 0), EINVAL,
             "nbd_pread: request out of bounds: Invalid argument");
  /* The handle is still fine. */
  read_and_check (h, 8, 1048568);
  nbd_close (h);

  /* A size that is not a multiple of 8 or 512. */
  h = tu_connect (pattern_odd);
  CHECK_INT (nbd_get_size (h), 12345);
  read_and_check (h, 12345, 0);
  read_and_check (h, 41, 12345 - 41);
  CHECK_OK (nbd_pread (h, buf, 1, 12344, 0));
  CHECK (buf[0] == tu_pattern_byte (12344));  /* 0x00: top byte of 12336 */
  CHECK_ERR (nbd_pread (h, buf, 2, 12344, 0), EINVAL,
             "nbd_pread: request out of bounds: Invalid argument");
  nbd_close (h);

  return 0;
}
