/* The pattern of nbdfuse's worker threads, which counts commands in
 * flight around nbd_poll: several threads each issue a read and then
 * count it; one thread calls nbd_poll while the count is above zero;
 * the completion callback decrements the count and requires it to be
 * at least 1.  That holds only if one nbd_poll completes at most one
 * command (libnbd 1.22): a command whose reply comes in the same call
 * as another's may not have been counted yet.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "test-util.h"

#define THREADS 4
#define READS 400

static struct nbd_handle *h;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static atomic_size_t in_flight;
static atomic_int finished_threads;
static atomic_int uncounted;

struct completion {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  int completed;
};

static int
on_complete (void *user_data, int *error)
{
  struct completion *c = user_data;

  pthread_mutex_lock (&c->mutex);
  c->completed = 1;
  pthread_cond_signal (&c->cond);
  if (atomic_load (&in_flight) < 1)
    atomic_fetch_add (&uncounted, 1);
  else
    atomic_fetch_sub (&in_flight, 1);
  pthread_mutex_unlock (&c->mutex);
  return 0;
}

static void *
poller (void *arg)
{
  for (;;) {
    pthread_mutex_lock (&lock);
    while (atomic_load (&in_flight) == 0 &&
           atomic_load (&finished_threads) < THREADS)
      pthread_cond_wait (&cond, &lock);
    pthread_mutex_unlock (&lock);
    if (atomic_load (&in_flight) == 0)
      return NULL;
    while (atomic_load (&in_flight) > 0) {
      int r = nbd_poll (h, 2000);
      if (r == -1)
        FAIL ("nbd_poll: %s", tu_errmsg ());
      /* A completion that found the count at 0 leaves it too high: the
       * loop would wait for a reply that never comes.
       */
      if (r == 0 && atomic_load (&uncounted) != 0)
        FAIL ("%d completions came before their command was counted",
              atomic_load (&uncounted));
    }
  }
}

static void *
reader (void *arg)
{
  static __thread char buf[4096];
  long t = (long) arg;

  for (int i = 0; i < READS; ++i) {
    struct completion c = { PTHREAD_MUTEX_INITIALIZER,
                            PTHREAD_COND_INITIALIZER, 0 };
    nbd_completion_callback cb = { .callback = on_complete, .user_data = &c };
    int64_t cookie = nbd_aio_pread (h, buf, sizeof buf,
                                    (uint64_t) (t * READS + i) * 4096, cb, 0);
    if (cookie <= 0)
      FAIL ("nbd_aio_pread: %s", tu_errmsg ());
    /* Counted only now, as nbdfuse does. */
    pthread_mutex_lock (&lock);
    atomic_fetch_add (&in_flight, 1);
    pthread_cond_signal (&cond);
    pthread_mutex_unlock (&lock);
    pthread_mutex_lock (&c.mutex);
    while (!c.completed)
      pthread_cond_wait (&c.cond, &c.mutex);
    pthread_mutex_unlock (&c.mutex);
    if (nbd_aio_command_completed (h, cookie) != 1)
      FAIL ("nbd_aio_command_completed: %s", tu_errmsg ());
  }
  pthread_mutex_lock (&lock);
  atomic_fetch_add (&finished_threads, 1);
  pthread_cond_signal (&cond);
  pthread_mutex_unlock (&lock);
  return NULL;
}

int
main (void)
{
  char *argv[] = { NBDKIT, "pattern", "64M", NULL };
  pthread_t p, r[THREADS];

  h = tu_connect (argv);
  if (pthread_create (&p, NULL, poller, NULL) != 0)
    FAIL ("pthread_create");
  for (long t = 0; t < THREADS; ++t)
    if (pthread_create (&r[t], NULL, reader, (void *) t) != 0)
      FAIL ("pthread_create");
  for (int t = 0; t < THREADS; ++t)
    pthread_join (r[t], NULL);
  pthread_join (p, NULL);
  if (atomic_load (&uncounted) != 0)
    FAIL ("%d completions came before their command was counted",
          atomic_load (&uncounted));
  nbd_close (h);
  return 0;
}
