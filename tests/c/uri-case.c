/* NBD URI schemes and parameter names are case-insensitive (RFC 3986;
 * libnbd 1.22 agrees), for nbd_is_uri and nbd_connect_uri alike;
 * nbd_is_uri wants "://" after the scheme.  A scheme shows in messages
 * as written.
 */
#include "test-util.h"

#include <sys/socket.h>
#include <sys/un.h>

static char sockpath[128];

static pid_t
start_server (void)
{
  return tu_start_nbdkit_unix ("uri-case", sockpath, sizeof sockpath);
}

int
main (void)
{
  pid_t server = start_server ();
  struct nbd_handle *h = tu_create ();
  char uri[512];

  CHECK_INT (nbd_is_uri (h, "NBD+UNIX:///?socket=/s"), 1);
  CHECK_INT (nbd_is_uri (h, "Nbds://host/"), 1);
  CHECK_INT (nbd_is_uri (h, "nBd+VsOcK://1"), 1);
  CHECK_INT (nbd_is_uri (h, "NBD+SSH://host"), 1);
  CHECK_INT (nbd_is_uri (h, "nbd:"), 0);
  CHECK_INT (nbd_is_uri (h, "NBD:x"), 0);
  CHECK_INT (nbd_is_uri (h, "nbdx://"), 0);

  /* An upper-case scheme names the same transport; its name shows as
   * written in messages.
   */
  CHECK_ERR (nbd_connect_uri (h, "NBD+UNIX:///"), EINVAL,
             "nbd_connect_uri: cannot parse socket parameter from NBD URI "
             "(did you mean to use \"NBD+UNIX:///?socket=...\"?): "
             "Invalid argument");
  nbd_close (h);
  h = tu_create ();
  CHECK_ERR (nbd_connect_uri (h, "NBD:x"), EINVAL,
             "nbd_connect_uri: URI must begin with 'NBD://': Invalid argument");
  nbd_close (h);

  /* Upper-case scheme and parameter names connect. */
  h = tu_create ();
  snprintf (uri, sizeof uri,
            "NBD+Unix:///?SOCKET=%s&TLS-Hostname=example.com"
            "&Tls-Verify-Peer=false", sockpath);
  CHECK_OK (nbd_connect_uri (h, uri));
  CHECK_INT (nbd_aio_is_ready (h), 1);
  CHECK_STR_FREE (nbd_get_tls_hostname (h), "example.com");
  CHECK_INT (nbd_get_tls_verify_peer (h), 0);
  nbd_close (h);

  kill (server, SIGTERM);
  waitpid (server, NULL, 0);
  unlink (sockpath);
  return 0;
}
