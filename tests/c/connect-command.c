/* nbd_connect_command: state after success and failure, the protocol
 * and structured-replies negotiation, repeated connects and bad argv.
 */
#include "test-util.h"

static const char dead_state[] =
  "DEAD: Connection is in an unrecoverable error state, can only be closed";

static void
check_ready (struct nbd_handle *h)
{
  CHECK_STR (nbd_connection_state (h),
             "READY: Connection is ready to process NBD commands");
  CHECK_INT (nbd_aio_is_created (h), 0);
  CHECK_INT (nbd_aio_is_connecting (h), 0);
  CHECK_INT (nbd_aio_is_negotiating (h), 0);
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_INT (nbd_aio_is_processing (h), 0);
  CHECK_INT (nbd_aio_is_dead (h), 0);
  CHECK_INT (nbd_aio_is_closed (h), 0);
}

static void
check_dead (struct nbd_handle *h)
{
  CHECK_STR (nbd_connection_state (h), dead_state);
  CHECK_INT (nbd_aio_is_created (h), 0);
  CHECK_INT (nbd_aio_is_connecting (h), 0);
  CHECK_INT (nbd_aio_is_negotiating (h), 0);
  CHECK_INT (nbd_aio_is_ready (h), 0);
  CHECK_INT (nbd_aio_is_processing (h), 0);
  CHECK_INT (nbd_aio_is_dead (h), 1);
  CHECK_INT (nbd_aio_is_closed (h), 0);
}

int
main (void)
{
  char *memory[] = { NBDKIT, "memory", "1M", NULL };
  char *oldstyle[] = { NBDKIT, "-o", "memory", "1M", NULL };
  char *missing[] = { "/nonexistent/rust-libnbd-test-program", NULL };
  char *exits[] = { "false", NULL };
  char *empty[] = { NULL };
  struct nbd_handle *h;
  char buf[512];

  /* Normal newstyle connection; structured replies requested and
   * negotiated by default.
   */
  h = tu_create ();
  CHECK_OK (nbd_connect_command (h, memory));
  check_ready (h);
  CHECK_STR (nbd_get_protocol (h), "newstyle-fixed");
  CHECK_INT (nbd_get_structured_replies_negotiated (h), 1);
  CHECK_INT (nbd_get_size (h), 1048576);

  /* A handle can only be connected once. */
  CHECK_ERR (nbd_connect_command (h, memory), EINVAL,
             "nbd_connect_command: invalid state: READY: the handle must "
             "be newly created: Invalid argument");
  check_ready (h);
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  nbd_close (h);

  /* Structured replies not requested => not negotiated. */
  h = tu_create ();
  CHECK_OK (nbd_set_request_structured_replies (h, 0));
  CHECK_OK (nbd_connect_command (h, memory));
  check_ready (h);
  CHECK_INT (nbd_get_structured_replies_negotiated (h), 0);
  CHECK_STR (nbd_get_protocol (h), "newstyle-fixed");
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  nbd_close (h);

  /* Oldstyle server. */
  h = tu_create ();
  CHECK_OK (nbd_connect_command (h, oldstyle));
  check_ready (h);
  CHECK_STR (nbd_get_protocol (h), "oldstyle");
  CHECK_INT (nbd_get_structured_replies_negotiated (h), 0);
  CHECK_INT (nbd_get_size (h), 1048576);
  CHECK_OK (nbd_pread (h, buf, sizeof buf, 0, 0));
  nbd_close (h);

  /* Empty argv: rejected up front, handle untouched. */
  h = tu_create ();
  CHECK_ERR (nbd_connect_command (h, empty), EINVAL,
             "nbd_connect_command: missing command name in argv list: "
             "Invalid argument");
  CHECK_INT (nbd_aio_is_created (h), 1);
  CHECK_STR (nbd_connection_state (h),
             "START: Handle after being initially created");
  /* ... and still usable afterwards. */
  CHECK_OK (nbd_connect_command (h, memory));
  check_ready (h);
  nbd_close (h);

  /* A program that does not exist: the fork succeeds, the exec fails,
   * the server end of the socket closes and the handle is dead.
   * libnbd reports this with errno 0.
   */
  h = tu_create ();
  CHECK_ERR (nbd_connect_command (h, missing), 0,
             "nbd_connect_command: recv: server disconnected unexpectedly");
  check_dead (h);
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 0, 0), EINVAL,
             "nbd_pread: invalid state: DEAD: the handle must be "
             "connected with the server: Invalid argument");
  CHECK_ERR (nbd_get_size (h), EINVAL,
             "nbd_get_size: invalid state: DEAD: the handle must be "
             "negotiating, or connected with the server, or shut down: "
             "Invalid argument");
  CHECK_ERR (nbd_shutdown (h, 0), EINVAL,
             "nbd_shutdown: invalid state: DEAD: the handle must be "
             "negotiating, or connected with the server: Invalid argument");
  CHECK_ERR (nbd_connect_command (h, memory), EINVAL,
             "nbd_connect_command: invalid state: DEAD: the handle must "
             "be newly created: Invalid argument");
  check_dead (h);
  nbd_close (h);

  /* A program that exits without speaking NBD. */
  h = tu_create ();
  CHECK_ERR (nbd_connect_command (h, exits), 0,
             "nbd_connect_command: recv: server disconnected unexpectedly");
  check_dead (h);
  nbd_close (h);

  /* No child process is left behind by any of the above. */
  CHECK (tu_find_child () == 0);

  return 0;
}
