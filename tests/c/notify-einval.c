/* nbd_aio_notify_read and nbd_aio_notify_write fail with EINVAL ("external
 * event N is invalid in state ...") when the handle is not waiting for
 * the socket in that direction, as libnbd 1.22 does; where it is
 * waiting they succeed.
 */
#include "test-util.h"

#include <sys/socket.h>

#define READ_PREFIX "nbd_aio_notify_read: external event 0 is invalid in state "
#define WRITE_PREFIX "nbd_aio_notify_write: external event 1 is invalid in state "

static void
check_invalid (int r, const char *what, const char *prefix)
{
  const char *msg = nbd_get_error ();

  if (r != -1)
    FAIL ("%s: returned %d, expected -1", what, r);
  if (nbd_get_errno () != EINVAL)
    FAIL ("%s: errno %d, expected EINVAL", what, nbd_get_errno ());
  if (msg == NULL || strncmp (msg, prefix, strlen (prefix)) != 0 ||
      strstr (msg, ": Invalid argument") == NULL)
    FAIL ("%s: message \"%s\", expected \"%s...: Invalid argument\"",
          what, msg ? msg : "(null)", prefix);
}

#define INVALID_READ(h, what) \
  check_invalid (nbd_aio_notify_read (h), what, READ_PREFIX)
#define INVALID_WRITE(h, what) \
  check_invalid (nbd_aio_notify_write (h), what, WRITE_PREFIX)

int
main (void)
{
  char *argv[] = { NBDKIT, "memory", "64M", NULL };
  struct nbd_handle *h;
  int sv[2];

  /* Newly created: nothing to wait for. */
  h = tu_create ();
  INVALID_READ (h, "created");
  INVALID_WRITE (h, "created");
  nbd_close (h);

  /* Waiting for the server's greeting: reading only. */
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == -1)
    FAIL ("socketpair: %s", strerror (errno));
  h = tu_create ();
  CHECK_OK (nbd_aio_connect_socket (h, sv[0]));
  CHECK_INT (nbd_aio_get_direction (h), LIBNBD_AIO_DIRECTION_READ);
  CHECK_OK (nbd_aio_notify_read (h));
  INVALID_WRITE (h, "waiting for the greeting");
  nbd_close (h);
  close (sv[1]);

  /* Option mode, waiting for the caller. */
  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (nbd_connect_command (h, argv));
  CHECK_INT (nbd_aio_is_negotiating (h), 1);
  INVALID_READ (h, "negotiating");
  INVALID_WRITE (h, "negotiating");
  CHECK_OK (nbd_opt_go (h));

  /* Connected and idle: the server may speak (read), nothing to write. */
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_INT (nbd_aio_get_direction (h), LIBNBD_AIO_DIRECTION_READ);
  CHECK_OK (nbd_aio_notify_read (h));
  INVALID_WRITE (h, "ready");
  nbd_close (h);

  /* Shut down.  (A fresh handle: after a notify_read with no reply to
   * read, libnbd 1.22.2's nbd_shutdown waits forever.)
   */
  h = tu_connect (argv);
  CHECK_OK (nbd_shutdown (h, 0));
  CHECK_INT (nbd_aio_is_closed (h), 1);
  INVALID_READ (h, "closed");
  INVALID_WRITE (h, "closed");
  nbd_close (h);

  /* Dead. */
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == -1)
    FAIL ("socketpair: %s", strerror (errno));
  close (sv[1]);
  h = tu_create ();
  CHECK_INT (nbd_connect_socket (h, sv[0]), -1);
  CHECK_INT (nbd_aio_is_dead (h), 1);
  INVALID_READ (h, "dead");
  INVALID_WRITE (h, "dead");
  nbd_close (h);
  return 0;
}
