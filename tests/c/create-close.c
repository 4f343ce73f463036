/* nbd_create / nbd_close, the initial state of a fresh handle, the
 * per-thread error state and the library identification calls.
 */
#include "test-util.h"

int
main (void)
{
  struct nbd_handle *h1, *h2;
  const char *s;
  unsigned major, minor, micro;
  char extra;

  /* Before any call has failed there is no error at all. */
  CHECK (nbd_get_error () == NULL);
  CHECK_INT (nbd_get_errno (), 0);

  /* Closing NULL is documented to be harmless. */
  nbd_close (NULL);

  h1 = tu_create ();
  h2 = tu_create ();
  CHECK (h1 != h2);

  /* Default handle names are "nbd" plus a process-wide counter that
   * starts at 1, so the first two handles are nbd1 and nbd2.
   */
  CHECK_STR_FREE (nbd_get_handle_name (h1), "nbd1");
  CHECK_STR_FREE (nbd_get_handle_name (h2), "nbd2");

  /* Freshly created handles are in the START state. */
  CHECK_STR (nbd_connection_state (h1),
             "START: Handle after being initially created");
  CHECK_INT (nbd_aio_is_created (h1), 1);
  CHECK_INT (nbd_aio_is_connecting (h1), 0);
  CHECK_INT (nbd_aio_is_negotiating (h1), 0);
  CHECK_INT (nbd_aio_is_ready (h1), 0);
  CHECK_INT (nbd_aio_is_processing (h1), 0);
  CHECK_INT (nbd_aio_is_dead (h1), 0);
  CHECK_INT (nbd_aio_is_closed (h1), 0);

  /* Library identification: does not need a connection and does
   * not fail.
   */
  CHECK_STR (nbd_get_package_name (h1), "libnbd");
  s = nbd_get_version (h1);
  CHECK (s != NULL);
  if (sscanf (s, "%u.%u.%u%c", &major, &minor, &micro, &extra) != 3)
    FAIL ("nbd_get_version returned \"%s\", not MAJOR.MINOR.MICRO", s);
  CHECK (major == 1);
  /* The release whose behaviour this library matches (and the oracle). */
  CHECK_STR (s, "1.22.2");
  /* The same string for every handle. */
  CHECK_STR (nbd_get_version (h2), s);

  /* Successful calls do not clear an earlier error: the error state
   * is "the last error in this thread".
   */
  CHECK_INT (nbd_get_size (h1), -1);
  CHECK_INT (nbd_get_errno (), ENOTCONN);
  CHECK_INT (nbd_aio_is_created (h1), 1);
  CHECK_STR (nbd_get_package_name (h1), "libnbd");
  CHECK_LAST_ERROR ("sticky error", ENOTCONN,
                    "nbd_get_size: invalid state: START: the handle must "
                    "be negotiating, or connected with the server, or "
                    "shut down: Transport endpoint is not connected");

  /* Closing handles that never connected. */
  nbd_close (h1);
  nbd_close (h2);
  nbd_close (NULL);

  /* The counter keeps going after close. */
  h1 = tu_create ();
  CHECK_STR_FREE (nbd_get_handle_name (h1), "nbd3");
  nbd_close (h1);

  return 0;
}
