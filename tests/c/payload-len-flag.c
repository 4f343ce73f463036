/* LIBNBD_CMD_FLAG_PAYLOAD_LEN on nbd_pwrite: under
 * LIBNBD_STRICT_AUTO_FLAG (the default) the caller's setting does not
 * matter, the flag is sent exactly when extended headers were
 * negotiated; without AUTO_FLAG, LIBNBD_STRICT_COMMANDS refuses a wrong
 * setting, and with neither the flag goes out as given.  The scripted
 * server fails a write with EPERM when the flag does not match the
 * headers in use.
 */
#include "fake-server.h"

#define PLEN LIBNBD_CMD_FLAG_PAYLOAD_LEN
#define WRONG "nbd_pwrite: incorrect setting for PAYLOAD_LEN flag: " \
  "Invalid argument"

static void
judge (int fd, void *arg)
{
  for (;;) {
    struct fake_req req;
    fake_recv_req (fd, &req);
    if (req.type == FS_CMD_DISC)
      _exit (0);
    bool right = req.type != FS_CMD_WRITE ||
      !!(req.flags & 0x20) == fake_ext;
    if (right)
      fake_answer (fd, &req);
    else if (fake_ext) {
      unsigned char e[6] = { 0, 0, 0, 1, 0, 0 };  /* NBD_EPERM, no message */
      fake_ext_chunk (fd, FS_REPLY_DONE, 0x8001, req.cookie, req.offset, 6);
      fake_send (fd, e, sizeof e);
    }
    else
      fake_simple_reply (fd, 1, req.cookie);
  }
}

static void
check (bool extended)
{
  struct nbd_handle *h = tu_create ();
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true, .extended = extended };
  char buf[512] = { 0 };
  uint32_t dflt;

  CHECK_OK (fake_start (h, &cfg, judge, NULL, &srv));
  CHECK_INT (nbd_get_extended_headers_negotiated (h), extended);
  dflt = nbd_get_strict_mode (h);
  CHECK (dflt & LIBNBD_STRICT_AUTO_FLAG);

  /* AUTO_FLAG: whatever the caller says, the right thing is sent. */
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, 0));
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, PLEN));
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, PLEN | LIBNBD_CMD_FLAG_FUA));
  CHECK (nbd_aio_pwrite (h, buf, sizeof buf, 0, NBD_NULL_COMPLETION,
                         PLEN) > 0);
  while (nbd_aio_in_flight (h) > 0)
    CHECK (nbd_poll (h, -1) >= 0);
  CHECK (nbd_aio_command_completed (h, nbd_aio_peek_command_completed (h))
         == 1);
  /* The flag belongs to writes only. */
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 0, PLEN), EINVAL,
             "nbd_pread: flags: invalid value for flag: 0x20: "
             "Invalid argument");
  CHECK_ERR (nbd_zero (h, sizeof buf, 0, PLEN), EINVAL,
             "nbd_zero: flags: invalid value for flag: 0x20: "
             "Invalid argument");

  /* No AUTO_FLAG: STRICT_COMMANDS checks the caller's setting. */
  CHECK_OK (nbd_set_strict_mode (h, dflt & ~LIBNBD_STRICT_AUTO_FLAG));
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, extended ? PLEN : 0));
  CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, extended ? 0 : PLEN),
             EINVAL, WRONG);

  /* Neither: the wrong setting goes out, and the server objects. */
  CHECK_OK (nbd_set_strict_mode (h, dflt & ~(LIBNBD_STRICT_AUTO_FLAG |
                                             LIBNBD_STRICT_COMMANDS)));
  CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, extended ? 0 : PLEN),
             EPERM, "nbd_pwrite: write: command failed: Operation not permitted");
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, extended ? PLEN : 0));

  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  fake_wait (&srv);
}

int
main (void)
{
  check (false);
  check (true);
  return 0;
}
