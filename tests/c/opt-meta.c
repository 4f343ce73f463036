/* Option mode, export listing, meta contexts and block status against
 * nbdkit: the memory plugin is sparse, so after one write the
 * base:allocation extents show data there and a hole elsewhere.
 */
#include "test-util.h"

static int list_count, list_frees;
static char names[8][64], descs[8][64];

static int
on_list (void *user_data, const char *name, const char *description)
{
  if (list_count < 8) {
    snprintf (names[list_count], sizeof names[0], "%s", name);
    snprintf (descs[list_count], sizeof descs[0], "%s", description);
  }
  list_count++;
  return 0;
}

static void
count_free (void *user_data)
{
  ++*(int *) user_data;
}

static int context_count, context_frees;
static char context_name[64];

static int
on_context (void *user_data, const char *name)
{
  context_count++;
  snprintf (context_name, sizeof context_name, "%s", name);
  return 0;
}

struct extents {
  int calls;
  uint64_t offset;
  uint32_t e[16];
  size_t n;
  char ctx[64];
};

static int
on_extent (void *user_data, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct extents *x = user_data;
  x->calls++;
  x->offset = offset;
  snprintf (x->ctx, sizeof x->ctx, "%s", metacontext);
  x->n = nr_entries < 16 ? nr_entries : 16;
  memcpy (x->e, entries, x->n * sizeof *entries);
  return 0;
}

int
main (void)
{
  struct nbd_handle *nbd = nbd_create ();
  char *argv[] = { NBDKIT, "--filter=exportname", "memory", "1M",
                   "exportname=alpha", "exportname=beta",
                   "exportname-list=explicit", "exportname-strict=true",
                   NULL };
  char buf[4096];

  CHECK (nbd != NULL);
  CHECK_INT (nbd_get_opt_mode (nbd), 0);
  CHECK_OK (nbd_set_opt_mode (nbd, true));
  CHECK_INT (nbd_get_opt_mode (nbd), 1);
  CHECK_OK (nbd_add_meta_context (nbd, "base:allocation"));
  CHECK_INT (nbd_get_nr_meta_contexts (nbd), 1);
  char *m = nbd_get_meta_context (nbd, 0);
  CHECK (m != NULL && strcmp (m, "base:allocation") == 0);
  free (m);
  CHECK (nbd_get_meta_context (nbd, 1) == NULL);
  CHECK_LAST_ERROR ("get_meta_context(1)", EINVAL,
                    "nbd_get_meta_context: meta context request out of range: Invalid argument");

  CHECK_OK (nbd_connect_command (nbd, argv));
  CHECK_INT (nbd_aio_is_negotiating (nbd), 1);
  CHECK (strncmp (nbd_connection_state (nbd), "NEGOTIATING", 11) == 0);

  /* A transmission call while negotiating is refused. */
  CHECK_INT (nbd_pread (nbd, buf, 512, 0, 0), -1);
  CHECK_LAST_ERROR ("pread while negotiating", EINVAL,
                    "nbd_pread: invalid state: NEGOTIATING: the handle must be connected with the server: Invalid argument");

  /* List the exports. */
  nbd_list_callback lcb = { .callback = on_list, .user_data = NULL,
                            .free = count_free };
  lcb.user_data = &list_frees;
  CHECK_INT (nbd_opt_list (nbd, lcb), 2);
  CHECK_INT (list_count, 2);
  CHECK_INT (list_frees, 1);
  CHECK (strcmp (names[0], "alpha") == 0);
  CHECK (strcmp (names[1], "beta") == 0);

  /* Meta contexts the server has for what we asked. */
  nbd_context_callback ccb = { .callback = on_context,
                               .user_data = &context_frees,
                               .free = count_free };
  CHECK_INT (nbd_opt_list_meta_context (nbd, ccb), 1);
  CHECK (strcmp (context_name, "base:allocation") == 0);
  CHECK_INT (context_frees, 1);

  /* NBD_OPT_INFO on an export: size known, still negotiating. */
  CHECK_OK (nbd_set_export_name (nbd, "beta"));
  CHECK_OK (nbd_opt_info (nbd));
  CHECK_INT (nbd_get_size (nbd), 1048576);
  CHECK_INT (nbd_aio_is_negotiating (nbd), 1);

  /* An export that does not exist: the option fails, negotiation goes on. */
  CHECK_OK (nbd_set_export_name (nbd, "gamma"));
  CHECK_INT (nbd_opt_go (nbd), -1);
  CHECK_INT (nbd_get_errno (), ENOENT);
  CHECK_INT (nbd_aio_is_negotiating (nbd), 1);

  /* Now for real. */
  CHECK_OK (nbd_set_export_name (nbd, "alpha"));
  CHECK_OK (nbd_opt_go (nbd));
  CHECK_INT (nbd_aio_is_ready (nbd), 1);
  CHECK_INT (nbd_can_meta_context (nbd, "base:allocation"), 1);
  CHECK_INT (nbd_can_meta_context (nbd, "qemu:dirty-bitmap:x"), 0);
  CHECK_INT (nbd_opt_go (nbd), -1);
  CHECK_INT (nbd_get_errno (), EINVAL);

  /* Make 64K..128K data; the rest of the sparse disk is a hole. */
  memset (buf, 0xab, sizeof buf);
  for (int i = 0; i < 16; ++i)
    CHECK_OK (nbd_pwrite (nbd, buf, sizeof buf, 65536 + i * 4096, 0));

  struct extents x = { 0 };
  nbd_extent_callback ecb = { .callback = on_extent, .user_data = &x };
  CHECK_OK (nbd_block_status (nbd, 1048576, 0, ecb, 0));
  CHECK_INT (x.calls, 1);
  CHECK (strcmp (x.ctx, "base:allocation") == 0);
  CHECK_INT (x.offset, 0);
  CHECK (x.n >= 4);
  /* First extent: 64K of hole+zero, then 64K of data. */
  CHECK_INT (x.e[0], 65536);
  CHECK_INT (x.e[1], 3);        /* LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO */
  CHECK_INT (x.e[2], 65536);
  CHECK_INT (x.e[3], 0);

  /* REQ_ONE: a single extent. */
  memset (&x, 0, sizeof x);
  CHECK_OK (nbd_block_status (nbd, 1048576 - 65536, 65536, ecb,
                              LIBNBD_CMD_FLAG_REQ_ONE));
  CHECK_INT (x.n, 2);
  CHECK_INT (x.e[0], 65536);
  CHECK_INT (x.e[1], 0);

  /* Unknown flags are refused. */
  CHECK_INT (nbd_block_status (nbd, 512, 0, ecb, LIBNBD_CMD_FLAG_FUA), -1);
  CHECK_LAST_ERROR ("block_status FUA", EINVAL,
                    "nbd_block_status: flags: invalid value for flag: 0x1: Invalid argument");

  CHECK_OK (nbd_shutdown (nbd, 0));
  nbd_close (nbd);

  /* Without meta contexts, block status is refused up front. */
  nbd = nbd_create ();
  char *argv2[] = { NBDKIT, "memory", "1M", NULL };
  CHECK_OK (nbd_connect_command (nbd, argv2));
  CHECK_INT (nbd_block_status (nbd, 512, 0, ecb, 0), -1);
  CHECK_INT (nbd_get_errno (), ENOTSUP);
  nbd_close (nbd);

  /* NBD_OPT_ABORT ends the connection. */
  nbd = nbd_create ();
  CHECK_OK (nbd_set_opt_mode (nbd, true));
  CHECK_OK (nbd_connect_command (nbd, argv2));
  CHECK_OK (nbd_opt_abort (nbd));
  CHECK_INT (nbd_aio_is_closed (nbd), 1);
  nbd_close (nbd);
  return 0;
}
