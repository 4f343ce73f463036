/* Every command and connection-info call on a handle that was never
 * connected fails with ENOTCONN and a message naming the state.
 */
#include "test-util.h"

#define NOT_CONNECTED(fn)                                             \
  fn ": invalid state: START: the handle must be connected with the " \
  "server: Transport endpoint is not connected"

/* nbd_shutdown also works in option mode. */
#define NOT_NEG_OR_CONN(fn)                                           \
  fn ": invalid state: START: the handle must be negotiating, or "    \
  "connected with the server: Transport endpoint is not connected"
#define NOT_NEGOTIATED(fn)                                            \
  fn ": invalid state: START: the handle must be negotiating, or "    \
  "connected with the server, or shut down: Transport endpoint is "   \
  "not connected"

int
main (void)
{
  struct nbd_handle *h = tu_create ();
  char buf[512];

  memset (buf, 0, sizeof buf);

  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 0, 0), ENOTCONN,
             NOT_CONNECTED ("nbd_pread"));
  CHECK_ERR (nbd_pwrite (h, buf, sizeof buf, 0, 0), ENOTCONN,
             NOT_CONNECTED ("nbd_pwrite"));
  CHECK_ERR (nbd_flush (h, 0), ENOTCONN, NOT_CONNECTED ("nbd_flush"));
  CHECK_ERR (nbd_trim (h, 512, 0, 0), ENOTCONN, NOT_CONNECTED ("nbd_trim"));
  CHECK_ERR (nbd_zero (h, 512, 0, 0), ENOTCONN, NOT_CONNECTED ("nbd_zero"));
  CHECK_ERR (nbd_cache (h, 512, 0, 0), ENOTCONN,
             NOT_CONNECTED ("nbd_cache"));
  CHECK_ERR (nbd_shutdown (h, 0), ENOTCONN, NOT_NEG_OR_CONN ("nbd_shutdown"));

  /* The state check comes before any argument check. */
  CHECK_ERR (nbd_pread (h, buf, 0, 0, 0x63), ENOTCONN,
             NOT_CONNECTED ("nbd_pread"));
  CHECK_ERR (nbd_pwrite (h, buf, 0, UINT64_MAX, 0x63), ENOTCONN,
             NOT_CONNECTED ("nbd_pwrite"));
  CHECK_ERR (nbd_shutdown (h, 0x63), ENOTCONN,
             NOT_NEG_OR_CONN ("nbd_shutdown"));

  CHECK_ERR (nbd_get_size (h), ENOTCONN, NOT_NEGOTIATED ("nbd_get_size"));
  CHECK_ERR (nbd_is_read_only (h), ENOTCONN,
             NOT_NEGOTIATED ("nbd_is_read_only"));
  CHECK_ERR (nbd_can_flush (h), ENOTCONN, NOT_NEGOTIATED ("nbd_can_flush"));
  CHECK_ERR (nbd_can_fua (h), ENOTCONN, NOT_NEGOTIATED ("nbd_can_fua"));
  CHECK_ERR (nbd_can_trim (h), ENOTCONN, NOT_NEGOTIATED ("nbd_can_trim"));
  CHECK_ERR (nbd_can_zero (h), ENOTCONN, NOT_NEGOTIATED ("nbd_can_zero"));
  CHECK_ERR (nbd_can_cache (h), ENOTCONN, NOT_NEGOTIATED ("nbd_can_cache"));
  CHECK_ERR (nbd_can_multi_conn (h), ENOTCONN,
             NOT_NEGOTIATED ("nbd_can_multi_conn"));
  CHECK_ERR (nbd_get_structured_replies_negotiated (h), ENOTCONN,
             NOT_NEGOTIATED ("nbd_get_structured_replies_negotiated"));
  CHECK_ERR_NULL (nbd_get_protocol (h), ENOTCONN,
                  NOT_NEGOTIATED ("nbd_get_protocol"));

  /* No subprocess to kill. */
  CHECK_ERR (nbd_kill_subprocess (h, 0), ESRCH,
             "nbd_kill_subprocess: no subprocess exists: No such process");
  CHECK_ERR (nbd_kill_subprocess (h, SIGKILL), ESRCH,
             "nbd_kill_subprocess: no subprocess exists: No such process");

  /* None of that changed the state. */
  CHECK_INT (nbd_aio_is_created (h), 1);
  CHECK_STR (nbd_connection_state (h),
             "START: Handle after being initially created");

  nbd_close (h);
  return 0;
}
