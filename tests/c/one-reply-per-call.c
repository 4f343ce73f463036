/* nbd_poll and nbd_aio_notify_read handle at most one reply per call,
 * as libnbd 1.22 does: a program may count its commands around them
 * (nbdfuse asserts on that count).  Replies all waiting in the socket
 * come out one call at a time; and no reply is left unseen in the
 * library while the caller polls the socket itself (small replies,
 * many in flight, a timeout on every poll).
 */
#include <poll.h>

#include "test-util.h"

#define NR 32

static int completed;

static int
on_complete (void *user_data, int *error)
{
  if (*error)
    FAIL ("command failed: %s", strerror (*error));
  completed++;
  return 1;
}

static const nbd_completion_callback done = { .callback = on_complete };

/* Issue NR commands of kind K (reads, writes, flushes, zeroes, mixed). */
static void
issue (struct nbd_handle *h, int k, char (*bufs)[4096])
{
  for (int i = 0; i < NR; ++i) {
    int64_t c;
    switch (k == 4 ? i % 4 : k) {
    case 0: c = nbd_aio_pread (h, bufs[i], 4096, i * 4096, done, 0); break;
    case 1: c = nbd_aio_pwrite (h, bufs[i], 4096, i * 4096, done, 0); break;
    case 2: c = nbd_aio_flush (h, done, 0); break;
    default: c = nbd_aio_zero (h, 512, i * 4096, done, 0); break;
    }
    if (c <= 0)
      FAIL ("issuing command %d: %s", i, tu_errmsg ());
  }
}

/* Let the server answer everything before the first poll. */
static void
let_server_answer (struct nbd_handle *h)
{
  while (nbd_aio_get_direction (h) & LIBNBD_AIO_DIRECTION_WRITE) {
    struct pollfd pfd = { .fd = nbd_aio_get_fd (h), .events = POLLOUT };
    CHECK (poll (&pfd, 1, 5000) == 1);
    CHECK_OK (nbd_aio_notify_write (h));
  }
  tu_msleep (200);
}

int
main (void)
{
  char *argv[] = { NBDKIT, "memory", "1M", NULL };
  static char bufs[NR][4096];
  struct nbd_handle *h = tu_connect (argv);

  for (int k = 0; k < 5; ++k) {
    int calls = 0;

    /* nbd_poll. */
    completed = 0;
    issue (h, k, bufs);
    let_server_answer (h);
    while (completed < NR) {
      int before = completed;
      CHECK_INT (nbd_poll (h, 5000), 1);
      if (completed - before > 1)
        FAIL ("kind %d: one nbd_poll completed %d commands",
              k, completed - before);
      if (++calls > 4 * NR)
        FAIL ("kind %d: %d calls, %d of %d completed", k, calls,
              completed, NR);
    }
    CHECK_INT (nbd_aio_in_flight (h), 0);

    /* The caller's own poll loop. */
    completed = 0;
    calls = 0;
    issue (h, k, bufs);
    let_server_answer (h);
    while (completed < NR) {
      int before = completed;
      unsigned dir = nbd_aio_get_direction (h);
      struct pollfd pfd = { .fd = nbd_aio_get_fd (h), .events = 0 };

      if (dir & LIBNBD_AIO_DIRECTION_READ)
        pfd.events |= POLLIN;
      if (dir & LIBNBD_AIO_DIRECTION_WRITE)
        pfd.events |= POLLOUT;
      if (poll (&pfd, 1, 5000) != 1)
        FAIL ("kind %d: the socket stays quiet with %d commands in flight "
              "(%d completed)", k, nbd_aio_in_flight (h), completed);
      if (pfd.revents & POLLIN)
        CHECK_OK (nbd_aio_notify_read (h));
      else
        CHECK_OK (nbd_aio_notify_write (h));
      if (completed - before > 1)
        FAIL ("kind %d: one nbd_aio_notify_read completed %d commands",
              k, completed - before);
      if (++calls > 4 * NR)
        FAIL ("kind %d: %d calls, %d of %d completed", k, calls,
              completed, NR);
    }
    CHECK_INT (nbd_aio_in_flight (h), 0);
  }
  nbd_close (h);
  return 0;
}
