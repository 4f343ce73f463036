/* In option mode, nbd_opt_go asks for the meta contexts again even
 * after nbd_opt_set_meta_context: here the export name changes in
 * between, so the contexts set for the first export must not be
 * taken for the second one.  nbdkit refuses block status for a
 * context not negotiated on the export it serves.
 */
#include "test-util.h"

static int contexts_seen;

static int
on_context (void *user_data, const char *name)
{
  contexts_seen++;
  return 0;
}

static int extent_calls;

static int
on_extent (void *user_data, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  if (strcmp (metacontext, "base:allocation") == 0)
    extent_calls++;
  return 0;
}

int
main (void)
{
  char *argv[] = { "nbdkit", "-s", "--exit-with-parent", "-e", "first",
                   "memory", "1M", NULL };
  struct nbd_handle *h = tu_create ();

  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (nbd_add_meta_context (h, "base:allocation"));
  CHECK_OK (nbd_set_export_name (h, "first"));
  CHECK_OK (nbd_connect_command (h, argv));
  CHECK_INT (nbd_opt_set_meta_context (h, (nbd_context_callback) {
               .callback = on_context }), 1);
  CHECK_INT (contexts_seen, 1);
  CHECK_INT (nbd_can_meta_context (h, "base:allocation"), 1);

  /* A new export name forgets the contexts until they are set again. */
  CHECK_OK (nbd_set_export_name (h, ""));
  CHECK_ERR (nbd_can_meta_context (h, "base:allocation"), EINVAL,
             "nbd_can_meta_context: need a successful server meta context "
             "request first: Invalid argument");

  CHECK_OK (nbd_opt_go (h));
  CHECK_INT (nbd_can_meta_context (h, "base:allocation"), 1);
  CHECK_OK (nbd_block_status (h, 65536, 0, (nbd_extent_callback) {
              .callback = on_extent }, 0));
  CHECK_INT (extent_calls, 1);
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  return 0;
}
