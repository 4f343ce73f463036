/* Client-side payload limits under LIBNBD_STRICT_PAYLOAD (the default):
 * a write larger than nbd_get_block_size (h, LIBNBD_SIZE_PAYLOAD) fails
 * up front with ERANGE, nothing sent; reads are limited only by the
 * 64 MiB request maximum.  Without LIBNBD_STRICT_PAYLOAD the write goes
 * to the server.  Scripted server (fake-server.h).
 */
#include "fake-server.h"

#define M (1024 * 1024)

static int
chunk_cb (void *user_data, const void *subbuf, size_t count,
          uint64_t offset, unsigned status, int *error)
{
  return 0;
}

static int
done_cb (void *user_data, int *error)
{
  return 1;
}

static void
check (uint32_t bs_max, int64_t payload)
{
  struct nbd_handle *h = tu_create ();
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true, .size = 128 * M };
  char *buf = calloc (1, 65 * M);
  char msg[128];
  uint64_t sent;

  if (buf == NULL)
    FAIL ("calloc");
  if (bs_max) {
    cfg.block_size = true;
    cfg.bs_min = 1;
    cfg.bs_pref = 4096;
    cfg.bs_max = bs_max;
  }
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_PAYLOAD), payload);

  snprintf (msg, sizeof msg,
            "nbd_pwrite: request too large: maximum payload size is %" PRIi64
            ": Numerical result out of range", payload);
  sent = nbd_stats_bytes_sent (h);
  CHECK_ERR (nbd_pwrite (h, buf, payload + 512, 0, 0), ERANGE, msg);
  snprintf (msg, sizeof msg,
            "nbd_aio_pwrite: request too large: maximum payload size is %"
            PRIi64 ": Numerical result out of range", payload);
  CHECK_ERR (nbd_aio_pwrite (h, buf, payload + 512, 0,
                             NBD_NULL_COMPLETION, 0), ERANGE, msg);
  CHECK_INT (nbd_stats_bytes_sent (h), sent);
  CHECK_OK (nbd_pwrite (h, buf, payload, 0, 0));

  /* Reads: up to 64 MiB whatever the payload maximum. */
  if (payload < 64 * M)
    CHECK_OK (nbd_pread (h, buf, payload + 512, 0, 0));
  CHECK_OK (nbd_pread (h, buf, 64 * M, 0, 0));
  CHECK_ERR (nbd_pread (h, buf, 64 * M + 512, 0, 0), ERANGE,
             "nbd_pread: request too large: maximum request size is 67108864"
             ": Numerical result out of range");
  CHECK_ERR (nbd_pread_structured (h, buf, 64 * M + 512, 0,
                                   (nbd_chunk_callback) { .callback = chunk_cb },
                                   0), ERANGE,
             "nbd_pread_structured: request too large: maximum request size "
             "is 67108864: Numerical result out of range");
  CHECK_ERR (nbd_aio_pread_structured (h, buf, 64 * M + 512, 0,
                                       (nbd_chunk_callback) {
                                         .callback = chunk_cb },
                                       NBD_NULL_COMPLETION, 0), ERANGE,
             "nbd_aio_pread_structured: request too large: maximum request "
             "size is 67108864: Numerical result out of range");
  /* Commands without a payload: only the 32-bit length field limits them. */
  CHECK_OK (nbd_trim (h, payload + 512, 0, 0));
  int64_t c = nbd_aio_pread (h, buf, payload < 64 * M ? payload + 512 : payload, 0,
                             (nbd_completion_callback) { .callback = done_cb },
                             0);
  CHECK (c > 0);
  while (nbd_aio_in_flight (h) > 0)
    CHECK (nbd_poll (h, -1) >= 0);

  /* Without LIBNBD_STRICT_PAYLOAD the write goes to the server. */
  if (payload < 64 * M) {
    CHECK_OK (nbd_set_strict_mode (h, LIBNBD_STRICT_MASK &
                                   ~LIBNBD_STRICT_PAYLOAD));
    CHECK_OK (nbd_pwrite (h, buf, payload + 512, 0, 0));
  }
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  fake_wait (&srv);
  free (buf);
}

int
main (void)
{
  check (0, 32 * M);            /* nothing said: 32 MiB */
  check (4 * M, 4 * M);         /* the server's maximum */
  check (65536, 1 * M);         /* at least 1 MiB */
  check (128 * M, 64 * M);      /* at most 64 MiB */
  check (0xffffffff, 64 * M);
  return 0;
}
