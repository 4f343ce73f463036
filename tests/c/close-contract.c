/* What libnbd(3) and nbd_close(3) allow around nbd_close.
 *
 * nbd_close must not run while another thread is still using the handle;
 * every other call may come from any thread.  So:
 *
 *  1. One thread leaves commands in flight on a slow server and stops
 *     using the handle; another thread closes it.  Each command's
 *     completion callback runs once with *error == ENOTCONN, as if the
 *     connection had died (libnbd 1.22), before its free function; each
 *     free function runs exactly once, chunk callbacks' too, and
 *     the buffers the free functions release are never touched again
 *     (make check-valgrind), close does not wait for the delayed
 *     replies, and the server subprocess is reaped.
 *  2. One thread waits in a synchronous nbd_pread on a slow server while
 *     other threads issue commands on the same handle; they complete
 *     after it, then the owner closes.
 *  3. One thread runs its own poll loop on the handle's fd while another
 *     calls nbd_shutdown; every command is completed once, then close.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include "test-util.h"

#define NR 32
#define BLOCK 4096

struct slot {
  atomic_int calls;
  atomic_int frees;
  atomic_int last_error;        /* *error seen by the completion callback */
  atomic_int freed_first;       /* freed before its completion ran */
  void *buf;                    /* freed by the free function */
};

static struct slot slots[NR];
static atomic_int chunk_frees;

static int
on_chunk (void *user_data, const void *subbuf, size_t count,
          uint64_t offset, unsigned status, int *error)
{
  return 0;
}

static void
on_chunk_free (void *user_data)
{
  atomic_fetch_add (&chunk_frees, 1);
}

static int
on_complete (void *user_data, int *error)
{
  struct slot *s = user_data;
  atomic_fetch_add (&s->calls, 1);
  atomic_store (&s->last_error, *error);
  if (atomic_load (&s->frees) != 0)
    atomic_store (&s->freed_first, 1);
  return 1;
}

static void
on_free (void *user_data)
{
  struct slot *s = user_data;
  atomic_fetch_add (&s->frees, 1);
  free (s->buf);
  s->buf = NULL;
}

static nbd_completion_callback
completion_for (int i)
{
  nbd_completion_callback cb = {
    .callback = on_complete, .user_data = &slots[i], .free = on_free
  };
  return cb;
}

static void
reset_slots (void)
{
  for (int i = 0; i < NR; ++i) {
    atomic_store (&slots[i].calls, 0);
    atomic_store (&slots[i].frees, 0);
    atomic_store (&slots[i].last_error, -1);
    atomic_store (&slots[i].freed_first, 0);
    slots[i].buf = NULL;
  }
}

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- 1. close in another thread, commands in flight ------------------- */

static void *
issue_and_leave (void *arg)
{
  struct nbd_handle *h = arg;

  for (int i = 0; i < NR; ++i) {
    int64_t c;

    slots[i].buf = malloc (BLOCK);
    if (slots[i].buf == NULL)
      FAIL ("malloc");
    memset (slots[i].buf, i, BLOCK);
    if (i % 4 == 0) {
      nbd_chunk_callback chunk = {
        .callback = on_chunk, .user_data = NULL, .free = on_chunk_free
      };
      c = nbd_aio_pread_structured (h, slots[i].buf, BLOCK,
                                    (uint64_t) i * BLOCK, chunk,
                                    completion_for (i), 0);
    }
    else if (i % 2 == 0)
      c = nbd_aio_pread (h, slots[i].buf, BLOCK, (uint64_t) i * BLOCK,
                         completion_for (i), 0);
    else
      c = nbd_aio_pwrite (h, slots[i].buf, BLOCK, (uint64_t) i * BLOCK,
                          completion_for (i), 0);
    if (c <= 0)
      FAIL ("aio command %d: %s", i, tu_errmsg ());
  }
  CHECK_INT (nbd_aio_in_flight (h), NR);
  return NULL;
}

static double close_seconds;

static void *
close_it (void *arg)
{
  double t0 = now ();
  nbd_close (arg);
  close_seconds = now () - t0;
  return NULL;
}

static void
test_close_in_other_thread (void)
{
  char *argv[] = { NBDKIT, "--log=null", "--filter=delay", "memory", "4M",
                   "rdelay=3", "wdelay=3", NULL };
  struct nbd_handle *h = tu_connect (argv);
  pthread_t t;

  reset_slots ();
  atomic_store (&chunk_frees, 0);
  CHECK (tu_find_child () > 0);
  if (pthread_create (&t, NULL, issue_and_leave, h) != 0)
    FAIL ("pthread_create");
  pthread_join (t, NULL);
  if (pthread_create (&t, NULL, close_it, h) != 0)
    FAIL ("pthread_create");
  pthread_join (t, NULL);

  for (int i = 0; i < NR; ++i) {
    if (atomic_load (&slots[i].frees) != 1 || atomic_load (&slots[i].calls) != 1)
      FAIL ("command %d: called %d times, freed %d times", i,
            atomic_load (&slots[i].calls), atomic_load (&slots[i].frees));
    if (atomic_load (&slots[i].last_error) != ENOTCONN)
      FAIL ("command %d: completion saw error %d, expected ENOTCONN", i,
            atomic_load (&slots[i].last_error));
    if (atomic_load (&slots[i].freed_first))
      FAIL ("command %d: freed before its completion callback ran", i);
  }
  CHECK_INT (atomic_load (&chunk_frees), NR / 4);
  if (close_seconds > 2.5)
    FAIL ("nbd_close took %.2f s: it waited for the delayed replies",
          close_seconds);
  CHECK_INT (tu_find_child (), 0);
}

/* --- 2. other threads' calls while a synchronous read waits ----------- */

static void *
slow_read (void *arg)
{
  static char buf[65536];
  double t0 = now ();

  CHECK_OK (nbd_pread (arg, buf, sizeof buf, 0, 0));
  for (size_t k = 0; k < sizeof buf; ++k)
    if (buf[k] != (char) 0xab)
      FAIL ("slow read: byte %zu is wrong", k);
  if (now () - t0 < 0.9)
    FAIL ("the read was not delayed");
  return NULL;
}

static void *
meanwhile (void *arg)
{
  struct nbd_handle *h = arg;
  static __thread char back[BLOCK];
  static atomic_int next;
  int me = atomic_fetch_add (&next, 1);

  slots[me].buf = malloc (BLOCK);
  if (slots[me].buf == NULL)
    FAIL ("malloc");
  memset (slots[me].buf, me + 1, BLOCK);
  if (nbd_aio_pwrite (h, slots[me].buf, BLOCK, 1048576 + (uint64_t) me * BLOCK,
                      completion_for (me), 0) <= 0)
    FAIL ("nbd_aio_pwrite: %s", tu_errmsg ());
  CHECK (nbd_aio_in_flight (h) >= 0);
  CHECK_OK (nbd_pread (h, back, BLOCK, 1048576 + (uint64_t) me * BLOCK, 0));
  for (int k = 0; k < BLOCK; ++k)
    if (back[k] != (char) (me + 1))
      FAIL ("thread %d: read back wrong", me);
  return NULL;
}

static void
test_calls_while_sync_read_waits (void)
{
  char *argv[] = { NBDKIT, "--filter=delay", "memory", "4M", "rdelay=1", NULL };
  struct nbd_handle *h = tu_connect (argv);
  static char fill[65536];
  pthread_t r, o[3];

  reset_slots ();
  memset (fill, 0xab, sizeof fill);
  CHECK_OK (nbd_pwrite (h, fill, sizeof fill, 0, 0));
  if (pthread_create (&r, NULL, slow_read, h) != 0)
    FAIL ("pthread_create");
  tu_msleep (200);
  for (int t = 0; t < 3; ++t)
    if (pthread_create (&o[t], NULL, meanwhile, h) != 0)
      FAIL ("pthread_create");
  pthread_join (r, NULL);
  for (int t = 0; t < 3; ++t)
    pthread_join (o[t], NULL);
  /* Each writer read its block back after its write: all are done. */
  for (int t = 0; t < 3; ++t) {
    CHECK_INT (atomic_load (&slots[t].calls), 1);
    CHECK_INT (atomic_load (&slots[t].frees), 1);
  }
  nbd_close (h);
  CHECK_INT (tu_find_child (), 0);
}

/* --- 3. nbd_shutdown while another thread polls ----------------------- */

static void *
own_loop (void *arg)
{
  struct nbd_handle *h = arg;
  int fd;

  while ((fd = nbd_aio_get_fd (h)) >= 0) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    poll (&pfd, 1, 20);
    if (nbd_aio_notify_read (h) == -1)
      break;
  }
  return NULL;
}

static void
test_shutdown_while_polling (void)
{
  char *argv[] = { NBDKIT, "--log=null", "--filter=delay", "memory", "4M",
                   "rdelay=1", NULL };
  struct nbd_handle *h = tu_connect (argv);
  pthread_t t;

  reset_slots ();
  for (int i = 0; i < 16; ++i) {
    slots[i].buf = malloc (BLOCK);
    if (slots[i].buf == NULL)
      FAIL ("malloc");
    if (nbd_aio_pread (h, slots[i].buf, BLOCK, (uint64_t) i * BLOCK,
                       completion_for (i), 0) <= 0)
      FAIL ("nbd_aio_pread: %s", tu_errmsg ());
  }
  if (pthread_create (&t, NULL, own_loop, h) != 0)
    FAIL ("pthread_create");
  tu_msleep (100);
  CHECK_OK (nbd_shutdown (h, 0));
  CHECK_INT (nbd_aio_is_closed (h), 1);
  pthread_join (t, NULL);
  for (int i = 0; i < 16; ++i) {
    CHECK_INT (atomic_load (&slots[i].calls), 1);
    CHECK_INT (atomic_load (&slots[i].frees), 1);
  }
  nbd_close (h);
  CHECK_INT (tu_find_child (), 0);
}

int
main (void)
{
  test_close_in_other_thread ();
  test_calls_while_sync_read_waits ();
  test_shutdown_while_polling ();
  return 0;
}
