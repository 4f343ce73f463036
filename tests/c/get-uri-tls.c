/* nbd_get_uri writes tls-hostname= and tls-verify-peer=false when they
 * were set (by hand or by the URI connected to), as libnbd 1.22 does.
 */
#include "test-util.h"

#include <sys/socket.h>
#include <sys/un.h>

static char sockpath[128];

static pid_t
start_server (void)
{
  return tu_start_nbdkit_unix ("get-uri-tls", sockpath, sizeof sockpath);
}

int
main (void)
{
  pid_t server = start_server ();
  struct nbd_handle *h = tu_create ();
  char uri[512], want[512];

  /* Set by the URI. */
  snprintf (uri, sizeof uri,
            "nbd+unix:///?socket=%s&tls-hostname=example.com"
            "&tls-verify-peer=false", sockpath);
  CHECK_OK (nbd_connect_uri (h, uri));
  CHECK_STR_FREE (nbd_get_uri (h), uri);
  nbd_close (h);

  /* Set by hand. */
  h = tu_create ();
  CHECK_OK (nbd_set_tls_hostname (h, "server.example"));
  CHECK_OK (nbd_set_tls_verify_peer (h, false));
  CHECK_OK (nbd_set_export_name (h, "e"));
  CHECK_OK (nbd_connect_unix (h, sockpath));
  snprintf (want, sizeof want,
            "nbd+unix:///e?socket=%s&tls-hostname=server.example"
            "&tls-verify-peer=false", sockpath);
  CHECK_STR_FREE (nbd_get_uri (h), want);
  nbd_close (h);

  /* The defaults add neither. */
  h = tu_create ();
  CHECK_OK (nbd_connect_unix (h, sockpath));
  snprintf (want, sizeof want, "nbd+unix:///?socket=%s", sockpath);
  CHECK_STR_FREE (nbd_get_uri (h), want);
  nbd_close (h);

  kill (server, SIGTERM);
  waitpid (server, NULL, 0);
  unlink (sockpath);
  return 0;
}
