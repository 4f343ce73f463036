/* read-first-sector: hexdump the first 512 bytes of an NBD export.
 *
 *   ./read-first-sector nbdkit -s --exit-with-parent pattern 1M
 *
 * Output: one line per 16 bytes, as
 *   OFFSET: 16 hex bytes  |printable characters|
 */
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>

#include <libnbd.h>

#define SECTOR_SIZE 512

/* Print BUF as a classic hex + ASCII dump. */
static void
hexdump (const unsigned char *buf, size_t len)
{
  size_t row, i;

  for (row = 0; row < len; row += 16) {
    printf ("%08zx:", row);
    for (i = row; i < row + 16; ++i) {
      if (i < len)
        printf (" %02x", buf[i]);
      else
        printf ("   ");
    }
    printf ("  |");
    for (i = row; i < row + 16 && i < len; ++i)
      putchar (isprint (buf[i]) ? buf[i] : '.');
    printf ("|\n");
  }
}

int
main (int argc, char *argv[])
{
  struct nbd_handle *nbd;
  unsigned char sector[SECTOR_SIZE];
  int64_t size;
  size_t len = SECTOR_SIZE;

  if (argc < 2) {
    fprintf (stderr, "usage: %s SERVER [ARGS...]\n", argv[0]);
    return EXIT_FAILURE;
  }

  nbd = nbd_create ();
  if (nbd == NULL) {
    fprintf (stderr, "nbd_create: %s\n", nbd_get_error ());
    return EXIT_FAILURE;
  }

  if (nbd_connect_command (nbd, &argv[1]) == -1)
    goto error;

  /* An export smaller than a sector cannot be read as a full sector:
   * libnbd refuses requests that extend past the end.
   */
  size = nbd_get_size (nbd);
  if (size == -1)
    goto error;
  if (size == 0) {
    fprintf (stderr, "%s: the export is empty\n", argv[0]);
    nbd_close (nbd);
    return EXIT_FAILURE;
  }
  if (size < SECTOR_SIZE)
    len = (size_t) size;

  /* Read synchronously: the call returns once all the data is here. */
  if (nbd_pread (nbd, sector, len, 0, 0) == -1)
    goto error;

  hexdump (sector, len);

  if (nbd_shutdown (nbd, 0) == -1)
    goto error;
  nbd_close (nbd);
  return EXIT_SUCCESS;

 error:
  fprintf (stderr, "%s\n", nbd_get_error ());
  nbd_close (nbd);
  return EXIT_FAILURE;
}
