/* nbd_block_status (32-bit extents) with extended headers and an extent
 * longer than 4 GiB: the extent is shown clamped to 4 GiB - 64 MiB (an
 * aligned length) and the reply's list stops there, with no error;
 * nbd_block_status_64 sees the whole length.  Against qemu-nbd (which
 * has extended headers since 8.2) serving a sparse 8 GiB image.
 */
#include "test-util.h"

#include <fcntl.h>

#define G (UINT64_C (1) << 30)
#define M (UINT64_C (1) << 20)

struct seen {
  size_t calls, n;
  uint64_t len[16], flags[16];
};

static int
extent32 (void *user_data, const char *metacontext, uint64_t offset,
          uint32_t *entries, size_t nr_entries, int *error)
{
  struct seen *s = user_data;
  size_t i;
  s->calls++;
  for (i = 0; i + 1 < nr_entries && s->n < 16; i += 2, s->n++) {
    s->len[s->n] = entries[i];
    s->flags[s->n] = entries[i + 1];
  }
  return 0;
}

static int
extent64 (void *user_data, const char *metacontext, uint64_t offset,
          nbd_extent *entries, size_t nr_entries, int *error)
{
  struct seen *s = user_data;
  size_t i;
  s->calls++;
  for (i = 0; i < nr_entries && s->n < 16; i++, s->n++) {
    s->len[s->n] = entries[i].length;
    s->flags[s->n] = entries[i].flags;
  }
  return 0;
}

static void
run (const char *disk, bool extended)
{
  struct nbd_handle *h = tu_create ();
  char *argv[] = { "qemu-nbd", "-f", "raw", (char *) disk, NULL };
  struct seen s = { 0 };
  /* Without extended headers a request is limited to 32 bits. */
  uint64_t count = extended ? 8 * G - 1 * M : 4 * G - 1 * M;

  CHECK_OK (nbd_set_request_extended_headers (h, extended));
  CHECK_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  if (nbd_connect_systemd_socket_activation (h, argv) == -1)
    FAIL ("qemu-nbd: %s", tu_errmsg ());
  CHECK_INT (nbd_get_extended_headers_negotiated (h), extended);
  CHECK_INT (nbd_get_size (h), 8 * G);

  /* A hole from 1 MiB to the end (7 GiB - 1 MiB). */
  CHECK_OK (nbd_block_status (h, count, 1 * M,
                              (nbd_extent_callback) { .callback = extent32,
                                                      .user_data = &s }, 0));
  CHECK_INT (s.calls, 1);
  if (extended) {
    CHECK_INT (s.n, 1);
    CHECK_INT (s.len[0], 4 * G - 64 * M);
    CHECK_INT (s.flags[0], LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO);
  }
  else {
    /* The server splits it below 4 GiB itself. */
    CHECK (s.n >= 1);
    CHECK (s.len[0] < 4 * G && s.len[0] >= 2 * G);
    CHECK_INT (s.flags[0], LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO);
  }

  s = (struct seen) { 0 };
  CHECK_OK (nbd_block_status_64 (h, count, 1 * M,
                                 (nbd_extent64_callback) {
                                   .callback = extent64, .user_data = &s }, 0));
  CHECK_INT (s.calls, 1);
  if (extended) {
    CHECK_INT (s.n, 1);
    CHECK_INT (s.len[0], 8 * G - 1 * M);
  }
  else
    CHECK (s.len[0] < 4 * G);
  CHECK_INT (s.flags[0], LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO);

  /* The data at the start is shown as data. */
  s = (struct seen) { 0 };
  CHECK_OK (nbd_block_status (h, 1 * M, 0,
                              (nbd_extent_callback) { .callback = extent32,
                                                      .user_data = &s }, 0));
  CHECK (s.n >= 1);
  CHECK_INT (s.flags[0], 0);
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
}

int
main (void)
{
  char disk[] = "/tmp/rust-libnbd-bs4g.XXXXXX";
  char data[1024 * 1024];
  int fd;

  if (system ("qemu-nbd --version >/dev/null 2>&1") != 0) {
    fprintf (stderr, "qemu-nbd not installed\n");
    exit (77);
  }
  fd = mkstemp (disk);
  if (fd == -1)
    FAIL ("mkstemp: %m");
  memset (data, 0x55, sizeof data);
  if (pwrite (fd, data, sizeof data, 0) != sizeof data ||
      ftruncate (fd, 8 * G) == -1)
    FAIL ("writing %s: %m", disk);
  close (fd);
  run (disk, true);
  run (disk, false);
  unlink (disk);
  return 0;
}
