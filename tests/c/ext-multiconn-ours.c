/* Beyond libnbd, through <libnbd-ext.h>: multi-connection I/O, a pool of
 * connections used as one handle (struct rnbd_multi_conn), against
 * nbdkit's multi-conn filter.  Data written through the pool is read
 * back after a flush through another connection; the pool falls back to
 * one connection when the server does not advertise multi-conn; errors
 * follow libnbd's conventions.
 */
#include "test-util.h"

#include <libnbd-ext.h>

#define SIZE (8 << 20)

static void
stop_nbdkit (pid_t pid, const char *path)
{
  CHECK (kill (pid, SIGTERM) == 0);
  CHECK (waitpid (pid, NULL, 0) == pid);
  unlink (path);
}

/* The last error must have errno ERR and a message starting with PREFIX. */
#define CHECK_ERR_PREFIX(err, prefix)                                \
  do {                                                               \
    const char *tu_m_ = tu_errmsg ();                                \
    CHECK_INT (nbd_get_errno (), (err));                             \
    if (strncmp (tu_m_, (prefix), strlen (prefix)) != 0)             \
      FAIL ("error message \"%s\" does not start with \"%s\"",       \
            tu_m_, (prefix));                                        \
  } while (0)

struct factory {
  const char *uri;
  int calls;
  unsigned indexes[16];
  int fail_at;          /* index whose connect fails, or -1 */
  int unconnected_at;   /* index returned without connecting, or -1 */
};

static struct nbd_handle *
make_connection (void *user_data, unsigned index)
{
  struct factory *f = user_data;
  struct nbd_handle *h;

  f->indexes[f->calls++] = index;
  h = nbd_create ();
  if (h == NULL)
    return NULL;
  if ((int) index == f->unconnected_at)
    return h;
  if (nbd_connect_uri (h, (int) index == f->fail_at
                       ? "nbd+unix:///?socket=/nonexistent/sock" : f->uri) == -1) {
    nbd_close (h);
    return NULL;
  }
  return h;
}

static int completions, completion_errors;

static int
completed (void *user_data, int *error)
{
  CHECK (user_data == &completions);
  completions++;
  if (*error)
    completion_errors++;
  return 1; /* retire the command */
}

static unsigned char
byte_at (uint64_t i)
{
  return (i * 31 + (i >> 12)) & 0xff;
}

int
main (void)
{
  static unsigned char buf[4 << 20], back[4 << 20];
  struct rnbd_multi_conn *mc;
  struct nbd_handle *h;
  struct factory f;
  char sock[128], uri[256];
  const char *volatile null_str = NULL; /* hidden from -Wnonnull */
  void *volatile null_buf = NULL;
  struct rnbd_multi_conn *volatile null_mc = NULL;
  struct nbd_handle *(*volatile null_fn) (void *, unsigned) = NULL;
  int64_t cookies[4];
  pid_t pid;
  size_t i;
  int j, done;

  /* 1. Argument errors. */
  CHECK_ERR_NULL (rnbd_multi_conn_connect_uri (4, null_str), EFAULT,
                  "rnbd_multi_conn_connect_uri: uri cannot be NULL: "
                  "Bad address");
  CHECK_ERR_NULL (rnbd_multi_conn_connect (2, null_fn, NULL), EFAULT,
                  "rnbd_multi_conn_connect: connect cannot be NULL: "
                  "Bad address");
  CHECK_ERR (rnbd_multi_conn_get_size (null_mc), EFAULT,
             "rnbd_multi_conn_get_size: mc cannot be NULL: Bad address");
  CHECK_ERR (rnbd_multi_conn_pread (null_mc, buf, 512, 0, 0), EFAULT,
             "rnbd_multi_conn_pread: mc cannot be NULL: Bad address");
  CHECK_ERR (rnbd_multi_conn_flush (null_mc, 0), EFAULT,
             "rnbd_multi_conn_flush: mc cannot be NULL: Bad address");
  rnbd_multi_conn_close (NULL);

  {
    char *args[] = { "--filter=multi-conn", "memory", "size=8M", NULL };
    pid = tu_start_nbdkit_unix_args ("ext-multiconn", sock, sizeof sock, args);
  }
  snprintf (uri, sizeof uri, "nbd+unix:///?socket=%s", sock);
  CHECK_ERR_NULL (rnbd_multi_conn_connect_uri (0, uri), EINVAL,
                  "rnbd_multi_conn_connect_uri: connections: invalid value "
                  "for parameter: 0 (must be 1 to 16): Invalid argument");
  CHECK_ERR_NULL (rnbd_multi_conn_connect_uri (17, uri), EINVAL,
                  "rnbd_multi_conn_connect_uri: connections: invalid value "
                  "for parameter: 17 (must be 1 to 16): Invalid argument");
  CHECK_ERR_NULL (rnbd_multi_conn_connect_uri (2, "nbd+unix:///?socket=/nonexistent/sock"),
                  ENOENT, "rnbd_multi_conn_connect_uri: connect: "
                  "No such file or directory");

  /* 2. A pool of 4 over a server that advertises multi-conn. */
  mc = rnbd_multi_conn_connect_uri (4, uri);
  if (mc == NULL)
    FAIL ("rnbd_multi_conn_connect_uri: %s", tu_errmsg ());
  CHECK_INT (rnbd_multi_conn_connections (mc), 4);
  CHECK_INT (rnbd_multi_conn_get_size (mc), SIZE);
  CHECK_INT (rnbd_multi_conn_is_read_only (mc), 0);
  CHECK_INT (rnbd_multi_conn_can_multi_conn (mc), 1);
  CHECK_INT (rnbd_multi_conn_can_flush (mc), 1);
  CHECK_INT (rnbd_multi_conn_can_trim (mc), 1);
  CHECK_INT (rnbd_multi_conn_can_zero (mc), 1);

  /* A large write (split over the connections) and a small one, then a
   * flush; another connection, not of the pool, reads them back.
   */
  for (i = 0; i < sizeof buf; ++i)
    buf[i] = byte_at (i);
  CHECK_OK (rnbd_multi_conn_pwrite (mc, buf, sizeof buf, 1 << 20, 0));
  CHECK_OK (rnbd_multi_conn_pwrite (mc, buf, 4096, 0, 0));
  CHECK_OK (rnbd_multi_conn_flush (mc, 0));
  h = tu_create ();
  CHECK_OK (nbd_connect_uri (h, uri));
  CHECK_OK (nbd_pread (h, back, sizeof back, 1 << 20, 0));
  CHECK (memcmp (back, buf, sizeof buf) == 0);
  CHECK_OK (nbd_pread (h, back, 4096, 0, 0));
  CHECK (memcmp (back, buf, 4096) == 0);
  /* The other way: written by the lone handle, read by the pool. */
  memset (back, 0x5a, 65536);
  CHECK_OK (nbd_pwrite (h, back, 65536, 6 << 20, 0));
  CHECK_OK (nbd_flush (h, 0));
  memset (back, 0, sizeof back);
  CHECK_OK (rnbd_multi_conn_pread (mc, back, 65536, 6 << 20, 0));
  for (i = 0; i < 65536; ++i)
    CHECK (back[i] == 0x5a);
  /* A large read through the pool. */
  CHECK_OK (rnbd_multi_conn_pread (mc, back, sizeof back, 1 << 20, 0));
  CHECK (memcmp (back, buf, sizeof buf) == 0);

  /* Zero and trim, seen by the lone handle. */
  CHECK_OK (rnbd_multi_conn_zero (mc, 8192, 1 << 20, 0));
  CHECK_OK (rnbd_multi_conn_trim (mc, 4096, 0, 0));
  CHECK_OK (rnbd_multi_conn_flush (mc, 0));
  CHECK_OK (nbd_pread (h, back, 8192, 1 << 20, 0));
  for (i = 0; i < 8192; ++i)
    CHECK (back[i] == 0);
  CHECK_OK (nbd_pread (h, back, 4096, 0, 0));
  for (i = 0; i < 4096; ++i)
    CHECK (back[i] == 0);
  nbd_close (h);

  /* Errors of the commands: libnbd's, named after the pool's call. */
  CHECK_INT (rnbd_multi_conn_pread (mc, buf, 4096, SIZE, 0), -1);
  CHECK_ERR_PREFIX (EINVAL, "rnbd_multi_conn_pread: ");
  CHECK_INT (rnbd_multi_conn_pread (mc, buf, 1 << 20, SIZE - 4096, 0), -1);
  CHECK_ERR_PREFIX (EINVAL, "rnbd_multi_conn_pread: ");
  CHECK_INT (rnbd_multi_conn_pwrite (mc, buf, 4096, 0, 0x1000), -1);
  CHECK_ERR_PREFIX (EINVAL, "rnbd_multi_conn_pwrite: ");
  CHECK_ERR (rnbd_multi_conn_pread (mc, null_buf, 512, 0, 0), EFAULT,
             "rnbd_multi_conn_pread: buf cannot be NULL: Bad address");
  /* The pool still works. */
  CHECK_OK (rnbd_multi_conn_pread (mc, back, 4096, 1 << 20, 0));

  /* 3. Asynchronous reads, one connection each, driven by the pool. */
  memset (back, 0, 4 * 4096);
  for (j = 0; j < 4; ++j) {
    cookies[j] = rnbd_multi_conn_aio_pread (mc, back + j * 4096, 4096,
                                            (2 << 20) + j * 4096,
                                            NBD_NULL_COMPLETION, 0);
    CHECK (cookies[j] > 0);
    if (j > 0)
      CHECK (cookies[j] != cookies[j - 1]);
  }
  CHECK_INT (rnbd_multi_conn_aio_in_flight (mc) <= 4, 1);
  for (done = 0; done < 4; ) {
    done = 0;
    for (j = 0; j < 4; ++j) {
      int r = rnbd_multi_conn_aio_command_completed (mc, cookies[j]);
      if (r == 1) {
        cookies[j] = 0;
        done++;
      }
      else if (cookies[j] == 0)
        done++;
      else
        CHECK_INT (r, 0);
    }
    if (done < 4)
      CHECK (rnbd_multi_conn_poll (mc, 1000) != -1);
  }
  CHECK (memcmp (back, buf + (1 << 20), 4 * 4096) == 0);
  CHECK_INT (rnbd_multi_conn_aio_in_flight (mc), 0);
  /* Zero and trim, retired by their completion callback. */
  {
    nbd_completion_callback cb = { .callback = completed,
                                   .user_data = &completions };
    CHECK (rnbd_multi_conn_aio_zero (mc, 4096, 2 << 20, cb, 0) > 0);
    CHECK (rnbd_multi_conn_aio_trim (mc, 4096, (2 << 20) + 4096, cb, 0) > 0);
    CHECK (rnbd_multi_conn_aio_flush (mc, NBD_NULL_COMPLETION, 0) > 0);
    while (completions < 2)
      CHECK (rnbd_multi_conn_poll (mc, 1000) != -1);
    CHECK_INT (completion_errors, 0);
    while (rnbd_multi_conn_aio_in_flight (mc) > 0)
      CHECK (rnbd_multi_conn_poll (mc, 1000) != -1);
    CHECK_OK (rnbd_multi_conn_pread (mc, back, 8192, 2 << 20, 0));
    for (i = 0; i < 8192; ++i)
      CHECK (back[i] == 0);
    memset (buf + (1 << 20), 0, 8192); /* buf mirrors the disk from 1M */
  }
  CHECK_ERR (rnbd_multi_conn_aio_command_completed (mc, 0), EINVAL,
             "rnbd_multi_conn_aio_command_completed: invalid cookie 0: "
             "Invalid argument");
  CHECK_OK (rnbd_multi_conn_shutdown (mc, 0));
  rnbd_multi_conn_close (mc);

  /* 4. The pool from the program's own connections. */
  memset (&f, 0, sizeof f);
  f.uri = uri;
  f.fail_at = f.unconnected_at = -1;
  mc = rnbd_multi_conn_connect (3, make_connection, &f);
  if (mc == NULL)
    FAIL ("rnbd_multi_conn_connect: %s", tu_errmsg ());
  CHECK_INT (f.calls, 3);
  for (j = 0; j < 3; ++j)
    CHECK_INT (f.indexes[j], j);
  CHECK_INT (rnbd_multi_conn_connections (mc), 3);
  CHECK_OK (rnbd_multi_conn_pread (mc, back, sizeof back, 1 << 20, 0));
  CHECK (memcmp (back + 8192, buf + 8192, sizeof buf - 8192) == 0);
  rnbd_multi_conn_close (mc);

  /* Its failure: the error of the libnbd call that failed. */
  memset (&f, 0, sizeof f);
  f.uri = uri;
  f.fail_at = 1;
  f.unconnected_at = -1;
  CHECK (rnbd_multi_conn_connect (3, make_connection, &f) == NULL);
  CHECK_LAST_ERROR ("rnbd_multi_conn_connect", ENOENT,
                    "rnbd_multi_conn_connect: connect returned NULL for "
                    "connection 1: nbd_connect_uri: connect: "
                    "No such file or directory");
  CHECK_INT (f.calls, 2);
  /* A handle that is not connected. */
  memset (&f, 0, sizeof f);
  f.uri = uri;
  f.fail_at = -1;
  f.unconnected_at = 0;
  CHECK (rnbd_multi_conn_connect (3, make_connection, &f) == NULL);
  CHECK_ERR_PREFIX (EINVAL, "rnbd_multi_conn_connect: connection 0 is not "
                    "ready for commands: ");
  CHECK_INT (f.calls, 1);
  stop_nbdkit (pid, sock);

  /* 5. A server without multi-conn: one connection, which works. */
  {
    char *args[] = { "--filter=multi-conn", "memory", "size=8M",
                     "multi-conn-mode=disable", NULL };
    pid = tu_start_nbdkit_unix_args ("ext-multiconn", sock, sizeof sock, args);
  }
  mc = rnbd_multi_conn_connect_uri (4, uri);
  if (mc == NULL)
    FAIL ("rnbd_multi_conn_connect_uri: %s", tu_errmsg ());
  CHECK_INT (rnbd_multi_conn_connections (mc), 1);
  CHECK_INT (rnbd_multi_conn_can_multi_conn (mc), 0);
  CHECK_OK (rnbd_multi_conn_pwrite (mc, buf, sizeof buf, 0, 0));
  CHECK_OK (rnbd_multi_conn_flush (mc, 0));
  CHECK_OK (rnbd_multi_conn_pread (mc, back, sizeof back, 0, 0));
  CHECK (memcmp (back, buf, sizeof buf) == 0);
  rnbd_multi_conn_close (mc);
  stop_nbdkit (pid, sock);

  /* 6. This thread's deadline bounds a request that goes to one
   * connection; the pool stays usable.
   */
  {
    char *args[] = { "--filter=multi-conn", "--filter=delay", "memory",
                     "size=8M", "rdelay=2", NULL };
    pid = tu_start_nbdkit_unix_args ("ext-multiconn", sock, sizeof sock, args);
  }
  mc = rnbd_multi_conn_connect_uri (2, uri);
  if (mc == NULL)
    FAIL ("rnbd_multi_conn_connect_uri: %s", tu_errmsg ());
  CHECK_INT (rnbd_multi_conn_connections (mc), 2);
  CHECK_OK (rnbd_set_thread_deadline (200));
  CHECK_ERR (rnbd_multi_conn_pread (mc, back, 4096, 0, 0), ETIMEDOUT,
             "rnbd_multi_conn_pread: operation timed out: "
             "Connection timed out");
  rnbd_clear_thread_deadline ();
  CHECK_OK (rnbd_multi_conn_pwrite (mc, buf, 4096, 0, 0));
  CHECK_OK (rnbd_multi_conn_pread (mc, back, 4096, 0, 0));
  CHECK (memcmp (back, buf, 4096) == 0);
  rnbd_multi_conn_close (mc);
  stop_nbdkit (pid, sock);
  return 0;
}
