/* Compiled (not run) by tests/header/attributes.sh, as C and as C++, with
 * our header and with the oracle's: each line marked "WARN: nonnull" must
 * draw a -Wnonnull warning (GCC 12 or later), and no other line may; the
 * free () of a handle must draw -Wmismatched-dealloc.  Both headers must
 * give exactly the same warnings.
 */
#include <stddef.h>
#include <stdlib.h>
#include <libnbd.h>

int nonnull_uses (struct nbd_handle *h, char *buf, char **argv);
int dealloc_uses (void);

int
nonnull_uses (struct nbd_handle *h, char *buf, char **argv)
{
  int r = 0;

  nbd_close (NULL);                             /* NULL is allowed here */
  r += (int) nbd_get_size (NULL);               /* WARN: nonnull */
  r += nbd_set_export_name (h, NULL);           /* WARN: nonnull */
  r += nbd_pread (h, NULL, 512, 0, 0);          /* WARN: nonnull */
  r += nbd_pwrite (NULL, buf, 512, 0, 0);       /* WARN: nonnull */
  r += nbd_connect_command (h, NULL);           /* WARN: nonnull */
  r += nbd_connect_uri (h, NULL);               /* WARN: nonnull */
  r += nbd_add_meta_context (h, NULL);          /* WARN: nonnull */
  r += nbd_is_uri (h, NULL);                    /* WARN: nonnull */
  r += nbd_get_errno ();
  r += nbd_pread (h, buf, 512, 0, 0);
  r += nbd_connect_command (h, argv);
  return r;
}

int
dealloc_uses (void)
{
  struct nbd_handle *h = nbd_create ();
  char *name;

  if (h == NULL)
    return -1;
  name = nbd_get_export_name (h);
  free (name);                                  /* the right deallocator */
  free (h);                                     /* WARN: mismatched-dealloc */
  return 0;
}
