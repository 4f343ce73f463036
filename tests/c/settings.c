/* Handle settings: export name, handle name, private data, debug flag
 * and the structured-replies request, before and after connecting.
 */
#include "test-util.h"

int
main (void)
{
  struct nbd_handle *h = tu_create ();
  char *info_server[] = { NBDKIT, "info", NULL };
  char *name;
  char buf[64];
  const char *env;

  /* Export name: default is the empty string; the getter returns a
   * fresh copy each time.
   */
  CHECK_STR_FREE (nbd_get_export_name (h), "");
  CHECK_OK (nbd_set_export_name (h, "first"));
  CHECK_STR_FREE (nbd_get_export_name (h), "first");
  CHECK_OK (nbd_set_export_name (h, "a longer export name/with:punct"));
  name = nbd_get_export_name (h);
  CHECK (name != NULL);
  CHECK (strcmp (name, "a longer export name/with:punct") == 0);
  name[0] = 'X';               /* modifying the copy changes nothing */
  free (name);
  CHECK_STR_FREE (nbd_get_export_name (h),
                  "a longer export name/with:punct");
  CHECK_OK (nbd_set_export_name (h, ""));
  CHECK_STR_FREE (nbd_get_export_name (h), "");

  /* Handle name: freely settable, copied. */
  CHECK_STR_FREE (nbd_get_handle_name (h), "nbd1");
  {
    char tmp[] = "my-handle";
    CHECK_OK (nbd_set_handle_name (h, tmp));
    tmp[0] = 'X';
  }
  CHECK_STR_FREE (nbd_get_handle_name (h), "my-handle");

  /* Private data: default 0, set returns the previous value. */
  CHECK (nbd_get_private_data (h) == 0);
  CHECK (nbd_set_private_data (h, 42) == 0);
  CHECK (nbd_set_private_data (h, (uintptr_t) &h) == 42);
  CHECK (nbd_get_private_data (h) == (uintptr_t) &h);
  CHECK (nbd_set_private_data (h, UINTPTR_MAX) == (uintptr_t) &h);
  CHECK (nbd_get_private_data (h) == UINTPTR_MAX);

  /* Debug flag: default off unless LIBNBD_DEBUG=1 in the environment;
   * any non-zero value reads back as 1.
   */
  env = getenv ("LIBNBD_DEBUG");
  if (env == NULL || strcmp (env, "1") != 0)
    CHECK_INT (nbd_get_debug (h), 0);
  CHECK_OK (nbd_set_debug (h, 0));
  CHECK_INT (nbd_get_debug (h), 0);
  CHECK_OK (nbd_set_debug (h, 1));
  CHECK_INT (nbd_get_debug (h), 1);
  CHECK_OK (nbd_set_debug (h, 0));
  CHECK_INT (nbd_get_debug (h), 0);

  /* Structured replies: requested by default; normalised to 0/1. */
  CHECK_INT (nbd_get_request_structured_replies (h), 1);
  CHECK_OK (nbd_set_request_structured_replies (h, 0));
  CHECK_INT (nbd_get_request_structured_replies (h), 0);
  CHECK_OK (nbd_set_request_structured_replies (h, 7));
  CHECK_INT (nbd_get_request_structured_replies (h), 1);

  /* The export name is really sent: nbdkit's info plugin serves the
   * requested export name as the disk contents.
   */
  CHECK_OK (nbd_set_export_name (h, "hello world"));
  CHECK_OK (nbd_connect_command (h, info_server));
  CHECK_INT (nbd_get_size (h), 11);
  memset (buf, 0, sizeof buf);
  CHECK_OK (nbd_pread (h, buf, 11, 0, 0));
  CHECK (memcmp (buf, "hello world", 12) == 0);
  CHECK_STR_FREE (nbd_get_export_name (h), "hello world");

  /* Once connected, the negotiation settings are frozen. */
  CHECK_ERR (nbd_set_export_name (h, "other"), EINVAL,
             "nbd_set_export_name: invalid state: READY: the handle must "
             "be newly created, or negotiating: Invalid argument");
  CHECK_STR_FREE (nbd_get_export_name (h), "hello world");
  CHECK_ERR (nbd_set_request_structured_replies (h, 0), EINVAL,
             "nbd_set_request_structured_replies: invalid state: READY: "
             "the handle must be newly created: Invalid argument");
  CHECK_INT (nbd_get_request_structured_replies (h), 1);

  /* ... but these still work in any state. */
  CHECK_OK (nbd_set_handle_name (h, "renamed"));
  CHECK_STR_FREE (nbd_get_handle_name (h), "renamed");
  CHECK (nbd_set_private_data (h, 7) == UINTPTR_MAX);
  CHECK (nbd_get_private_data (h) == 7);
  CHECK_OK (nbd_set_debug (h, 0));
  CHECK_INT (nbd_get_debug (h), 0);

  CHECK_OK (nbd_shutdown (h, 0));
  CHECK_ERR (nbd_set_export_name (h, "other"), EINVAL,
             "nbd_set_export_name: invalid state: CLOSED: the handle must "
             "be newly created, or negotiating: Invalid argument");
  CHECK_STR_FREE (nbd_get_export_name (h), "hello world");
  CHECK (nbd_get_private_data (h) == 7);
  CHECK_STR_FREE (nbd_get_handle_name (h), "renamed");

  nbd_close (h);
  return 0;
}
