/* A command that completed but was not retired is not completed again
 * by nbd_close: completion callbacks run exactly once (libnbd(3),
 * "Completion callbacks").  libnbd 1.22.2 calls such a command's
 * completion callback a second time, with ENOTCONN, at close.
 */
#include "test-util.h"

static int calls, frees, first_error = -1;

static int
on_complete (void *user_data, int *error)
{
  if (calls++ == 0)
    first_error = *error;
  return 0;                     /* not retired: left for the caller */
}

static void
on_free (void *user_data)
{
  frees++;
}

int
main (void)
{
  char *argv[] = { NBDKIT, "memory", "1M", NULL };
  struct nbd_handle *h = tu_connect (argv);
  static char buf[512];
  nbd_completion_callback cb = { .callback = on_complete, .free = on_free };
  int64_t cookie = nbd_aio_pread (h, buf, sizeof buf, 0, cb, 0);

  CHECK (cookie > 0);
  while (nbd_aio_peek_command_completed (h) == 0)
    CHECK (nbd_poll (h, -1) != -1);
  CHECK_INT (nbd_aio_peek_command_completed (h), cookie);
  CHECK_INT (calls, 1);
  CHECK_INT (first_error, 0);
  CHECK_INT (frees, 0);
  nbd_close (h);
  CHECK_INT (calls, 1);
  CHECK_INT (frees, 1);
  return 0;
}
