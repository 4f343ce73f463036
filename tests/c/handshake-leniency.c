/* What libnbd 1.22.2 tolerates in the handshake, each from a scripted
 * server (fake-server.h): invalid block size constraints are ignored
 * (reads at any alignment then work), and an NBD_INFO_NAME far longer
 * than the protocol allows is skipped rather than failing the connect.
 */
#include "fake-server.h"

static void
check_block_size (uint32_t min, uint32_t pref, uint32_t max, bool valid)
{
  struct nbd_handle *h = tu_create ();
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true, .block_size = true,
                          .bs_min = min, .bs_pref = pref, .bs_max = max };
  char buf[4096];

  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), valid ? min : 0);
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_PREFERRED), valid ? pref : 0);
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM), valid ? max : 0);
  if (!valid) {
    CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_PAYLOAD), 32 * 1024 * 1024);
    /* Nothing constrains the client: an odd read works. */
    CHECK_OK (nbd_pread (h, buf, 3, 1, 0));
    CHECK_OK (nbd_pread (h, buf, sizeof buf, 512, 0));
  }
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  fake_wait (&srv);
}

int
main (void)
{
  struct nbd_handle *h;
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true };

  check_block_size (512, 4096, 1024 * 1024, true);
  check_block_size (1, 512, 0xffffffff, true);
  check_block_size (4096, 512, 1024 * 1024, false);   /* min > pref */
  check_block_size (512, 4096, 2048, false);          /* pref > max */
  check_block_size (1000, 4096, 1024 * 1024, false);  /* min not 2^n */
  check_block_size (512, 3000, 1024 * 1024, false);   /* pref not 2^n */
  check_block_size (0, 4096, 1024 * 1024, false);     /* min 0 */
  check_block_size (128 * 1024, 128 * 1024, 1024 * 1024, false); /* min > 64K */
  check_block_size (256, 256, 1024 * 1024, false);    /* pref < 512 */
  check_block_size (4096, 4096, 4096 * 3 + 1, false); /* max % min */
  check_block_size (0xffffffff, 0xffffffff, 0xffffffff, false);

  /* A 70 kB NBD_INFO_NAME (the protocol allows 4096 bytes): skipped. */
  cfg.name_len = 70000;
  h = tu_create ();
  CHECK_OK (nbd_set_full_info (h, true));
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_INT (nbd_get_size (h), 1024 * 1024);
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  fake_wait (&srv);
  return 0;
}
