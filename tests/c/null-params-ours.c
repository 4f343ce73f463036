/* rust-libnbd only: NULL for a pointer parameter the API marks as
 * non-NULL (including the handle itself) is reported as an error,
 * errno EFAULT, message "nbd_xxx: <param> cannot be NULL: Bad address".
 * The C libnbd crashes on this, so the runner only runs this program
 * against our library (it sets NBD_TEST_OURS=1).
 */
#include "test-util.h"

/* The header declares these parameters non-NULL; launder NULL through
 * a volatile so the compiler neither warns nor assumes anything.
 */
static void *volatile null_ptr = NULL;
#define NULLH ((struct nbd_handle *) null_ptr)
#define NULLP ((void *) null_ptr)

static int
count_context (void *user_data, const char *name)
{
  return 0;
}

static int
count_extents (void *user_data, const char *metacontext, uint64_t offset,
               nbd_extent *entries, size_t nr_entries, int *error)
{
  return 0;
}

#define NULL_MSG(fn, param) fn ": " param " cannot be NULL: Bad address"

#define CHECK_NULL_H(call, fn) \
  CHECK_ERR ((call), EFAULT, NULL_MSG (fn, "h"))
#define CHECK_NULL_H_PTR(call, fn) \
  CHECK_ERR_NULL ((call), EFAULT, NULL_MSG (fn, "h"))

int
main (void)
{
  char *memory[] = { NBDKIT, "memory", "1M", NULL };
  const char *env = getenv ("NBD_TEST_OURS");
  struct nbd_handle *h;
  char buf[512];

  if (env == NULL || strcmp (env, "1") != 0) {
    fprintf (stderr, "skipped: only for rust-libnbd (set NBD_TEST_OURS=1)\n");
    return 77;
  }
  memset (buf, 0, sizeof buf);

  /* nbd_close (NULL) stays a no-op. */
  nbd_close (NULLH);

  /* --- h == NULL --- */
  CHECK_NULL_H (nbd_connect_command (NULLH, memory), "nbd_connect_command");
  CHECK_NULL_H (nbd_kill_subprocess (NULLH, 0), "nbd_kill_subprocess");
  CHECK_NULL_H (nbd_pread (NULLH, buf, sizeof buf, 0, 0), "nbd_pread");
  CHECK_NULL_H (nbd_pwrite (NULLH, buf, sizeof buf, 0, 0), "nbd_pwrite");
  CHECK_NULL_H (nbd_flush (NULLH, 0), "nbd_flush");
  CHECK_NULL_H (nbd_trim (NULLH, 512, 0, 0), "nbd_trim");
  CHECK_NULL_H (nbd_zero (NULLH, 512, 0, 0), "nbd_zero");
  CHECK_NULL_H (nbd_cache (NULLH, 512, 0, 0), "nbd_cache");
  CHECK_NULL_H (nbd_shutdown (NULLH, 0), "nbd_shutdown");
  CHECK_NULL_H (nbd_get_size (NULLH), "nbd_get_size");
  CHECK_NULL_H (nbd_is_read_only (NULLH), "nbd_is_read_only");
  CHECK_NULL_H (nbd_can_flush (NULLH), "nbd_can_flush");
  CHECK_NULL_H (nbd_can_fua (NULLH), "nbd_can_fua");
  CHECK_NULL_H (nbd_can_trim (NULLH), "nbd_can_trim");
  CHECK_NULL_H (nbd_can_zero (NULLH), "nbd_can_zero");
  CHECK_NULL_H (nbd_can_cache (NULLH), "nbd_can_cache");
  CHECK_NULL_H (nbd_can_multi_conn (NULLH), "nbd_can_multi_conn");
  CHECK_NULL_H (nbd_set_export_name (NULLH, "x"), "nbd_set_export_name");
  CHECK_NULL_H_PTR (nbd_get_export_name (NULLH), "nbd_get_export_name");
  CHECK_NULL_H (nbd_set_handle_name (NULLH, "x"), "nbd_set_handle_name");
  CHECK_NULL_H_PTR (nbd_get_handle_name (NULLH), "nbd_get_handle_name");
  CHECK_NULL_H (nbd_set_debug (NULLH, 1), "nbd_set_debug");
  CHECK_NULL_H (nbd_get_debug (NULLH), "nbd_get_debug");
  CHECK_NULL_H (nbd_set_request_structured_replies (NULLH, 1),
                "nbd_set_request_structured_replies");
  CHECK_NULL_H (nbd_get_request_structured_replies (NULLH),
                "nbd_get_request_structured_replies");
  CHECK_NULL_H (nbd_get_structured_replies_negotiated (NULLH),
                "nbd_get_structured_replies_negotiated");
  CHECK_NULL_H_PTR (nbd_get_protocol (NULLH), "nbd_get_protocol");
  CHECK_NULL_H_PTR (nbd_connection_state (NULLH), "nbd_connection_state");
  CHECK_NULL_H_PTR (nbd_get_version (NULLH), "nbd_get_version");
  CHECK_NULL_H_PTR (nbd_get_package_name (NULLH), "nbd_get_package_name");
  CHECK_NULL_H (nbd_aio_is_created (NULLH), "nbd_aio_is_created");
  CHECK_NULL_H (nbd_aio_is_connecting (NULLH), "nbd_aio_is_connecting");
  CHECK_NULL_H (nbd_aio_is_negotiating (NULLH), "nbd_aio_is_negotiating");
  CHECK_NULL_H (nbd_aio_is_ready (NULLH), "nbd_aio_is_ready");
  CHECK_NULL_H (nbd_aio_is_processing (NULLH), "nbd_aio_is_processing");
  CHECK_NULL_H (nbd_aio_is_dead (NULLH), "nbd_aio_is_dead");
  CHECK_NULL_H (nbd_aio_is_closed (NULLH), "nbd_aio_is_closed");
#ifdef LIBNBD_HAVE_NBD_GET_SUBPROCESS_PID
  CHECK_NULL_H (nbd_get_subprocess_pid (NULLH), "nbd_get_subprocess_pid");
#endif

  /* --- other pointer parameters, on a fresh handle --- */
  h = tu_create ();
  CHECK_ERR (nbd_set_export_name (h, NULLP), EFAULT,
             NULL_MSG ("nbd_set_export_name", "export_name"));
  CHECK_STR_FREE (nbd_get_export_name (h), "");
  CHECK_ERR (nbd_set_handle_name (h, NULLP), EFAULT,
             NULL_MSG ("nbd_set_handle_name", "handle_name"));
  CHECK_STR_FREE (nbd_get_handle_name (h), "nbd1");
  CHECK_ERR (nbd_connect_command (h, NULLP), EFAULT,
             NULL_MSG ("nbd_connect_command", "argv"));
  CHECK_ERR (nbd_connect_systemd_socket_activation (h, NULLP), EFAULT,
             NULL_MSG ("nbd_connect_systemd_socket_activation", "argv"));
#ifdef LIBNBD_HAVE_NBD_OPT_LIST_META_CONTEXT_QUERIES
  {
    nbd_context_callback ctx = { .callback = count_context };
    CHECK_ERR (nbd_opt_list_meta_context_queries (h, NULLP, ctx), EFAULT,
               NULL_MSG ("nbd_opt_list_meta_context_queries", "queries"));
    CHECK_ERR (nbd_opt_set_meta_context_queries (h, NULLP, ctx), EFAULT,
               NULL_MSG ("nbd_opt_set_meta_context_queries", "queries"));
  }
#endif
  /* The failed calls did not change the handle's state. */
  CHECK_INT (nbd_aio_is_created (h), 1);
  CHECK_OK (nbd_connect_command (h, memory));

  /* --- buffers of a connected handle, with otherwise valid args --- */
  CHECK_ERR (nbd_pread (h, NULLP, sizeof buf, 0, 0), EFAULT,
             NULL_MSG ("nbd_pread", "buf"));
  CHECK_ERR (nbd_pwrite (h, NULLP, sizeof buf, 0, 0), EFAULT,
             NULL_MSG ("nbd_pwrite", "buf"));
#ifdef LIBNBD_HAVE_NBD_BLOCK_STATUS_FILTER
  {
    nbd_extent64_callback ext = { .callback = count_extents };
    CHECK_ERR (nbd_block_status_filter (h, sizeof buf, 0, NULLP, ext, 0),
               EFAULT, NULL_MSG ("nbd_block_status_filter", "contexts"));
  }
#endif
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, 0));
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  nbd_close (h);

  return 0;
}
