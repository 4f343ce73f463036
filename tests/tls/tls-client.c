/* tls-client: one TLS connection made with the public libnbd API, for
 * tests/tls-verify.sh, which runs the same cases on our library and on
 * libnbd 1.22.2 and expects the same outcome from both.
 *
 *   tls-client [OPTION...] unix SOCKET
 *   tls-client [OPTION...] tcp HOST PORT
 *   tls-client [OPTION...] command ARGV...
 *   tls-client [OPTION...] activation ARGV...
 *   tls-client [OPTION...] uri URI
 *
 * Options (applied in this order, before connecting):
 *   --tls=allow|require      the TLS setting (default: require)
 *   --certs=DIR              nbd_set_tls_certificates
 *   --no-verify              nbd_set_tls_verify_peer (h, false)
 *   --hostname=NAME          nbd_set_tls_hostname
 *   --psk=FILE --user=NAME   nbd_set_tls_psk_file, nbd_set_tls_username
 *
 * On success it writes a sector, reads it back, checks it, and prints
 * "OK tls=N" (N from nbd_get_tls_negotiated), then shuts down cleanly.
 * A failed connect prints "ERR errno=E dead=D: MESSAGE" on stdout and
 * exits 1; anything else that goes wrong exits 2.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

static void
usage (void)
{
  fprintf (stderr,
           "usage: tls-client [--tls=allow|require] [--certs=DIR] "
           "[--no-verify] [--hostname=NAME] [--psk=FILE --user=NAME] "
           "unix SOCKET | tcp HOST PORT | command ARGV... | activation ARGV... "
           "| uri URI\n");
  exit (2);
}

/* Report a failed libnbd call other than the connect and exit 2. */
static void
die (const char *what)
{
  fprintf (stderr, "tls-client: %s: errno=%d: %s\n",
           what, nbd_get_errno (), nbd_get_error ());
  exit (2);
}

static int
connect_handle (struct nbd_handle *h, int argc, char **argv)
{
  const char *how = argv[0];

  if (strcmp (how, "unix") == 0 && argc == 2)
    return nbd_connect_unix (h, argv[1]);
  if (strcmp (how, "tcp") == 0 && argc == 3)
    return nbd_connect_tcp (h, argv[1], argv[2]);
  if (strcmp (how, "command") == 0 && argc >= 2)
    return nbd_connect_command (h, &argv[1]);
  if (strcmp (how, "activation") == 0 && argc >= 2)
    return nbd_connect_systemd_socket_activation (h, &argv[1]);
  if (strcmp (how, "uri") == 0 && argc == 2) {
    /* The tests name their certificate directories in URIs. */
    if (nbd_set_uri_allow_local_file (h, true) == -1)
      die ("nbd_set_uri_allow_local_file");
    return nbd_connect_uri (h, argv[1]);
  }
  usage ();
  return -1;
}

/* Write a sector of a pattern, read it back and compare. */
static void
check_io (struct nbd_handle *h)
{
  char out[512], in[512];
  size_t i;

  for (i = 0; i < sizeof out; i++)
    out[i] = (char) (i * 7 + 3);
  if (nbd_pwrite (h, out, sizeof out, 0, 0) == -1)
    die ("nbd_pwrite");
  memset (in, 0, sizeof in);
  if (nbd_pread (h, in, sizeof in, 0, 0) == -1)
    die ("nbd_pread");
  if (memcmp (in, out, sizeof in) != 0) {
    fprintf (stderr, "tls-client: data read back differs\n");
    exit (2);
  }
}

int
main (int argc, char **argv)
{
  struct nbd_handle *h;
  int tls = LIBNBD_TLS_REQUIRE;
  const char *certs = NULL, *hostname = NULL, *psk = NULL, *user = NULL;
  bool verify = true;
  int i, negotiated;

  for (i = 1; i < argc && strncmp (argv[i], "--", 2) == 0; i++) {
    const char *a = argv[i];
    if (strcmp (a, "--tls=allow") == 0)
      tls = LIBNBD_TLS_ALLOW;
    else if (strcmp (a, "--tls=require") == 0)
      tls = LIBNBD_TLS_REQUIRE;
    else if (strncmp (a, "--certs=", 8) == 0)
      certs = a + 8;
    else if (strcmp (a, "--no-verify") == 0)
      verify = false;
    else if (strncmp (a, "--hostname=", 11) == 0)
      hostname = a + 11;
    else if (strncmp (a, "--psk=", 6) == 0)
      psk = a + 6;
    else if (strncmp (a, "--user=", 7) == 0)
      user = a + 7;
    else
      usage ();
  }
  if (i >= argc)
    usage ();

  h = nbd_create ();
  if (h == NULL)
    die ("nbd_create");
  /* A URI sets TLS from its scheme; the options then only add. */
  if (strcmp (argv[i], "uri") != 0 && nbd_set_tls (h, tls) == -1)
    die ("nbd_set_tls");
  if (certs && nbd_set_tls_certificates (h, certs) == -1)
    die ("nbd_set_tls_certificates");
  if (!verify && nbd_set_tls_verify_peer (h, false) == -1)
    die ("nbd_set_tls_verify_peer");
  if (hostname && nbd_set_tls_hostname (h, hostname) == -1)
    die ("nbd_set_tls_hostname");
  if (psk && nbd_set_tls_psk_file (h, psk) == -1)
    die ("nbd_set_tls_psk_file");
  if (user && nbd_set_tls_username (h, user) == -1)
    die ("nbd_set_tls_username");

  if (connect_handle (h, argc - i, &argv[i]) == -1) {
    int err = nbd_get_errno ();
    const char *msg = nbd_get_error ();
    printf ("ERR errno=%d dead=%d: %s\n",
            err, nbd_aio_is_dead (h), msg ? msg : "(null)");
    nbd_close (h);
    return 1;
  }

  negotiated = nbd_get_tls_negotiated (h);
  if (negotiated == -1)
    die ("nbd_get_tls_negotiated");
  check_io (h);
  if (nbd_shutdown (h, 0) == -1)
    die ("nbd_shutdown");
  nbd_close (h);
  printf ("OK tls=%d\n", negotiated);
  return 0;
}
