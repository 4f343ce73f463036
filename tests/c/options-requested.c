/* Which options a plain connect sends, depending on the request
 * settings: with nbd_set_request_structured_replies (h, false) neither
 * structured replies nor extended headers are asked for, even though
 * extended headers are requested (the default).  Scripted server
 * (fake-server.h) that records the options it receives.
 */
#include "fake-server.h"

static void
check (bool sr, bool eh, bool server_eh, const char *expected,
       bool sr_negotiated, bool eh_negotiated)
{
  struct nbd_handle *h = tu_create ();
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true, .extended = server_eh };
  const unsigned char *opts;
  char got[64] = "";
  size_t i;

  CHECK_OK (nbd_set_request_structured_replies (h, sr));
  CHECK_OK (nbd_set_request_extended_headers (h, eh));
  CHECK_OK (fake_start (h, &cfg, NULL, NULL, &srv));
  CHECK_INT (nbd_get_structured_replies_negotiated (h), sr_negotiated);
  CHECK_INT (nbd_get_extended_headers_negotiated (h), eh_negotiated);
  CHECK_OK (nbd_shutdown (h, 0));
  nbd_close (h);
  opts = fake_wait (&srv);
  for (i = 0; opts[i]; ++i)
    snprintf (got + strlen (got), sizeof got - strlen (got), "%s%d",
              i ? " " : "", opts[i]);
  if (strcmp (got, expected) != 0)
    FAIL ("sr=%d eh=%d: options sent: \"%s\", expected \"%s\"",
          sr, eh, got, expected);
}

int
main (void)
{
  /* 11 = EXTENDED_HEADERS, 8 = STRUCTURED_REPLY, 7 = GO */
  check (true, true, true, "11 7", true, true);
  check (true, true, false, "11 8 7", true, false);
  check (true, false, true, "8 7", true, false);
  check (false, true, true, "7", false, false);
  check (false, false, true, "7", false, false);
  return 0;
}
