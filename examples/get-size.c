/* get-size: print the size in bytes of an NBD export.
 *
 * The server is started as a subprocess; its command line is given as
 * the program arguments, for example:
 *
 *   ./get-size nbdkit -s --exit-with-parent pattern 1M
 *
 * prints 1048576.  The server must speak NBD on stdin/stdout (for
 * nbdkit that is what -s does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>

#include <libnbd.h>

int
main (int argc, char *argv[])
{
  struct nbd_handle *nbd;
  int64_t size;

  if (argc < 2) {
    fprintf (stderr, "usage: %s SERVER [ARGS...]\n", argv[0]);
    return EXIT_FAILURE;
  }

  /* Every libnbd program starts with a handle. */
  nbd = nbd_create ();
  if (nbd == NULL) {
    fprintf (stderr, "nbd_create: %s\n", nbd_get_error ());
    return EXIT_FAILURE;
  }

  /* Run the server and do the NBD handshake with it.  argv is
   * NULL-terminated, so the tail of our own argv can be passed as is.
   */
  if (nbd_connect_command (nbd, &argv[1]) == -1) {
    fprintf (stderr, "%s\n", nbd_get_error ());
    nbd_close (nbd);
    return EXIT_FAILURE;
  }

  /* The size was learned during the handshake: no round trip here. */
  size = nbd_get_size (nbd);
  if (size == -1) {
    fprintf (stderr, "%s\n", nbd_get_error ());
    nbd_close (nbd);
    return EXIT_FAILURE;
  }
  printf ("%" PRIi64 "\n", size);

  /* Tell the server we are done, then free the handle (which also
   * waits for the server process).
   */
  if (nbd_shutdown (nbd, 0) == -1) {
    fprintf (stderr, "%s\n", nbd_get_error ());
    nbd_close (nbd);
    return EXIT_FAILURE;
  }
  nbd_close (nbd);
  return EXIT_SUCCESS;
}
