/* The error returned by nbd_get_error / nbd_get_errno is per thread:
 * a failure in one thread is invisible to another.
 */
#include <pthread.h>

#include "test-util.h"

static struct nbd_handle *h;

/* Fail one call in this thread and check this thread sees it. */
static void *
fail_in_thread (void *arg)
{
  char buf[512];

  (void) arg;
  if (nbd_get_error () != NULL)
    FAIL ("new thread already has an error: %s", nbd_get_error ());
  CHECK_INT (nbd_get_errno (), 0);
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 0, 0), ENOTCONN,
             "nbd_pread: invalid state: START: the handle must be "
             "connected with the server: Transport endpoint is not "
             "connected");
  return NULL;
}

int
main (void)
{
  pthread_t t;
  int r;

  h = tu_create ();

  /* The thread's failure does not leak into this thread. */
  r = pthread_create (&t, NULL, fail_in_thread, NULL);
  if (r != 0)
    FAIL ("pthread_create: %s", strerror (r));
  pthread_join (t, NULL);
  CHECK (nbd_get_error () == NULL);
  CHECK_INT (nbd_get_errno (), 0);

  /* This thread's own failure survives another thread's failure. */
  CHECK_ERR (nbd_kill_subprocess (h, 0), ESRCH,
             "nbd_kill_subprocess: no subprocess exists: No such process");
  r = pthread_create (&t, NULL, fail_in_thread, NULL);
  if (r != 0)
    FAIL ("pthread_create: %s", strerror (r));
  pthread_join (t, NULL);
  CHECK_LAST_ERROR ("after the other thread failed", ESRCH,
                    "nbd_kill_subprocess: no subprocess exists: "
                    "No such process");

  nbd_close (h);
  return 0;
}
