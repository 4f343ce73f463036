/* nbd_aio_connect decodes the caller's struct sockaddr before connecting:
 * an address family the library cannot connect to fails at once with
 * EAFNOSUPPORT and leaves the handle newly created (libnbd 1.22.2 tries
 * socket(2) and leaves the handle dead); an address too short for its
 * family fails with EINVAL, the handle still newly created (libnbd 1.22.2
 * fails in connect(2), the handle dead).  IPv4 and Unix addresses reach their listeners.
 */
#include "test-util.h"

#include <netinet/in.h>
#include <stddef.h>
#include <sys/un.h>

int
main (void)
{
  struct nbd_handle *h;
  struct sockaddr sa;
  struct sockaddr_in sin;
  struct sockaddr_un sun;
  socklen_t len;
  int l;

  /* A family nobody connects NBD over. */
  h = tu_create ();
  memset (&sa, 0, sizeof sa);
  sa.sa_family = AF_APPLETALK;
  CHECK_ERR (nbd_aio_connect (h, &sa, sizeof sa), EAFNOSUPPORT,
             "nbd_aio_connect: addr: address family 5 is not supported: "
             "Address family not supported by protocol");
  CHECK_INT (nbd_aio_is_created (h), 1);

  /* An address too short for its family. */
  memset (&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  CHECK_ERR (nbd_aio_connect (h, (struct sockaddr *) &sin, 4), EINVAL,
             "nbd_aio_connect: addrlen: 4 is too short for the address: "
             "Invalid argument");
  CHECK_INT (nbd_aio_is_created (h), 1);

  /* IPv4: a listener on the loopback has the connection. */
  l = socket (AF_INET, SOCK_STREAM, 0);
  CHECK (l >= 0);
  sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  CHECK (bind (l, (struct sockaddr *) &sin, sizeof sin) == 0);
  CHECK (listen (l, 1) == 0);
  len = sizeof sin;
  CHECK (getsockname (l, (struct sockaddr *) &sin, &len) == 0);
  CHECK_OK (nbd_aio_connect (h, (struct sockaddr *) &sin, sizeof sin));
  CHECK_INT (nbd_aio_is_connecting (h), 1);
  nbd_close (h);
  close (l);

  /* Unix, the address length covering only the path. */
  h = tu_create ();
  l = socket (AF_UNIX, SOCK_STREAM, 0);
  CHECK (l >= 0);
  memset (&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  snprintf (sun.sun_path, sizeof sun.sun_path, "/tmp/aio-connect-%d",
            (int) getpid ());
  unlink (sun.sun_path);
  CHECK (bind (l, (struct sockaddr *) &sun, sizeof sun) == 0);
  CHECK (listen (l, 1) == 0);
  len = offsetof (struct sockaddr_un, sun_path) + strlen (sun.sun_path);
  CHECK_OK (nbd_aio_connect (h, (struct sockaddr *) &sun, len));
  CHECK (accept (l, NULL, NULL) >= 0);
  CHECK_INT (nbd_aio_is_connecting (h), 1);
  nbd_close (h);
  close (l);
  unlink (sun.sun_path);
  return 0;
}
