/* Uses libnbd.h the way C programs do; built by run.sh as C99, C11 and
 * GNU89 with -Wall -Wextra -Werror.  The header is included twice on
 * purpose: the include guard must make that harmless.
 */
#include <libnbd.h>
#include <libnbd.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Compile-time checks that work in every dialect: a negative array size
 * fails the build.
 */
#define CHECK(name, cond) typedef char check_##name[(cond) ? 1 : -1]

CHECK (fua_value, LIBNBD_CMD_FLAG_FUA == 1);
CHECK (flags_are_unsigned, LIBNBD_CMD_FLAG_FUA - 2 > 0);
CHECK (strict_is_unsigned, LIBNBD_STRICT_COMMANDS - 2 > 0);
CHECK (tls_is_signed, LIBNBD_TLS_ALLOW - 2 < 0);
CHECK (read_is_signed, LIBNBD_READ_DATA - 2 < 0);
CHECK (mask_covers_fua, (LIBNBD_CMD_FLAG_MASK & LIBNBD_CMD_FLAG_FUA) != 0);
CHECK (shutdown_value, LIBNBD_SHUTDOWN_ABANDON_PENDING == 0x10000);

static int completions;

static int
complete (void *user_data, int *error)
{
  (void) error;
  ++*(int *) user_data;
  return 1;
}

static int
debug_cb (void *user_data, const char *context, const char *msg)
{
  (void) user_data;
  (void) context;
  (void) msg;
  return 0;
}

static void
free_cb (void *user_data)
{
  (void) user_data;
}

int
main (void)
{
  struct nbd_handle *h = NULL;
  nbd_completion_callback cb = { .callback = complete, .user_data = &completions };
  nbd_completion_callback none = NBD_NULL_COMPLETION;
  nbd_debug_callback dcb = { .callback = debug_cb, .user_data = NULL, .free = free_cb };
  nbd_chunk_callback chunk = { 0 };
  nbd_extent_callback extent = { 0 };
  nbd_list_callback list = { 0 };
  nbd_context_callback context = { 0 };
  int err = 0;

  (void) chunk;
  (void) extent;
  (void) list;
  (void) context;
  (void) dcb;
  (void) h;

  if (cb.callback (cb.user_data, &err) != 1 || completions != 1)
    return 1;
  if (none.callback != NULL || none.free != NULL)
    return 1;

  /* These link only if the library exports them with C linkage. */
  if (nbd_get_errno () != 0)
    return 1;
  if (nbd_get_error () != NULL)
    return 1;
#if defined (LIBNBD_HAVE_NBD_CREATE) && defined (LIBNBD_HAVE_NBD_CLOSE)
  h = nbd_create ();
  if (h == NULL) {
    fprintf (stderr, "nbd_create: %s\n", nbd_get_error ());
    return 1;
  }
  nbd_close (h);
#endif
  return 0;
}
