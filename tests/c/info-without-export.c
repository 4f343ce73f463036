/* The info calls (nbd_get_size, nbd_get_block_size, nbd_is_*, nbd_can_*)
 * fail with EINVAL while the server has not told the client the export's
 * size and flags: in option mode before any NBD_OPT_INFO/GO, after a
 * refused NBD_OPT_INFO, and after an NBD_OPT_GO the server answered
 * without NBD_INFO_EXPORT.  A size above INT64_MAX is EOVERFLOW for
 * nbd_get_size only.  Scripted server (fake-server.h).
 */
#include "fake-server.h"

#define NO_SIZE "nbd_get_size: server has not returned export size, " \
  "you need to connect to the server first: Invalid argument"
#define NO_META "nbd_can_meta_context: need a successful server meta " \
  "context request first: Invalid argument"
#define NO_FLAGS(api) api ": server has not returned export flags, " \
  "you need to connect to the server first: Invalid argument"

static void
check_no_info (struct nbd_handle *h)
{
  CHECK_ERR (nbd_get_size (h), EINVAL, NO_SIZE);
  CHECK_ERR (nbd_get_block_size (h, LIBNBD_SIZE_PAYLOAD), EINVAL,
             NO_FLAGS ("nbd_get_block_size"));
  CHECK_ERR (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), EINVAL,
             NO_FLAGS ("nbd_get_block_size"));
  CHECK_ERR (nbd_is_read_only (h), EINVAL, NO_FLAGS ("nbd_is_read_only"));
  CHECK_ERR (nbd_is_rotational (h), EINVAL, NO_FLAGS ("nbd_is_rotational"));
  CHECK_ERR (nbd_can_flush (h), EINVAL, NO_FLAGS ("nbd_can_flush"));
  CHECK_ERR (nbd_can_fua (h), EINVAL, NO_FLAGS ("nbd_can_fua"));
  CHECK_ERR (nbd_can_trim (h), EINVAL, NO_FLAGS ("nbd_can_trim"));
  CHECK_ERR (nbd_can_zero (h), EINVAL, NO_FLAGS ("nbd_can_zero"));
  CHECK_ERR (nbd_can_fast_zero (h), EINVAL, NO_FLAGS ("nbd_can_fast_zero"));
  CHECK_ERR (nbd_can_df (h), EINVAL, NO_FLAGS ("nbd_can_df"));
  CHECK_ERR (nbd_can_multi_conn (h), EINVAL, NO_FLAGS ("nbd_can_multi_conn"));
  CHECK_ERR (nbd_can_cache (h), EINVAL, NO_FLAGS ("nbd_can_cache"));
  CHECK_ERR (nbd_can_block_status_payload (h), EINVAL,
             NO_FLAGS ("nbd_can_block_status_payload"));
}

int
main (void)
{
  struct nbd_handle *h;
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true };

  /* Option mode, nothing asked yet. */
  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_aio_is_negotiating (h), 1);
  check_no_info (h);
  CHECK_ERR_NULL (nbd_get_canonical_export_name (h), EINVAL,
                  NO_FLAGS ("nbd_get_canonical_export_name"));
  CHECK_ERR_NULL (nbd_get_export_description (h), EINVAL,
                  NO_FLAGS ("nbd_get_export_description"));
  CHECK_ERR (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION),
             EINVAL, NO_META);
  /* A successful NBD_OPT_INFO makes them work. */
  CHECK_OK (nbd_opt_info (h));
  CHECK_INT (nbd_get_size (h), 1024 * 1024);
  CHECK_INT (nbd_can_flush (h), 1);
  CHECK_INT (nbd_is_read_only (h), 0);
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_PAYLOAD), 32 * 1024 * 1024);
  CHECK_INT (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION), 1);
  /* Changing the export name forgets them again. */
  CHECK_OK (nbd_set_export_name (h, "other"));
  check_no_info (h);
  CHECK_ERR (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION),
             EINVAL, NO_META);
  CHECK_OK (nbd_opt_abort (h));
  nbd_close (h);
  fake_wait (&srv);

  /* Option mode, NBD_OPT_INFO refused: still nothing known. */
  cfg.refuse_go = FS_REP_ERR_UNKNOWN;
  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_opt_info (h), -1);
  CHECK_INT (nbd_aio_is_negotiating (h), 1);
  check_no_info (h);
  CHECK_INT (nbd_opt_go (h), -1);
  check_no_info (h);
  CHECK_OK (nbd_opt_abort (h));
  nbd_close (h);
  fake_wait (&srv);

  /* NBD_OPT_GO answered without NBD_INFO_EXPORT: the connection is made
   * but nothing is known of the export.
   */
  cfg.refuse_go = 0;
  cfg.no_export_info = true;
  h = tu_create ();
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  check_no_info (h);
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  fake_wait (&srv);

  /* A size that does not fit in int64_t: only nbd_get_size fails. */
  cfg.no_export_info = false;
  cfg.size = UINT64_C (1) << 63;
  h = tu_create ();
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_ERR (nbd_get_size (h), EOVERFLOW,
             "nbd_get_size: server claims size 9223372036854775808 "
             "which does not fit in signed result: Value too large for defined data type");
  CHECK_INT (nbd_can_flush (h), 1);
  CHECK_INT (nbd_is_read_only (h), 0);
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  fake_wait (&srv);
  return 0;
}
