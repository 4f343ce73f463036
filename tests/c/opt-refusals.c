/* How a refused NBD_OPT_GO / NBD_OPT_INFO is reported, for each error
 * reply: errno and message of nbd_opt_info, nbd_opt_go (option mode)
 * and of a plain connect, the server's own message appended with
 * non-printable bytes escaped.  NBD_REP_ERR_UNSUP to NBD_OPT_GO means
 * an old server: the client falls back to NBD_OPT_EXPORT_NAME, even in
 * option mode.  Scripted server (fake-server.h).
 */
#include "fake-server.h"

struct refusal {
  uint32_t reply;
  int err;
  const char *text;             /* after "nbd_xxx: " */
};

static const struct refusal refusals[] = {
  { FS_REP_ERR_UNKNOWN, ENOENT, "the server has no export named 'nope'" },
  { 0x80000002, 0, "server policy prevents the operation" },
  { 0x80000003, EINVAL, "the server rejected this operation as invalid" },
  { 0x80000004, 0, "the operation is not supported by the server platform" },
  { 0x80000005, ENOTSUP, "the server requires TLS encryption first" },
  { 0x80000007, ESHUTDOWN, "the server is shutting down" },
  { 0x80000008, EINVAL, "the server requires specific block sizes" },
  { 0x80000009, EINVAL, "the operation is too large to process" },
  { 0x80000063, 0, "handshake: unknown reply from the server: 0x80000063" },
};

static void
expect (const char *api, int r, int err, const char *text)
{
  char msg[256];

  if (err)
    snprintf (msg, sizeof msg, "%s: %s: %s", api, text, strerror (err));
  else
    snprintf (msg, sizeof msg, "%s: %s", api, text);
  CHECK_INT (r, -1);
  CHECK_LAST_ERROR (api, err, msg);
}

int
main (void)
{
  struct nbd_handle *h;
  struct fake_srv srv;
  size_t i;

  for (i = 0; i < sizeof refusals / sizeof refusals[0]; ++i) {
    const struct refusal *f = &refusals[i];
    struct fake_cfg cfg = { .structured = true, .refuse_go = f->reply };

    h = tu_create ();
    CHECK_OK (nbd_set_export_name (h, "nope"));
    CHECK_OK (nbd_set_opt_mode (h, true));
    CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
    expect ("nbd_opt_info", nbd_opt_info (h), f->err, f->text);
    expect ("nbd_opt_go", nbd_opt_go (h), f->err, f->text);
    CHECK_INT (nbd_aio_is_negotiating (h), 1);
    CHECK_OK (nbd_opt_abort (h));
    nbd_close (h);
    fake_wait (&srv);

    h = tu_create ();
    CHECK_OK (nbd_set_export_name (h, "nope"));
    expect ("nbd_connect_socket", fake_start (h, &cfg, NULL, NULL, &srv),
            f->err, f->text);
    nbd_close (h);
    fake_wait (&srv);
  }

  /* The server's message, quoted. */
  {
    struct fake_cfg cfg = { .structured = true, .refuse_go = 0x80000002,
                            .refuse_msg = "go \001away" };
    h = tu_create ();
    expect ("nbd_connect_socket", fake_start (h, &cfg, NULL, NULL, &srv), 0,
            "server policy prevents the operation: go \\x01away");
    nbd_close (h);
    fake_wait (&srv);
  }

  /* NBD_REP_ERR_UNSUP to NBD_OPT_GO: NBD_OPT_EXPORT_NAME instead; to
   * NBD_OPT_INFO it is a refusal.
   */
  {
    struct fake_cfg cfg = { .structured = true, .refuse_go = FS_REP_ERR_UNSUP };
    const unsigned char *opts;

    h = tu_create ();
    CHECK_OK (nbd_set_opt_mode (h, true));
    CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
    expect ("nbd_opt_info", nbd_opt_info (h), ENOTSUP,
            "the operation is not supported by the server");
    CHECK_OK (nbd_opt_go (h));
    CHECK_INT (nbd_aio_is_ready (h), 1);
    CHECK_INT (nbd_get_size (h), 1024 * 1024);
    CHECK_OK (nbd_shutdown (h, 0));
    nbd_close (h);
    opts = fake_wait (&srv);
    /* The options were EXTENDED_HEADERS, STRUCTURED_REPLY, INFO, GO,
     * then EXPORT_NAME.
     */
    CHECK (strchr ((const char *) opts, FS_OPT_EXPORT_NAME) != NULL);

    h = tu_create ();
    CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
    CHECK_INT (nbd_aio_is_ready (h), 1);
    CHECK_OK (nbd_shutdown (h, 0));
    nbd_close (h);
    fake_wait (&srv);
  }
  return 0;
}
