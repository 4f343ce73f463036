/* Values the typed Rust API cannot express, through the C API: TLS
 * settings out of range and transport masks with unknown bits are
 * refused with EINVAL and libnbd's message, and change nothing; the
 * TLS host name of a fresh handle is the empty string. The handle's
 * state is checked first, as libnbd does.
 */
#include "test-util.h"

int
main (void)
{
  struct nbd_handle *h = tu_create ();

  CHECK_INT (nbd_get_tls (h), LIBNBD_TLS_DISABLE);
  CHECK_ERR (nbd_set_tls (h, 3), EINVAL,
             "nbd_set_tls: tls: invalid value for parameter: 3: "
             "Invalid argument");
  CHECK_ERR (nbd_set_tls (h, -1), EINVAL,
             "nbd_set_tls: tls: invalid value for parameter: -1: "
             "Invalid argument");
  CHECK_INT (nbd_get_tls (h), LIBNBD_TLS_DISABLE);
  CHECK_OK (nbd_set_tls (h, LIBNBD_TLS_REQUIRE));
  CHECK_INT (nbd_get_tls (h), LIBNBD_TLS_REQUIRE);

  CHECK_ERR (nbd_set_uri_allow_tls (h, 5), EINVAL,
             "nbd_set_uri_allow_tls: tls: invalid value for parameter: 5: "
             "Invalid argument");
  CHECK_OK (nbd_set_uri_allow_tls (h, LIBNBD_TLS_DISABLE));

  CHECK_ERR (nbd_set_uri_allow_transports (h, 0x10), EINVAL,
             "nbd_set_uri_allow_transports: mask: invalid value for flag: "
             "0x10: Invalid argument");
  CHECK_ERR (nbd_set_uri_allow_transports (h, 0x100 | LIBNBD_ALLOW_TRANSPORT_TCP),
             EINVAL,
             "nbd_set_uri_allow_transports: mask: invalid value for flag: "
             "0x101: Invalid argument");
  CHECK_OK (nbd_set_uri_allow_transports (h, LIBNBD_ALLOW_TRANSPORT_TCP));

  CHECK_STR_FREE (nbd_get_tls_hostname (h), "");

  /* libnbd checks the handle's state before such a value: a handle that
   * cannot take the setting (or answer) says so whatever the value.
   */
  CHECK_ERR (nbd_get_block_size (h, 9), ENOTCONN,
             "nbd_get_block_size: invalid state: START: the handle must be "
             "negotiating, or connected with the server, or shut down: "
             "Transport endpoint is not connected");
  nbd_close (h);
  h = tu_create ();
  CHECK_OK (nbd_set_opt_mode (h, true));
  CHECK_OK (nbd_connect_command (h, (char *[]) { NBDKIT, "memory", "1M",
                                                 NULL }));
  CHECK_ERR (nbd_set_tls (h, 7), EINVAL,
             "nbd_set_tls: invalid state: NEGOTIATING: the handle must be "
             "newly created: Invalid argument");
  CHECK_ERR (nbd_set_uri_allow_tls (h, 5), EINVAL,
             "nbd_set_uri_allow_tls: invalid state: NEGOTIATING: the handle "
             "must be newly created: Invalid argument");
  CHECK_ERR (nbd_get_block_size (h, 9), EINVAL,
             "nbd_get_block_size: size_type: invalid value for parameter: 9: "
             "Invalid argument");

  nbd_close (h);
  printf ("enum-edge: ok\n");
  return 0;
}
