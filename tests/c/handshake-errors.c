/* Malformed replies to NBD_OPT_GO kill the connection with libnbd's
 * message for each (the errno is 0 in libnbd, EPROTO in ours, see
 * README; EINVAL for export flags of 0 in both), and what is merely
 * unusual (a 4096-byte name, an unknown NBD_INFO type) is accepted.
 * Scripted server (fake-server.h) whose GO reply is replaced.
 */
#include "fake-server.h"

static int mode;

static void
info_export (int fd, uint32_t opt, uint16_t flags)
{
  unsigned char i[12];
  fake_put16 (i, FS_INFO_EXPORT);
  fake_put64 (i + 2, 1024 * 1024);
  fake_put16 (i + 10, flags);
  fake_opt_reply (fd, opt, FS_REP_INFO, i, sizeof i);
}

static void
reply_header (int fd, uint64_t magic, uint32_t opt, uint32_t type,
              uint32_t len)
{
  unsigned char h[20];
  fake_put64 (h, magic);
  fake_put32 (h + 8, opt);
  fake_put32 (h + 12, type);
  fake_put32 (h + 16, len);
  fake_send (fd, h, sizeof h);
}

static void
go_reply (int fd, uint32_t opt)
{
  static unsigned char b[8300];

  memset (b, 0, sizeof b);
  switch (mode) {
  case 0: reply_header (fd, 0x1234, opt, FS_REP_ACK, 0); break;
  case 1: fake_opt_reply (fd, FS_OPT_LIST, FS_REP_ACK, NULL, 0); break;
  case 2: fake_opt_reply (fd, opt, FS_REP_INFO, b, 1); break;
  case 3: fake_opt_reply (fd, opt, FS_REP_INFO, b, 11); break;
  case 4:
    fake_put16 (b, FS_INFO_BLOCK_SIZE);
    fake_opt_reply (fd, opt, FS_REP_INFO, b, 13);
    break;
  case 5:
    fake_put16 (b, FS_INFO_NAME);
    fake_opt_reply (fd, opt, FS_REP_INFO, b, 2 + 5000);
    break;
  case 6:
    fake_put16 (b, 2);          /* NBD_INFO_DESCRIPTION */
    fake_opt_reply (fd, opt, FS_REP_INFO, b, 2 + 5000);
    break;
  case 7:
    info_export (fd, opt, 1);
    fake_opt_reply (fd, opt, FS_REP_ACK, b, 4);
    break;
  case 8:
    info_export (fd, opt, 1);
    fake_opt_reply (fd, opt, FS_REP_SERVER, b, 8);
    break;
  case 9:
    memset (b, 'x', 5000);
    fake_opt_reply (fd, opt, 0x80000002, b, 5000);
    break;
  case 10: reply_header (fd, FS_REP_MAGIC, opt, FS_REP_INFO, 65 << 20); break;
  case 11:
    info_export (fd, opt, 0);
    fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
    break;
  /* Accepted: */
  case 12:
    fake_put16 (b, FS_INFO_NAME);
    memset (b + 2, 'x', 4096);
    fake_opt_reply (fd, opt, FS_REP_INFO, b, 2 + 4096);
    info_export (fd, opt, 1);
    fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
    fake_serve (fd);
    break;
  case 13:
    fake_put16 (b, 77);
    fake_opt_reply (fd, opt, FS_REP_INFO, b, 100);
    info_export (fd, opt, 1);
    fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
    fake_serve (fd);
    break;
  }
}

static const char *messages[] = {
  "handshake: invalid option reply magic or option",
  "handshake: invalid option reply magic or option",
  "handshake: NBD_REP_INFO reply length too small",
  "handshake: incorrect NBD_INFO_EXPORT option reply length",
  "handshake: incorrect NBD_INFO_BLOCK_SIZE option reply length",
  "handshake: incorrect NBD_INFO_NAME option reply length",
  "handshake: incorrect NBD_INFO_DESCRIPTION option reply length",
  "handshake: invalid NBD_REP_ACK option reply length",
  "handshake: unexpected option reply type 2",
  "handshake: option error string too long",
  "handshake: invalid option reply length",
  "handshake: invalid eflags == 0 from server",
};

int
main (void)
{
  for (mode = 0; mode <= 13; mode++) {
    struct nbd_handle *h = tu_create ();
    struct fake_srv srv;
    struct fake_cfg cfg = { .structured = true, .go_hook = go_reply };
    char want[256];
    int r;

    CHECK_OK (nbd_set_full_info (h, true));
    r = fake_start (h, &cfg, NULL, NULL, &srv);
    if (mode >= 12) {
      CHECK_INT (r, 0);
      CHECK_INT (nbd_get_size (h), 1024 * 1024);
      if (mode == 12) {
        char *name = nbd_get_canonical_export_name (h);
        CHECK (name != NULL && strlen (name) == 4096);
        free (name);
      }
      CHECK_OK (nbd_shutdown (h, 0));
    }
    else {
      int err = nbd_get_errno ();
      const char *msg = tu_errmsg ();

      CHECK_INT (r, -1);
      CHECK_INT (nbd_aio_is_dead (h), 1);
      snprintf (want, sizeof want, "nbd_connect_socket: %s", messages[mode]);
      if (strncmp (msg, want, strlen (want)) != 0)
        FAIL ("mode %d: message \"%s\", expected \"%s...\"", mode, msg, want);
      if (mode == 11)
        CHECK_INT (err, EINVAL);
      else if (err != 0 && err != EPROTO)
        FAIL ("mode %d: errno %d", mode, err);
    }
    nbd_close (h);
    fake_wait (&srv);
  }
  return 0;
}
