/* Beyond libnbd, through <libnbd-ext.h>: timeouts and cancellation of
 * synchronous calls.  A read that runs out (nbdkit's delay filter) fails
 * with ETIMEDOUT and the connection is reused; a per-thread deadline
 * bounds the calls it brackets; another thread cancels the reads waiting
 * on a SIGSTOP'd nbdkit (ECANCELED); a connect or option call to a
 * stopped server times out and leaves the handle dead, and a connect to
 * it is cancelled from another thread (ECANCELED, handle dead).
 */
#include "test-util.h"

#include <pthread.h>
#include <stdatomic.h>

#include <libnbd-ext.h>

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Under valgrind (NBD_TEST_SLOW) only the outcome is checked, not how
 * fast it came.
 */
#define CHECK_QUICK(start, limit)                                    \
  do {                                                               \
    double tu_t_ = now () - (start);                                 \
    if (getenv ("NBD_TEST_SLOW") == NULL && tu_t_ > (limit))         \
      FAIL ("took %.2f s, more than %.2f s", tu_t_, (double) (limit)); \
  } while (0)

static int
all_bytes (const unsigned char *buf, size_t len, unsigned char c)
{
  size_t i;
  for (i = 0; i < len; ++i)
    if (buf[i] != c)
      return 0;
  return 1;
}

static void
stop (pid_t pid)
{
  char st = 0;
  int i;

  CHECK (kill (pid, SIGSTOP) == 0);
  for (i = 0; i < 1000; ++i) {
    if (tu_proc_stat (pid, &st, NULL) == 0 && st == 'T')
      return;
    tu_msleep (5);
  }
  FAIL ("nbdkit %d did not stop", (int) pid);
}

struct reader {
  pthread_t thread;
  struct nbd_handle *h;
  uint64_t offset;
  int r, err;
  char msg[256];
  unsigned char buf[4096];
};

static void *
read_thread (void *arg)
{
  struct reader *rd = arg;
  const char *m;

  memset (rd->buf, 0x11, sizeof rd->buf);
  rd->r = nbd_pread (rd->h, rd->buf, sizeof rd->buf, rd->offset, 0);
  rd->err = nbd_get_errno ();
  m = nbd_get_error ();
  snprintf (rd->msg, sizeof rd->msg, "%s", m ? m : "");
  return NULL;
}

struct connector {
  pthread_t thread;
  struct nbd_handle *h;
  const char *sock;
  int r, err;
  char msg[256];
  atomic_int done;
};

static void *
connect_thread (void *arg)
{
  struct connector *cn = arg;
  const char *m;

  cn->r = nbd_connect_unix (cn->h, cn->sock);
  cn->err = nbd_get_errno ();
  m = nbd_get_error ();
  snprintf (cn->msg, sizeof cn->msg, "%s", m ? m : "");
  atomic_store (&cn->done, 1);
  return NULL;
}

int
main (void)
{
  struct nbd_handle *h, *h2;
  static unsigned char buf[65536], data[65536];
  struct reader rd[3];
  struct connector cn;
  char sock[128], uri[256];
  struct nbd_handle *volatile null_h = NULL; /* hidden from -Wnonnull */
  double start;
  pid_t pid;
  size_t i;

  /* 1. The setting. */
  h = tu_create ();
  CHECK_INT (rnbd_get_timeout (h), 0);
  CHECK_OK (rnbd_set_timeout (h, 250));
  CHECK_INT (rnbd_get_timeout (h), 250);
  CHECK_ERR (rnbd_set_timeout (h, -1), EINVAL,
             "rnbd_set_timeout: timeout_ms: invalid timeout -1 "
             "(must be 0 or more): Invalid argument");
  CHECK_INT (rnbd_get_timeout (h), 250);
  CHECK_OK (rnbd_set_timeout (h, 0));
  CHECK_INT (rnbd_get_timeout (h), 0);
  CHECK_ERR (rnbd_set_timeout (null_h, 1), EFAULT,
             "rnbd_set_timeout: h cannot be NULL: Bad address");
  CHECK_ERR (rnbd_cancel_waits (null_h), EFAULT,
             "rnbd_cancel_waits: h cannot be NULL: Bad address");
  CHECK_ERR (rnbd_set_thread_deadline (-5), EINVAL,
             "rnbd_set_thread_deadline: timeout_ms: invalid timeout -5 "
             "(must be 0 or more): Invalid argument");
  /* Nothing waits: cancelling is a no-op. */
  CHECK_OK (rnbd_cancel_waits (h));
  nbd_close (h);

  /* 2. Reads delayed 2 s by the server: the handle's timeout. */
  {
    char *argv[] = { NBDKIT, "--filter=delay", "pattern", "size=1M",
                     "rdelay=2", NULL };
    h = tu_connect (argv);
  }
  CHECK_OK (rnbd_set_timeout (h, 200));
  memset (buf, 0xa5, sizeof buf);
  start = now ();
  CHECK_ERR (nbd_pread (h, buf, sizeof buf, 0, 0), ETIMEDOUT,
             "nbd_pread: operation timed out: Connection timed out");
  CHECK_QUICK (start, 1.5);
  CHECK_INT (nbd_aio_is_ready (h), 1);
  /* As after any failed read, nothing of the old contents is left. */
  CHECK (all_bytes (buf, sizeof buf, 0));
  memset (buf, 0xa5, sizeof buf);
  /* The same connection, no timeout: the next read is right, and the
   * late reply of the first one never lands in its buffer.
   */
  CHECK_OK (rnbd_set_timeout (h, 0));
  CHECK_OK (nbd_pread (h, data, 4096, 8192, 0));
  tu_check_pattern (data, 4096, 8192);
  CHECK (all_bytes (buf, sizeof buf, 0xa5));

  /* 3. A per-thread deadline replaces the handle's longer timeout. */
  CHECK_OK (rnbd_set_timeout (h, 10000));
  CHECK_OK (rnbd_set_thread_deadline (300));
  start = now ();
  CHECK_ERR (nbd_pread (h, buf, 4096, 0, 0), ETIMEDOUT,
             "nbd_pread: operation timed out: Connection timed out");
  CHECK_QUICK (start, 1.5);
  /* The deadline has passed: every call waiting on the server fails at
   * once, until it is cleared.
   */
  CHECK_ERR (nbd_pread (h, buf, 4096, 0, 0), ETIMEDOUT,
             "nbd_pread: operation timed out: Connection timed out");
  rnbd_clear_thread_deadline ();
  CHECK_OK (nbd_pread (h, buf, 4096, 65536, 0));
  tu_check_pattern (buf, 4096, 65536);
  /* The two reads that gave up were sent and abandoned; their late
   * replies (each delayed 2 s, the second sent just before this read)
   * are read and dropped, in whichever order the server's threads
   * send them: this read's reply may come first.
   */
  for (i = 0; i < 50 && nbd_aio_in_flight (h) > 0; ++i)
    CHECK (nbd_poll (h, 100) != -1);
  CHECK_INT (nbd_aio_in_flight (h), 0);
  /* Their data (offset 0) never landed in the buffer they had. */
  tu_check_pattern (buf, 4096, 65536);
  nbd_close (h);

  /* 4. A stopped server: another thread cancels the waiting reads. */
  pid = tu_start_nbdkit_unix ("ext-timeouts", sock, sizeof sock);
  h = tu_create ();
  CHECK_OK (nbd_connect_unix (h, sock));
  for (i = 0; i < sizeof data; ++i)
    data[i] = i * 7;
  CHECK_OK (nbd_pwrite (h, data, sizeof data, 0, 0));
  stop (pid);
  for (i = 0; i < 3; ++i) {
    rd[i].h = h;
    rd[i].offset = 4096 * i;
    CHECK (pthread_create (&rd[i].thread, NULL, read_thread, &rd[i]) == 0);
  }
  /* A command is issued and its wait begins under one hold of the
   * handle's lock: once all three are in flight, all three wait.
   */
  for (i = 0; i < 2000 && nbd_aio_in_flight (h) < 3; ++i)
    tu_msleep (5);
  CHECK_INT (nbd_aio_in_flight (h), 3);
  start = now ();
  CHECK_OK (rnbd_cancel_waits (h));
  for (i = 0; i < 3; ++i) {
    CHECK (pthread_join (rd[i].thread, NULL) == 0);
    CHECK_INT (rd[i].r, -1);
    CHECK_INT (rd[i].err, ECANCELED);
    CHECK_STR (rd[i].msg, "nbd_pread: operation cancelled: Operation canceled");
    CHECK (all_bytes (rd[i].buf, sizeof rd[i].buf, 0));
  }
  CHECK_QUICK (start, 2);
  CHECK_INT (nbd_aio_is_ready (h), 1);

  /* 5. Connecting to the stopped server (it still accepts, in the
   * kernel) times out, and the handle is dead.
   */
  h2 = tu_create ();
  CHECK_OK (rnbd_set_timeout (h2, 300));
  start = now ();
  CHECK_ERR (nbd_connect_unix (h2, sock), ETIMEDOUT,
             "nbd_connect_unix: operation timed out: Connection timed out");
  CHECK_QUICK (start, 2);
  CHECK_INT (nbd_aio_is_dead (h2), 1);
  CHECK_INT (nbd_pread (h2, buf, 512, 0, 0), -1);
  nbd_close (h2);
  /* The same with a URI and a per-thread deadline. */
  snprintf (uri, sizeof uri, "nbd+unix:///?socket=%s", sock);
  h2 = tu_create ();
  CHECK_OK (rnbd_set_thread_deadline (300));
  CHECK_ERR (nbd_connect_uri (h2, uri), ETIMEDOUT,
             "nbd_connect_uri: operation timed out: Connection timed out");
  rnbd_clear_thread_deadline ();
  CHECK_INT (nbd_aio_is_dead (h2), 1);
  nbd_close (h2);
  /* A connect waiting for the stopped server is cancelled from another
   * thread, cancelling until it returns (rnbd_cancel_waits never waits
   * for the handle, and a cancellation before the wait does not count).
   */
  memset (&cn, 0, sizeof cn);
  cn.h = tu_create ();
  cn.sock = sock;
  CHECK (pthread_create (&cn.thread, NULL, connect_thread, &cn) == 0);
  tu_msleep (200);
  start = now ();
  for (i = 0; !atomic_load (&cn.done); ++i) {
    CHECK_OK (rnbd_cancel_waits (cn.h));
    if (i > 100)
      FAIL ("the connect was not cancelled");
    tu_msleep (50);
  }
  CHECK (pthread_join (cn.thread, NULL) == 0);
  CHECK_QUICK (start, 1);
  CHECK_INT (cn.r, -1);
  CHECK_INT (cn.err, ECANCELED);
  CHECK_STR (cn.msg, "nbd_connect_unix: operation cancelled: Operation canceled");
  CHECK_INT (nbd_aio_is_dead (cn.h), 1);
  nbd_close (cn.h);

  /* The server resumes: the cancelled reads' replies are discarded, the
   * first handle reads right.
   */
  CHECK (kill (pid, SIGCONT) == 0);
  memset (buf, 0, sizeof buf);
  CHECK_OK (nbd_pread (h, buf, sizeof data, 0, 0));
  CHECK (memcmp (buf, data, sizeof data) == 0);
  for (i = 0; i < 3; ++i)
    CHECK (all_bytes (rd[i].buf, sizeof rd[i].buf, 0));
  /* nbdkit may answer the new read before the cancelled ones: those
   * still count as in flight until their replies are read.
   */
  for (i = 0; i < 200 && nbd_aio_in_flight (h) > 0; ++i)
    CHECK (nbd_poll (h, 10) >= 0);
  CHECK_INT (nbd_aio_in_flight (h), 0);

  /* 6. An option call (option mode) to a server that stops. */
  h2 = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h2, true));
  CHECK_OK (nbd_connect_unix (h2, sock));
  CHECK_INT (nbd_aio_is_negotiating (h2), 1);
  stop (pid);
  CHECK_OK (rnbd_set_timeout (h2, 300));
  start = now ();
  CHECK_ERR (nbd_opt_info (h2), ETIMEDOUT,
             "nbd_opt_info: operation timed out: Connection timed out");
  CHECK_QUICK (start, 2);
  CHECK_INT (nbd_aio_is_dead (h2), 1);
  nbd_close (h2);
  CHECK (kill (pid, SIGCONT) == 0);

  CHECK_OK (nbd_pread (h, buf, 4096, 0, 0));
  CHECK (memcmp (buf, data, 4096) == 0);
  nbd_close (h);
  CHECK (kill (pid, SIGTERM) == 0);
  CHECK (waitpid (pid, NULL, 0) == pid);
  unlink (sock);
  return 0;
}
