/* Data written with nbd_pwrite (with and without FUA) reads back
 * byte-exact; nbd_zero and nbd_trim zero the range on a memory disk;
 * nbd_flush and nbd_cache succeed.
 */
#include "test-util.h"

#define DISK_SIZE 1048576

/* Our model of what the disk must contain. */
static unsigned char model[DISK_SIZE];

static void
fill (unsigned char *buf, size_t count, unsigned seed)
{
  size_t i;

  for (i = 0; i < count; ++i)
    buf[i] = (unsigned char) ((i * 31 + seed * 7 + (i >> 8)) & 0xff);
}

static void
do_write (struct nbd_handle *h, size_t count, uint64_t offset,
          uint32_t flags, unsigned seed)
{
  unsigned char *buf = malloc (count);

  CHECK (buf != NULL);
  fill (buf, count, seed);
  if (nbd_pwrite (h, buf, count, offset, flags) == -1)
    FAIL ("nbd_pwrite (count=%zu, offset=%" PRIu64 ", flags=0x%x): %s",
          count, offset, flags, tu_errmsg ());
  memcpy (model + offset, buf, count);
  free (buf);
}

/* Read the whole disk and compare it with the model. */
static void
verify (struct nbd_handle *h, const char *when)
{
  unsigned char *buf = malloc (DISK_SIZE);
  size_t i;

  CHECK (buf != NULL);
  if (nbd_pread (h, buf, DISK_SIZE, 0, 0) == -1)
    FAIL ("nbd_pread (whole disk) %s: %s", when, tu_errmsg ());
  for (i = 0; i < DISK_SIZE; ++i)
    if (buf[i] != model[i])
      FAIL ("%s: byte %zu is 0x%02x, expected 0x%02x",
            when, i, buf[i], model[i]);
  free (buf);
}

int
main (void)
{
  char *memory[] = { NBDKIT, "memory", "1M", NULL };
  struct nbd_handle *h;
  unsigned char small[8];

  h = tu_connect (memory);
  CHECK_INT (nbd_get_size (h), DISK_SIZE);
  CHECK_INT (nbd_is_read_only (h), 0);
  CHECK_INT (nbd_can_fua (h), 1);
  CHECK_INT (nbd_can_flush (h), 1);
  CHECK_INT (nbd_can_trim (h), 1);
  CHECK_INT (nbd_can_zero (h), 1);
  CHECK_INT (nbd_can_cache (h), 1);

  /* A new memory disk reads as zeroes. */
  memset (model, 0, sizeof model);
  verify (h, "initially");

  /* Plain writes: aligned, unaligned, tiny, at the very end. */
  do_write (h, 512, 0, 0, 1);
  do_write (h, 4096, 8192, 0, 2);
  do_write (h, 1000, 12345, 0, 3);
  do_write (h, 1, 70000, 0, 4);
  do_write (h, 7, DISK_SIZE - 7, 0, 5);
  verify (h, "after plain writes");

  /* FUA writes, including one overlapping earlier data. */
  do_write (h, 65536, 131072, LIBNBD_CMD_FLAG_FUA, 6);
  do_write (h, 300, 8000, LIBNBD_CMD_FLAG_FUA, 7);
  verify (h, "after FUA writes");

  /* A write covering the whole disk, then read back in pieces. */
  do_write (h, DISK_SIZE, 0, 0, 8);
  verify (h, "after whole-disk write");
  CHECK_OK (nbd_pread (h, small, sizeof small, 4093, 0));
  CHECK (memcmp (small, model + 4093, sizeof small) == 0);

  CHECK_OK (nbd_flush (h, 0));

  /* Zero: plain, with FUA, with NO_HOLE, with FAST_ZERO. */
  CHECK_OK (nbd_zero (h, 4096, 4096, 0));
  memset (model + 4096, 0, 4096);
  CHECK_OK (nbd_zero (h, 100, 50001, LIBNBD_CMD_FLAG_FUA));
  memset (model + 50001, 0, 100);
  CHECK_OK (nbd_zero (h, 777, 60000, LIBNBD_CMD_FLAG_NO_HOLE));
  memset (model + 60000, 0, 777);
  CHECK_OK (nbd_zero (h, 65536, 196608, LIBNBD_CMD_FLAG_FAST_ZERO));
  memset (model + 196608, 0, 65536);
  CHECK_OK (nbd_zero (h, 1, DISK_SIZE - 1,
                      LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_NO_HOLE));
  model[DISK_SIZE - 1] = 0;
  verify (h, "after zero");

  /* Trim: the memory plugin discards the data, so it reads as zero. */
  CHECK_OK (nbd_trim (h, 65536, 327680, 0));
  memset (model + 327680, 0, 65536);
  CHECK_OK (nbd_trim (h, 4096, 524288, LIBNBD_CMD_FLAG_FUA));
  memset (model + 524288, 0, 4096);
  verify (h, "after trim");

  /* Cache is only a hint: succeeds and changes nothing. */
  CHECK_OK (nbd_cache (h, 65536, 0, 0));
  CHECK_OK (nbd_cache (h, DISK_SIZE, 0, 0));
  verify (h, "after cache");

  CHECK_OK (nbd_flush (h, 0));

  /* The data survives until the server goes away (new connection =
   * new memory disk), but is still there after a flush.
   */
  verify (h, "at the end");
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  return 0;
}
