/* A closure with a NULL .callback but a .free function is not a NULL
 * closure (libnbd(3), "Callbacks with .callback=NULL and .free!=NULL"):
 * the call goes on to its own checks and work, the callback is never
 * called, and .free runs exactly once.  Only a closure with both NULL
 * fails with EFAULT.  Same results as libnbd 1.22.
 */
#include "test-util.h"

#include <fcntl.h>

static int frees;

static void
on_free (void *user_data)
{
  frees++;
}

static char buf[4096];
static char *queries[] = { "base:allocation", NULL };

#define CHUNK ((nbd_chunk_callback) { .free = on_free })
#define EXTENT ((nbd_extent_callback) { .free = on_free })
#define EXTENT64 ((nbd_extent64_callback) { .free = on_free })
#define LIST ((nbd_list_callback) { .free = on_free })
#define CONTEXT ((nbd_context_callback) { .free = on_free })
#define COMPLETION ((nbd_completion_callback) { .free = on_free })

/* EXPR returns WANT and frees exactly NR_FREES closures. */
#define CHECK_FREES(expr, want, nr_frees)                            \
  do {                                                               \
    frees = 0;                                                       \
    CHECK_INT ((expr), (want));                                      \
    CHECK_INT (frees, (nr_frees));                                   \
  } while (0)

/* As CHECK_ERR, also counting frees. */
#define CHECK_ERR_FREES(expr, e, msg, nr_frees)                      \
  do {                                                               \
    frees = 0;                                                       \
    CHECK_ERR ((expr), (e), (msg));                                  \
    CHECK_INT (frees, (nr_frees));                                   \
  } while (0)

static void
wait_retire (struct nbd_handle *h, int64_t cookie)
{
  int r;

  CHECK (cookie > 0);
  while ((r = nbd_aio_command_completed (h, cookie)) == 0)
    CHECK (nbd_poll (h, -1) != -1);
  CHECK_INT (r, 1);
}

int
main (void)
{
  char *argv[] = { NBDKIT, "memory", "1M", NULL };
  struct nbd_handle *h = tu_create ();
  int64_t cookie;

  CHECK_OK (nbd_add_meta_context (h, "base:allocation"));
  CHECK_OK (nbd_connect_command (h, argv));

  /* Reads with a free-only chunk closure. */
  CHECK_FREES (nbd_pread_structured (h, buf, 512, 0, CHUNK, 0), 0, 1);
  CHECK_ERR_FREES (nbd_pread_structured (h, buf, 512, 1 << 20, CHUNK, 0),
                   EINVAL,
                   "nbd_pread_structured: request out of bounds: "
                   "Invalid argument", 1);
  CHECK_ERR_FREES (nbd_pread_structured (h, buf, 512, 0, CHUNK, 0x100),
                   EINVAL,
                   "nbd_pread_structured: flags: invalid value for flag: "
                   "0x100: Invalid argument", 1);
  CHECK_ERR_FREES (nbd_pread_structured (h, buf, 512, 0,
                                         (nbd_chunk_callback) { 0 }, 0),
                   EFAULT,
                   "nbd_pread_structured: chunk cannot be NULL: Bad address",
                   0);
  frees = 0;
  cookie = nbd_aio_pread_structured (h, buf, 512, 0, CHUNK, COMPLETION, 0);
  wait_retire (h, cookie);
  CHECK_INT (frees, 2);

  /* Block status with a free-only extent closure. */
  CHECK_FREES (nbd_block_status (h, 512, 0, EXTENT, 0), 0, 1);
  CHECK_ERR_FREES (nbd_block_status (h, 512, 1 << 20, EXTENT, 0), EINVAL,
                   "nbd_block_status: request out of bounds: "
                   "Invalid argument", 1);
  CHECK_ERR_FREES (nbd_block_status (h, 512, 0,
                                     (nbd_extent_callback) { 0 }, 0),
                   EFAULT,
                   "nbd_block_status: extent cannot be NULL: Bad address", 0);
  CHECK_FREES (nbd_block_status_64 (h, 512, 0, EXTENT64, 0), 0, 1);
  CHECK_ERR_FREES (nbd_block_status_64 (h, 512, 1 << 20, EXTENT64, 0),
                   EINVAL,
                   "nbd_block_status_64: request out of bounds: "
                   "Invalid argument", 1);
  CHECK_ERR_FREES (nbd_block_status_64 (h, 512, 0,
                                        (nbd_extent64_callback) { 0 }, 0),
                   EFAULT,
                   "nbd_block_status_64: extent64 cannot be NULL: "
                   "Bad address", 0);
  frees = 0;
  cookie = nbd_aio_block_status (h, 512, 0, EXTENT, COMPLETION, 0);
  wait_retire (h, cookie);
  CHECK_INT (frees, 2);
  frees = 0;
  cookie = nbd_aio_block_status_64 (h, 512, 0, EXTENT64, COMPLETION, 0);
  wait_retire (h, cookie);
  CHECK_INT (frees, 2);
  nbd_close (h);

  /* Option mode: free-only list and context closures. */
  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (nbd_add_meta_context (h, "base:allocation"));
  CHECK_OK (nbd_connect_command (h, argv));
  CHECK_FREES (nbd_opt_list (h, LIST), 1, 1);
  CHECK_ERR_FREES (nbd_opt_list (h, (nbd_list_callback) { 0 }), EFAULT,
                   "nbd_opt_list: list cannot be NULL: Bad address", 0);
  CHECK_FREES (nbd_opt_list_meta_context (h, CONTEXT), 1, 1);
  CHECK_FREES (nbd_opt_list_meta_context_queries (h, queries, CONTEXT), 1, 1);
  CHECK_ERR_FREES (nbd_opt_list_meta_context (h,
                                              (nbd_context_callback) { 0 }),
                   EFAULT,
                   "nbd_opt_list_meta_context: context cannot be NULL: "
                   "Bad address", 0);
  frees = 0;
  CHECK_OK (nbd_aio_opt_list (h, LIST, COMPLETION));
  while (nbd_aio_is_connecting (h))
    CHECK (nbd_poll (h, -1) != -1);
  CHECK_INT (frees, 2);
  CHECK_FREES (nbd_opt_set_meta_context_queries (h, queries, CONTEXT), 1, 1);
  CHECK_OK (nbd_opt_go (h));
  nbd_close (h);

  /* A free-only debug callback is installed: messages go nowhere (not
   * to stderr), and it is freed once, at close.  Both NULL: EFAULT.
   */
  h = tu_create ();
  CHECK_ERR (nbd_set_debug_callback (h, (nbd_debug_callback) { 0 }), EFAULT,
             "nbd_set_debug_callback: debug cannot be NULL: Bad address");
  frees = 0;
  CHECK_OK (nbd_set_debug_callback (h, (nbd_debug_callback) {
        .free = on_free }));
  CHECK_INT (frees, 0);
  {
    char path[] = "/tmp/closure-free-only.XXXXXX";
    int fd = mkstemp (path), saved = dup (2);

    CHECK (fd >= 0 && saved >= 0);
    unlink (path);
    fflush (stderr);
    dup2 (fd, 2);
    CHECK_OK (nbd_set_debug (h, true));
    CHECK_INT (nbd_get_size (h), -1);   /* a debug message or two */
    CHECK_OK (nbd_set_debug (h, false));
    fflush (stderr);
    dup2 (saved, 2);
    close (saved);
    if (lseek (fd, 0, SEEK_END) != 0)
      FAIL ("debug messages went to stderr despite the debug callback");
    close (fd);
  }
  nbd_close (h);
  CHECK_INT (frees, 1);
  return 0;
}
