/* A notify_read on an idle connected handle (there is nothing to read)
 * leaves it ready: nbd_shutdown then disconnects.  libnbd 1.22.2 waits
 * forever in that nbd_shutdown, so this runs on our library only.
 */
#include "test-util.h"

int
main (void)
{
  char *argv[] = { NBDKIT, "memory", "1M", NULL };
  struct nbd_handle *h = tu_connect (argv);

  CHECK_OK (nbd_aio_notify_read (h));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_OK (nbd_shutdown (h, 0));
  CHECK_INT (nbd_aio_is_closed (h), 1);
  nbd_close (h);
  return 0;
}
