/* The asynchronous API driven by a hand-written poll loop
 * (nbd_aio_get_fd + nbd_aio_get_direction + nbd_aio_notify_*) and by
 * nbd_poll, with 64 commands in flight, mixed writes, reads and
 * flushes.  Every completion callback and every free function must be
 * called exactly once: on success, on a server error, when the server
 * dies with commands pending, and when the handle is closed with
 * commands pending.
 */
#include <poll.h>

#include "test-util.h"

#define NR 64
#define BLOCK (64 * 1024)
#define DISK (NR * BLOCK)

struct counter {
  int calls;                    /* completion callback calls */
  int frees;                    /* free calls */
  int last_error;               /* *error seen by the callback */
  int retire;                   /* what the callback returns */
};

static struct counter counters[NR];
static int chunk_calls, chunk_frees;

static int
on_complete (void *user_data, int *error)
{
  struct counter *c = user_data;
  c->calls++;
  c->last_error = *error;
  return c->retire;
}

static void
on_free (void *user_data)
{
  struct counter *c = user_data;
  c->frees++;
}

static int
on_chunk (void *user_data, const void *subbuf, size_t count,
          uint64_t offset, unsigned status, int *error)
{
  chunk_calls++;
  if (status != LIBNBD_READ_DATA && status != LIBNBD_READ_HOLE)
    FAIL ("unexpected chunk status %u", status);
  if (count == 0 || offset % 512 != 0)
    FAIL ("odd chunk: count %zu offset %" PRIu64, count, offset);
  return 0;
}

static void
on_chunk_free (void *user_data)
{
  chunk_frees++;
}

static nbd_completion_callback
completion_for (int i)
{
  nbd_completion_callback cb = {
    .callback = on_complete, .user_data = &counters[i], .free = on_free
  };
  return cb;
}

static void
reset_counters (void)
{
  memset (counters, 0, sizeof counters);
  for (int i = 0; i < NR; ++i)
    counters[i].retire = i % 2;   /* half auto-retire, half retired by hand */
}

/* Drive the handle with our own poll(2) until nothing is in flight. */
static void
run_own_loop (struct nbd_handle *nbd)
{
  while (nbd_aio_in_flight (nbd) > 0) {
    struct pollfd pfd = { .fd = nbd_aio_get_fd (nbd), .events = 0 };
    unsigned dir = nbd_aio_get_direction (nbd);
    if (pfd.fd < 0)
      FAIL ("nbd_aio_get_fd: %s", tu_errmsg ());
    if (dir & LIBNBD_AIO_DIRECTION_READ)
      pfd.events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
      pfd.events |= POLLOUT;
    if (poll (&pfd, 1, 10000) <= 0)
      FAIL ("poll timed out or failed with %d in flight",
            nbd_aio_in_flight (nbd));
    if (pfd.revents & (POLLIN | POLLHUP)) {
      if (nbd_aio_notify_read (nbd) == -1)
        FAIL ("notify_read: %s", tu_errmsg ());
    }
    else if (pfd.revents & POLLOUT) {
      if (nbd_aio_notify_write (nbd) == -1)
        FAIL ("notify_write: %s", tu_errmsg ());
    }
  }
}

/* Retire by hand the commands whose callbacks returned 0; each must
 * report RESULT (1 = success, -1 = failure with ERRNO).
 */
static void
retire_rest (struct nbd_handle *nbd, int64_t *cookies, int result, int err)
{
  for (int i = 0; i < NR; ++i) {
    if (counters[i].retire)
      continue;
    CHECK_INT (nbd_aio_command_completed (nbd, cookies[i]), result);
    if (result == -1)
      CHECK_INT (nbd_get_errno (), err);
  }
  CHECK_INT (nbd_aio_peek_command_completed (nbd), -1);
}

static void
check_counters (const char *when, int err)
{
  for (int i = 0; i < NR; ++i) {
    if (counters[i].calls != 1 || counters[i].frees != 1)
      FAIL ("%s: command %d: callback called %d times, freed %d times",
            when, i, counters[i].calls, counters[i].frees);
    if (counters[i].last_error != err)
      FAIL ("%s: command %d: callback saw error %d, expected %d",
            when, i, counters[i].last_error, err);
  }
}

static void
fill (char *buf, int i)
{
  for (size_t j = 0; j < BLOCK; ++j)
    buf[j] = (char) (i * 7 + j % 251);
}

static void
test_memory (void)
{
  static char wbuf[NR][BLOCK], rbuf[NR][BLOCK];
  int64_t cookies[NR];
  struct nbd_handle *nbd = nbd_create ();
  char *argv[] = { NBDKIT, "memory", "4M", NULL };

  CHECK (nbd != NULL);
  CHECK_OK (nbd_connect_command (nbd, argv));

  /* 64 writes in flight, own poll loop. */
  reset_counters ();
  for (int i = 0; i < NR; ++i) {
    fill (wbuf[i], i);
    cookies[i] = nbd_aio_pwrite (nbd, wbuf[i], BLOCK, (uint64_t) i * BLOCK,
                                 completion_for (i), 0);
    if (cookies[i] <= 0)
      FAIL ("nbd_aio_pwrite: %s", tu_errmsg ());
  }
  CHECK (nbd_aio_in_flight (nbd) > 0);
  run_own_loop (nbd);
  retire_rest (nbd, cookies, 1, 0);
  check_counters ("writes", 0);

  /* A flush, retired by nbd_aio_command_completed. */
  int64_t fl = nbd_aio_flush (nbd, NBD_NULL_COMPLETION, 0);
  CHECK (fl > 0);
  while (nbd_aio_command_completed (nbd, fl) == 0)
    CHECK_INT (nbd_poll (nbd, -1), 1);

  /* 64 reads in flight, driven by nbd_poll, a quarter of them structured. */
  reset_counters ();
  chunk_calls = chunk_frees = 0;
  for (int i = 0; i < NR; ++i) {
    if (i % 4 == 0) {
      nbd_chunk_callback chunk = {
        .callback = on_chunk, .user_data = NULL, .free = on_chunk_free
      };
      cookies[i] = nbd_aio_pread_structured (nbd, rbuf[i], BLOCK,
                                             (uint64_t) i * BLOCK, chunk,
                                             completion_for (i), 0);
    }
    else
      cookies[i] = nbd_aio_pread (nbd, rbuf[i], BLOCK, (uint64_t) i * BLOCK,
                                  completion_for (i), 0);
    if (cookies[i] <= 0)
      FAIL ("aio read: %s", tu_errmsg ());
  }
  while (nbd_aio_in_flight (nbd) > 0)
    CHECK_INT (nbd_poll (nbd, 10000), 1);
  retire_rest (nbd, cookies, 1, 0);
  check_counters ("reads", 0);
  CHECK (chunk_calls >= NR / 4);
  CHECK_INT (chunk_frees, NR / 4);
  for (int i = 0; i < NR; ++i)
    if (memcmp (rbuf[i], wbuf[i], BLOCK) != 0)
      FAIL ("block %d read back differs", i);

  /* Close with commands pending: each fails as if the connection had
   * died, so its completion callback runs once (libnbd 1.22), and every
   * free function runs once.
   */
  reset_counters ();
  for (int i = 0; i < NR; ++i) {
    cookies[i] = nbd_aio_pread (nbd, rbuf[i], BLOCK, (uint64_t) i * BLOCK,
                                completion_for (i), 0);
    CHECK (cookies[i] > 0);
  }
  nbd_close (nbd);
  for (int i = 0; i < NR; ++i)
    if (counters[i].frees != 1 || counters[i].calls != 1)
      FAIL ("close: command %d: called %d times, freed %d times",
            i, counters[i].calls, counters[i].frees);
}

/* A server whose reads fail with EIO from offset 1M on. */
static void
test_server_error (void)
{
  static char rbuf[NR][BLOCK];
  int64_t cookies[NR];
  struct nbd_handle *nbd = nbd_create ();
  char *argv2[] = { NBDKIT, "--filter=error", "memory", "8M",
                    "error-pread=EIO", "error-pread-rate=1", NULL };

  CHECK (nbd != NULL);
  CHECK_OK (nbd_connect_command (nbd, argv2));
  reset_counters ();
  for (int i = 0; i < NR; ++i) {
    cookies[i] = nbd_aio_pread (nbd, rbuf[i], BLOCK, (uint64_t) i * BLOCK,
                                completion_for (i), 0);
    CHECK (cookies[i] > 0);
  }
  run_own_loop (nbd);
  retire_rest (nbd, cookies, -1, EIO);
  check_counters ("server error", EIO);
  /* The connection survives a command error. */
  CHECK_INT (nbd_aio_is_ready (nbd), 1);
  nbd_close (nbd);
}

/* The server dies with commands in flight. */
static void
test_server_death (void)
{
  static char rbuf[NR][BLOCK];
  int64_t cookies[NR];
  struct nbd_handle *nbd = nbd_create ();
  char *argv[] = { NBDKIT, "--filter=delay", "memory", "8M",
                   "rdelay=2", NULL };

  CHECK (nbd != NULL);
  CHECK_OK (nbd_connect_command (nbd, argv));
  reset_counters ();
  for (int i = 0; i < NR; ++i) {
    cookies[i] = nbd_aio_pread (nbd, rbuf[i], BLOCK, (uint64_t) i * BLOCK,
                                completion_for (i), 0);
    CHECK (cookies[i] > 0);
  }
  CHECK_OK (nbd_kill_subprocess (nbd, SIGKILL));
  /* Polling now reports the death once. */
  int r;
  while ((r = nbd_poll (nbd, 10000)) == 1 && !nbd_aio_is_dead (nbd))
    ;
  CHECK_INT (nbd_aio_is_dead (nbd), 1);
  for (int i = 0; i < NR; ++i) {
    if (counters[i].calls != 1)
      FAIL ("death: command %d: callback called %d times", i,
            counters[i].calls);
    if (counters[i].last_error == 0)
      FAIL ("death: command %d: callback saw no error", i);
  }
  retire_rest (nbd, cookies, -1, counters[0].last_error);
  nbd_close (nbd);
  for (int i = 0; i < NR; ++i)
    if (counters[i].frees != 1)
      FAIL ("death: command %d freed %d times", i, counters[i].frees);
}

/* A failing call still frees its callbacks, exactly once. */
static void
test_free_on_failure (void)
{
  struct nbd_handle *nbd = nbd_create ();
  char buf[512];

  CHECK (nbd != NULL);
  reset_counters ();
  CHECK_INT (nbd_aio_pread (nbd, buf, sizeof buf, 0, completion_for (0), 0),
             -1);
  CHECK_INT (nbd_get_errno (), ENOTCONN);
  CHECK_INT (counters[0].calls, 0);
  CHECK_INT (counters[0].frees, 1);
  nbd_chunk_callback chunk = {
    .callback = on_chunk, .user_data = NULL, .free = on_chunk_free
  };
  chunk_frees = 0;
  CHECK_INT (nbd_aio_pread_structured (nbd, buf, sizeof buf, 0, chunk,
                                       completion_for (1), 0), -1);
  CHECK_INT (chunk_frees, 1);
  CHECK_INT (counters[1].frees, 1);
  CHECK_INT (counters[1].calls, 0);
  nbd_close (nbd);
}

int
main (void)
{
  test_free_on_failure ();
  test_memory ();
  test_server_error ();
  test_server_death ();
  return 0;
}
