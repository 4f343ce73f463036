/* Fork safety of nbd_connect_command in a multithreaded program.
 *
 * Three threads each connect, use and close handles in a loop, so their
 * forks overlap one another, while a fourth thread keeps malloc/free,
 * stdio and an application mutex busy, and creates and closes
 * unconnected handles.  A child that took a lock or allocated between
 * fork and exec could find that lock held by a thread that does not
 * exist in the child and hang before exec: the connect would then never
 * complete.  Every connect must succeed, data must round-trip, and no
 * child may be left behind.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "test-util.h"

#define CONNECTORS 3
/* Rounds per connecting thread: fewer under a slow wrapper such as
 * valgrind (the runner sets NBD_TEST_SLOW=1 then).
 */
static int n_rounds = 20;
#define BLOCK 4096

static pthread_mutex_t app_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static atomic_int connects;

static void *
connector (void *arg)
{
  int t = (int) (intptr_t) arg;
  char *argv[] = { NBDKIT, "memory", "1M", NULL };
  static __thread char wbuf[BLOCK], rbuf[BLOCK];

  for (int i = 0; i < n_rounds; ++i) {
    struct nbd_handle *h = tu_create ();

    if (nbd_connect_command (h, argv) == -1)
      FAIL ("thread %d round %d: nbd_connect_command: %s", t, i, tu_errmsg ());
    atomic_fetch_add (&connects, 1);
    memset (wbuf, 'a' + t * n_rounds + i, BLOCK);
    CHECK_OK (nbd_pwrite (h, wbuf, BLOCK, (uint64_t) i * BLOCK, 0));
    CHECK_OK (nbd_pread (h, rbuf, BLOCK, (uint64_t) i * BLOCK, 0));
    if (memcmp (wbuf, rbuf, BLOCK) != 0)
      FAIL ("thread %d round %d: data read back differs", t, i);
    /* The application's lock is free to take between calls. */
    pthread_mutex_lock (&app_lock);
    pthread_mutex_unlock (&app_lock);
    nbd_close (h);
  }
  return NULL;
}

static void *
hammer (void *arg)
{
  FILE *null = fopen ("/dev/null", "w");
  unsigned seed = 12345;
  long rounds = 0;

  if (null == NULL)
    FAIL ("/dev/null: %s", strerror (errno));
  while (!atomic_load (&stop)) {
    void *p[8];

    pthread_mutex_lock (&app_lock);
    for (int k = 0; k < 8; ++k) {
      size_t n = 16 + rand_r (&seed) % 65536;
      p[k] = malloc (n);
      if (p[k] == NULL)
        FAIL ("malloc");
      memset (p[k], k, n);
    }
    fprintf (null, "%ld\n", rounds);
    for (int k = 0; k < 8; ++k)
      free (p[k]);
    pthread_mutex_unlock (&app_lock);

    /* The library's own allocations, unconnected. */
    if (rounds % 16 == 0) {
      struct nbd_handle *h = tu_create ();
      CHECK_OK (nbd_set_export_name (h, "hammer"));
      nbd_close (h);
    }
    rounds++;
  }
  fclose (null);
  return (void *) rounds;
}

int
main (void)
{
  pthread_t conn[CONNECTORS], ham;
  void *rounds;

  if (getenv ("NBD_TEST_SLOW") != NULL)
    n_rounds = 4;
  if (pthread_create (&ham, NULL, hammer, NULL) != 0)
    FAIL ("pthread_create");
  for (int t = 0; t < CONNECTORS; ++t)
    if (pthread_create (&conn[t], NULL, connector, (void *) (intptr_t) t) != 0)
      FAIL ("pthread_create");
  for (int t = 0; t < CONNECTORS; ++t)
    pthread_join (conn[t], NULL);
  atomic_store (&stop, 1);
  pthread_join (ham, &rounds);

  CHECK_INT (atomic_load (&connects), CONNECTORS * n_rounds);
  /* nbd_close reaped every server. */
  CHECK_INT (tu_find_child (), 0);
  printf ("%d connects from %d threads; the other thread did %ld rounds\n",
          CONNECTORS * n_rounds, CONNECTORS, (long) (intptr_t) rounds);
  return 0;
}
