/* ssh-client: one nbd_connect_uri through Secure Shell, made with the
 * public libnbd API, for tests/ssh-uri.sh, which runs it on our library
 * and on libnbd 1.22.2.
 *
 *   ssh-client [--allow=MASK] URI
 *
 * --allow calls nbd_set_uri_allow_transports (h, MASK) first and prints
 * "allow=R" (R its result). Local files may be named in the URI.
 *
 * Connected, it writes a sector, reads it back and checks it, then prints
 *   OK size=SIZE export=NAME tls=N pid=P uri=URI
 * (P is 1 when nbd_get_subprocess_pid gave a pid; URI is what
 * nbd_get_uri returned, or "error:ERRNO"), kills the subprocess with
 * nbd_kill_subprocess and checks that the next read fails.
 * A failed connect prints "ERR errno=E dead=D: MESSAGE" and exits 1;
 * anything else that goes wrong exits 2.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

static void
die (const char *what)
{
  fprintf (stderr, "ssh-client: %s: errno=%d: %s\n",
           what, nbd_get_errno (), nbd_get_error ());
  exit (2);
}

int
main (int argc, char **argv)
{
  struct nbd_handle *h;
  const char *uri;
  char out[512], in[512], *got;
  int64_t size;
  char *export;
  size_t i;

  if (argc == 3 && strncmp (argv[1], "--allow=", 8) == 0)
    uri = argv[2];
  else if (argc == 2)
    uri = argv[1];
  else {
    fprintf (stderr, "usage: ssh-client [--allow=MASK] URI\n");
    exit (2);
  }

  /* Each line out at once: the test may stop a client slow to close. */
  setvbuf (stdout, NULL, _IOLBF, 0);

  h = nbd_create ();
  if (h == NULL)
    die ("nbd_create");
  if (argc == 3)
    printf ("allow=%d\n",
            nbd_set_uri_allow_transports (h, strtoul (argv[1] + 8, NULL, 0)));
  if (nbd_set_uri_allow_local_file (h, true) == -1)
    die ("nbd_set_uri_allow_local_file");
  if (nbd_is_uri (h, uri) != 1)
    die ("nbd_is_uri");

  if (nbd_connect_uri (h, uri) == -1) {
    const char *msg = nbd_get_error ();
    printf ("ERR errno=%d dead=%d: %s\n",
            nbd_get_errno (), nbd_aio_is_dead (h), msg ? msg : "(null)");
    nbd_close (h);
    return 1;
  }

  for (i = 0; i < sizeof out; i++)
    out[i] = (char) (i * 13 + 5);
  if (nbd_pwrite (h, out, sizeof out, 512, 0) == -1)
    die ("nbd_pwrite");
  if (nbd_pread (h, in, sizeof in, 512, 0) == -1)
    die ("nbd_pread");
  if (memcmp (in, out, sizeof in) != 0) {
    fprintf (stderr, "ssh-client: data read back differs\n");
    exit (2);
  }
  size = nbd_get_size (h);
  export = nbd_get_export_name (h);
  if (export == NULL)
    die ("nbd_get_export_name");
  got = nbd_get_uri (h);
  printf ("OK size=%lld export=%s tls=%d pid=%d uri=",
          (long long) size, export, nbd_get_tls_negotiated (h),
          nbd_get_subprocess_pid (h) > 0);
  if (got)
    printf ("%s\n", got);
  else
    printf ("error:%d\n", nbd_get_errno ());
  free (got);
  free (export);
  fflush (stdout);

  /* The tunnel is the subprocess: killing it ends the connection. */
  if (nbd_kill_subprocess (h, 0) == -1)
    die ("nbd_kill_subprocess");
  if (nbd_pread (h, in, sizeof in, 0, 0) != -1) {
    fprintf (stderr, "ssh-client: read after nbd_kill_subprocess worked\n");
    exit (2);
  }
  nbd_close (h);
  return 0;
}
