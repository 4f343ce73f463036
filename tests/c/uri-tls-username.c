/* tls-username= is not an NBD URI parameter (nbd_connect_uri(3) lists
 * tls-certificates, tls-psk-file, tls-hostname and tls-verify-peer):
 * libnbd 1.22 ignores it like any unknown parameter.  The TLS user name
 * comes from the authority (user@) only.
 */
#include "test-util.h"

int
main (void)
{
  struct nbd_handle *h = tu_create ();
  char *user;

  /* The connection itself fails; the parameters are taken before that. */
  CHECK_INT (nbd_connect_uri (h, "nbd+unix:///?socket=/nonexistent/s"
                              "&tls-username=bob"), -1);
  user = nbd_get_tls_username (h);
  if (user != NULL && strcmp (user, "bob") == 0)
    FAIL ("tls-username=bob was taken as the TLS user name");
  free (user);
  nbd_close (h);

  h = tu_create ();
  CHECK_INT (nbd_connect_uri (h, "nbd+unix://alice@/?socket=/nonexistent/s"
                              "&tls-username=bob"), -1);
  CHECK_STR_FREE (nbd_get_tls_username (h), "alice");
  nbd_close (h);
  return 0;
}
