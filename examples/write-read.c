/* write-read: write data to an in-memory NBD disk and read it back.
 *
 * Takes no arguments: runs "nbdkit -s --exit-with-parent memory 1M"
 * itself.  Exits 0 if the data read back is identical to the data
 * written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <libnbd.h>

#define BLOCK 4096

/* Print the last libnbd error and give up. */
static void
die (struct nbd_handle *nbd)
{
  fprintf (stderr, "write-read: %s\n", nbd_get_error ());
  nbd_close (nbd);
  exit (EXIT_FAILURE);
}

int
main (void)
{
  char *server[] = {
    "nbdkit",
    "-s",                     /* serve one client on stdin/stdout */
    "--exit-with-parent",     /* never outlive this program */
    "memory", "1M",           /* a 1 MiB RAM disk, initially zero */
    NULL
  };
  struct nbd_handle *nbd;
  static unsigned char out[BLOCK], in[BLOCK];
  const uint64_t offset = 65536;
  size_t i;

  nbd = nbd_create ();
  if (nbd == NULL) {
    fprintf (stderr, "write-read: nbd_create: %s\n", nbd_get_error ());
    return EXIT_FAILURE;
  }
  if (nbd_connect_command (nbd, server) == -1)
    die (nbd);

  /* Some recognisable, non-repeating test data. */
  for (i = 0; i < BLOCK; ++i)
    out[i] = (unsigned char) (i * 7 + i / 251);

  /* Write it.  LIBNBD_CMD_FLAG_FUA asks the server to make the write
   * durable before replying; only use it if the server supports it.
   */
  if (nbd_pwrite (nbd, out, BLOCK, offset,
                  nbd_can_fua (nbd) == 1 ? LIBNBD_CMD_FLAG_FUA : 0) == -1)
    die (nbd);

  /* Read the same range back and compare. */
  if (nbd_pread (nbd, in, BLOCK, offset, 0) == -1)
    die (nbd);
  if (memcmp (in, out, BLOCK) != 0) {
    fprintf (stderr, "write-read: data read back differs from data written\n");
    nbd_close (nbd);
    return EXIT_FAILURE;
  }

  /* Bytes just before the write were never written: still zero. */
  if (nbd_pread (nbd, in, 512, offset - 512, 0) == -1)
    die (nbd);
  for (i = 0; i < 512; ++i) {
    if (in[i] != 0) {
      fprintf (stderr, "write-read: unwritten byte %zu is not zero\n", i);
      nbd_close (nbd);
      return EXIT_FAILURE;
    }
  }

  if (nbd_shutdown (nbd, 0) == -1)
    die (nbd);
  nbd_close (nbd);

  printf ("wrote and read back %d bytes at offset %llu: OK\n",
          BLOCK, (unsigned long long) offset);
  return EXIT_SUCCESS;
}
