/* nbd_shutdown: state afterwards, what still works, what fails. */
#include "test-util.h"

static const char closed_state[] = "CLOSED: Connection is closed";

int
main (void)
{
  char *memory[] = { NBDKIT, "memory", "1M", NULL };
  struct nbd_handle *h;
  char buf[512];
  pid_t pid;

  memset (buf, 0, sizeof buf);

  h = tu_connect (memory);
  pid = tu_find_child ();
  CHECK (pid > 0);
  CHECK_OK (nbd_pwrite (h, buf, sizeof buf, 0, 0));

  /* Bad flags are rejected and leave the connection up. */
  CHECK_ERR (nbd_shutdown (h, 1), EINVAL,
             "nbd_shutdown: flags: invalid value for flag: 0x1: "
             "Invalid argument");
  CHECK_ERR (nbd_shutdown (h, 0x63), EINVAL,
             "nbd_shutdown: flags: invalid value for flag: 0x63: "
             "Invalid argument");
  CHECK_INT (nbd_aio_is_ready (h), 1);

  CHECK_OK (nbd_shutdown (h, 0));
  CHECK_STR (nbd_connection_state (h), closed_state);
  CHECK_INT (nbd_aio_is_closed (h), 1);
  CHECK_INT (nbd_aio_is_dead (h), 0);
  CHECK_INT (nbd_aio_is_ready (h), 0);
  CHECK_INT (nbd_aio_is_processing (h), 0);
  CHECK_INT (nbd_aio_is_created (h), 0);

  /* The server sees NBD_CMD_DISC and exits by itself. */
  if (tu_wait_exited (pid) == -1)
    FAIL ("server did not exit after nbd_shutdown");

  /* Commands are refused. */
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 0, 0), EINVAL,
             "nbd_pread: invalid state: CLOSED: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, 0), EINVAL,
             "nbd_pwrite: invalid state: CLOSED: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_flush (h, 0), EINVAL,
             "nbd_flush: invalid state: CLOSED: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_trim (h, 512, 0, 0), EINVAL,
             "nbd_trim: invalid state: CLOSED: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_zero (h, 512, 0, 0), EINVAL,
             "nbd_zero: invalid state: CLOSED: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_cache (h, 512, 0, 0), EINVAL,
             "nbd_cache: invalid state: CLOSED: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_shutdown (h, 0), EINVAL,
             "nbd_shutdown: invalid state: CLOSED: the handle must be "
             "negotiating, or connected with the server: Invalid argument");
  CHECK_ERR (nbd_connect_command (h, memory), EINVAL,
             "nbd_connect_command: invalid state: CLOSED: the handle must "
             "be newly created: Invalid argument");

  /* What was negotiated is still readable after shutdown. */
  CHECK_INT (nbd_get_size (h), 1048576);
  CHECK_INT (nbd_is_read_only (h), 0);
  CHECK_INT (nbd_can_flush (h), 1);
  CHECK_INT (nbd_can_fua (h), 1);
  CHECK_INT (nbd_can_trim (h), 1);
  CHECK_INT (nbd_can_zero (h), 1);
  CHECK_INT (nbd_can_cache (h), 1);
  CHECK_INT (nbd_can_multi_conn (h), 1);
  CHECK_INT (nbd_get_structured_replies_negotiated (h), 1);
  CHECK_STR (nbd_get_protocol (h), "newstyle-fixed");

  /* Still closed. */
  CHECK_STR (nbd_connection_state (h), closed_state);
  nbd_close (h);
  CHECK (tu_pid_gone (pid));

  /* LIBNBD_SHUTDOWN_ABANDON_PENDING is an accepted flag. */
  h = tu_connect (memory);
  CHECK_OK (nbd_shutdown (h, LIBNBD_SHUTDOWN_ABANDON_PENDING));
  CHECK_INT (nbd_aio_is_closed (h), 1);
  CHECK_ERR (nbd_shutdown (h, LIBNBD_SHUTDOWN_ABANDON_PENDING), EINVAL,
             "nbd_shutdown: invalid state: CLOSED: the handle must be "
             "negotiating, or connected with the server: Invalid argument");
  nbd_close (h);

  return 0;
}
