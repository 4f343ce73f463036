/* Print the file name of the libnbd shared object mapped into this
 * process (from /proc/self/maps).  The test runner compares it with
 * the library it means to test; on its own this program only checks
 * that exactly one libnbd is loaded.
 */
#include "test-util.h"

int
main (void)
{
  FILE *fp;
  char line[4096];
  char found[4096] = "";
  struct nbd_handle *h;

  /* Make sure the library is really used (and so really linked). */
  h = tu_create ();
  nbd_close (h);

  fp = fopen ("/proc/self/maps", "r");
  if (fp == NULL)
    FAIL ("/proc/self/maps: %s", strerror (errno));
  while (fgets (line, sizeof line, fp) != NULL) {
    char *path = strchr (line, '/');
    char *base;

    if (path == NULL)
      continue;
    path[strcspn (path, "\n")] = '\0';
    base = strrchr (path, '/') + 1;
    if (strncmp (base, "libnbd.so", 9) != 0)
      continue;
    if (found[0] == '\0')
      snprintf (found, sizeof found, "%s", path);
    else if (strcmp (found, path) != 0)
      FAIL ("two different libnbd objects loaded: %s and %s", found, path);
  }
  fclose (fp);
  if (found[0] == '\0')
    FAIL ("no libnbd.so* mapped into this process");
  printf ("%s\n", found);
  return 0;
}
