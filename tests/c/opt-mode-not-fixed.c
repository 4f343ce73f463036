/* Option mode against a newstyle server without fixed newstyle: the
 * handle stops in NEGOTIATING, where nbd_opt_go connects (with
 * NBD_OPT_EXPORT_NAME), the other nbd_opt_* calls fail with ENOTSUP, and
 * nbd_opt_abort, which cannot be said to such a server, kills the
 * handle (and returns 0, as libnbd 1.22.2 does).  Scripted server (fake-server.h).
 */
#include "fake-server.h"

#define NOT_FIXED(api) api ": server is not using fixed newstyle protocol: " \
  "Operation not supported"

static int
list_cb (void *user_data, const char *name, const char *description)
{
  return 0;
}

static int
ctx_cb (void *user_data, const char *name)
{
  return 0;
}

int
main (void)
{
  struct nbd_handle *h;
  struct fake_srv srv;
  struct fake_cfg cfg = { .not_fixed = true };
  char buf[512];
  const unsigned char *opts;

  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_aio_is_negotiating (h), 1);
  CHECK_STR (nbd_get_protocol (h), "newstyle");
  CHECK_ERR (nbd_opt_info (h), ENOTSUP, NOT_FIXED ("nbd_opt_info"));
  CHECK_ERR (nbd_opt_list (h, (nbd_list_callback) { .callback = list_cb }),
             ENOTSUP, NOT_FIXED ("nbd_opt_list"));
  CHECK_ERR (nbd_opt_structured_reply (h), ENOTSUP,
             NOT_FIXED ("nbd_opt_structured_reply"));
  CHECK_ERR (nbd_opt_extended_headers (h), ENOTSUP,
             NOT_FIXED ("nbd_opt_extended_headers"));
  CHECK_ERR (nbd_opt_list_meta_context
             (h, (nbd_context_callback) { .callback = ctx_cb }),
             ENOTSUP, NOT_FIXED ("nbd_opt_list_meta_context"));
  CHECK_ERR (nbd_opt_set_meta_context
             (h, (nbd_context_callback) { .callback = ctx_cb }),
             ENOTSUP, NOT_FIXED ("nbd_opt_set_meta_context"));
  CHECK_INT (nbd_aio_is_negotiating (h), 1);
  CHECK_OK (nbd_opt_go (h));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_INT (nbd_get_size (h), 1024 * 1024);
  CHECK_INT (nbd_get_structured_replies_negotiated (h), 0);
  CHECK_INT (nbd_can_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION), 0);
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  opts = fake_wait (&srv);
  CHECK (opts[0] == 1 && opts[1] == 0);   /* NBD_OPT_EXPORT_NAME only */

  /* NBD_OPT_ABORT does not exist for such a server. */
  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_OK (nbd_opt_abort (h));   /* as libnbd 1.22.2: 0, but ... */
  CHECK_INT (nbd_aio_is_dead (h), 1);
  nbd_close (h);
  opts = fake_wait (&srv);
  CHECK (opts[0] == 0);
  return 0;
}
