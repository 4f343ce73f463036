/* Handshake and strictness settings, export introspection, debug
 * messages (on stderr and through a callback) and, where the library
 * has them, traffic statistics.  Runs on libnbd 1.14 as well: calls
 * added later are guarded by their LIBNBD_HAVE_* macros.
 */
#include "test-util.h"

/* ---- debug callback bookkeeping ---------------------------------------- */

struct dbg {
  const char *tag;
  int calls;
  int frees;
  int saw_connect_enter;        /* context nbd_connect_command, "enter:" */
  int saw_leave_ok;             /* "leave: ret=0" */
  int saw_enter;                /* "enter:" from nbd_get_size */
  int bad_context;              /* a NULL or non-"nbd_" context */
};

static int
debug_cb (void *user_data, const char *context, const char *msg)
{
  struct dbg *d = user_data;

  d->calls++;
  if (context == NULL || strncmp (context, "nbd_", 4) != 0)
    d->bad_context++;
  else {
    if (strcmp (context, "nbd_connect_command") == 0 &&
        strncmp (msg, "enter:", 6) == 0)
      d->saw_connect_enter++;
    if (strcmp (context, "nbd_get_size") == 0 &&
        strncmp (msg, "enter:", 6) == 0)
      d->saw_enter++;
  }
  if (strcmp (msg, "leave: ret=0") == 0)
    d->saw_leave_ok++;
  return 0;
}

static void
debug_free (void *user_data)
{
  struct dbg *d = user_data;
  d->frees++;
}

static nbd_debug_callback
callback_for (struct dbg *d)
{
  nbd_debug_callback cb = { .callback = debug_cb, .user_data = d,
                            .free = debug_free };
  return cb;
}

/* ---- stderr capture ------------------------------------------------------ */

static FILE *capture_file;
static int saved_stderr = -1;

static void
capture_start (void)
{
  fflush (stderr);
  capture_file = tmpfile ();
  CHECK (capture_file != NULL);
  saved_stderr = dup (2);
  CHECK (saved_stderr >= 0);
  CHECK (dup2 (fileno (capture_file), 2) == 2);
}

/* Stops capturing; returns the text (malloc'd). */
static char *
capture_stop (void)
{
  long len;
  char *text;

  fflush (stderr);
  CHECK (dup2 (saved_stderr, 2) == 2);
  close (saved_stderr);
  len = ftell (capture_file);
  CHECK (len >= 0);
  text = malloc (len + 1);
  CHECK (text != NULL);
  rewind (capture_file);
  CHECK (fread (text, 1, len, capture_file) == (size_t) len);
  text[len] = '\0';
  fclose (capture_file);
  return text;
}

/* Every line of TEXT must be a debug line of handle NAME; at least one
 * must carry context CONTEXT.
 */
static void
check_debug_lines (const char *text, const char *name, const char *context)
{
  char prefix[128], with_context[256];
  const char *line = text;
  int nlines = 0, found = 0;

  snprintf (prefix, sizeof prefix, "libnbd: debug: %s: ", name);
  snprintf (with_context, sizeof with_context, "%s%s: ", prefix, context);
  while (*line) {
    const char *end = strchr (line, '\n');
    size_t n = end ? (size_t) (end - line) : strlen (line);

    nlines++;
    if (strncmp (line, prefix, strlen (prefix)) != 0)
      FAIL ("unexpected stderr line: %.*s", (int) n, line);
    if (strncmp (line, with_context, strlen (with_context)) == 0)
      found++;
    line += n + (end != NULL);
  }
  if (nlines == 0)
    FAIL ("no debug output captured");
  if (!found)
    FAIL ("no debug line with context %s in:\n%s", context, text);
}

/* ---- the tests ------------------------------------------------------------- */

static void
test_settings_before_connect (void)
{
  struct nbd_handle *h = tu_create ();
  char msg[256];

  CHECK_INT (nbd_get_handshake_flags (h),
             LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE |
             LIBNBD_HANDSHAKE_FLAG_NO_ZEROES);
  CHECK_OK (nbd_set_handshake_flags (h, LIBNBD_HANDSHAKE_FLAG_NO_ZEROES));
  CHECK_INT (nbd_get_handshake_flags (h), LIBNBD_HANDSHAKE_FLAG_NO_ZEROES);
  CHECK_OK (nbd_set_handshake_flags (h, LIBNBD_HANDSHAKE_FLAG_MASK));
  CHECK_ERR (nbd_set_handshake_flags (h, 4), EINVAL,
             "nbd_set_handshake_flags: flags: invalid value for flag: 0x4: "
             "Invalid argument");
  CHECK_INT (nbd_get_handshake_flags (h), LIBNBD_HANDSHAKE_FLAG_MASK);

  /* Strict mode: everything on by default; bits beyond the mask refused. */
  CHECK_INT (nbd_get_strict_mode (h), LIBNBD_STRICT_MASK);
  CHECK_OK (nbd_set_strict_mode (h, LIBNBD_STRICT_BOUNDS));
  CHECK_INT (nbd_get_strict_mode (h), LIBNBD_STRICT_BOUNDS);
  snprintf (msg, sizeof msg,
            "nbd_set_strict_mode: flags: invalid value for flag: 0x%x: "
            "Invalid argument", (unsigned) LIBNBD_STRICT_MASK + 1);
  CHECK_ERR (nbd_set_strict_mode (h, LIBNBD_STRICT_MASK + 1), EINVAL, msg);
  CHECK_INT (nbd_get_strict_mode (h), LIBNBD_STRICT_BOUNDS);

  CHECK_INT (nbd_get_pread_initialize (h), 1);
  CHECK_OK (nbd_set_pread_initialize (h, false));
  CHECK_INT (nbd_get_pread_initialize (h), 0);
  CHECK_INT (nbd_get_request_block_size (h), 1);
  CHECK_OK (nbd_set_request_block_size (h, false));
  CHECK_INT (nbd_get_request_block_size (h), 0);
  CHECK_INT (nbd_get_full_info (h), 0);
  CHECK_OK (nbd_set_full_info (h, true));
  CHECK_INT (nbd_get_full_info (h), 1);

  /* What only the server can tell is not there yet. */
  CHECK_ERR (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), ENOTCONN,
             "nbd_get_block_size: invalid state: START: the handle must be "
             "negotiating, or connected with the server, or shut down: "
             "Transport endpoint is not connected");
  CHECK_ERR_NULL (nbd_get_canonical_export_name (h), ENOTCONN,
                  "nbd_get_canonical_export_name: invalid state: START: the "
                  "handle must be negotiating, or connected with the server, "
                  "or shut down: Transport endpoint is not connected");
  CHECK_ERR_NULL (nbd_get_export_description (h), ENOTCONN,
                  "nbd_get_export_description: invalid state: START: the "
                  "handle must be negotiating, or connected with the server, "
                  "or shut down: Transport endpoint is not connected");
  CHECK_ERR (nbd_is_rotational (h), ENOTCONN,
             "nbd_is_rotational: invalid state: START: the handle must be "
             "negotiating, or connected with the server, or shut down: "
             "Transport endpoint is not connected");
  CHECK_INT (nbd_can_df (h), -1);
  CHECK_INT (nbd_can_fast_zero (h), -1);
#ifdef LIBNBD_HAVE_NBD_STATS_BYTES_SENT
  CHECK_INT (nbd_stats_bytes_sent (h), 0);
  CHECK_INT (nbd_stats_chunks_sent (h), 0);
  CHECK_INT (nbd_stats_bytes_received (h), 0);
  CHECK_INT (nbd_stats_chunks_received (h), 0);
#endif
  nbd_close (h);
}

static void
test_connected (void)
{
  char *argv[] = { NBDKIT, "--filter=blocksize-policy", "memory", "1M",
                   "blocksize-minimum=4096", "blocksize-preferred=65536",
                   "blocksize-maximum=1048576", NULL };
  struct nbd_handle *h = tu_connect (argv);

  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), 4096);
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_PREFERRED), 65536);
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM), 1048576);
#ifdef LIBNBD_SIZE_PAYLOAD
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_PAYLOAD), 1048576);
#endif
  CHECK_ERR (nbd_get_block_size (h, 4), EINVAL,
             "nbd_get_block_size: size_type: invalid value for parameter: 4: "
             "Invalid argument");
  CHECK_ERR (nbd_get_block_size (h, -1), EINVAL,
             "nbd_get_block_size: size_type: invalid value for parameter: -1: "
             "Invalid argument");

  CHECK_INT (nbd_is_rotational (h), 0);
  CHECK_INT (nbd_can_df (h), 1);
  CHECK_INT (nbd_can_fast_zero (h), 1);
#ifdef LIBNBD_HAVE_NBD_CAN_BLOCK_STATUS_PAYLOAD
  CHECK_INT (nbd_can_block_status_payload (h), 0);
#endif
  CHECK_ERR_NULL (nbd_get_export_description (h), ENOTSUP,
                  "nbd_get_export_description: server did not advertise a "
                  "description: Operation not supported");

  /* Handshake settings are fixed now; strictness is not. */
  CHECK_ERR (nbd_set_handshake_flags (h, 0), EINVAL,
             "nbd_set_handshake_flags: invalid state: READY: the handle must "
             "be newly created: Invalid argument");
  CHECK_ERR (nbd_set_request_block_size (h, false), EINVAL,
             "nbd_set_request_block_size: invalid state: READY: the handle "
             "must be newly created, or negotiating: Invalid argument");
  CHECK_ERR (nbd_set_full_info (h, true), EINVAL,
             "nbd_set_full_info: invalid state: READY: the handle must be "
             "newly created, or negotiating: Invalid argument");
  CHECK_OK (nbd_set_strict_mode (h, 0));
  CHECK_INT (nbd_get_strict_mode (h), 0);
  CHECK_OK (nbd_set_pread_initialize (h, false));

#ifdef LIBNBD_HAVE_NBD_STATS_BYTES_SENT
  {
    uint64_t cs = nbd_stats_chunks_sent (h);
    uint64_t cr = nbd_stats_chunks_received (h);
    uint64_t bs = nbd_stats_bytes_sent (h);

    CHECK (cs > 0 && bs > cs);
    CHECK (nbd_stats_bytes_received (h) > cr && cr > 0);
    CHECK_OK (nbd_flush (h, 0));
    CHECK_INT (nbd_stats_chunks_sent (h), cs + 1);
    CHECK_INT (nbd_stats_chunks_received (h), cr + 1);
    CHECK (nbd_stats_bytes_sent (h) >= bs + 28);
  }
#endif

  CHECK_OK (nbd_shutdown (h, 0));
  /* Still answered once shut down. */
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), 4096);
  CHECK_INT (nbd_is_rotational (h), 0);
  nbd_close (h);
}

static void
test_descriptions (void)
{
  char *exportname[] = { NBDKIT, "--filter=exportname", "memory", "1M",
                         "exportdesc=fixed:hello world", NULL };
  char *oldstyle[] = { NBDKIT, "-o", "memory", "1M", NULL };
  char *readonly[] = { NBDKIT, "-r", "--no-sr", "memory", "1M", NULL };
  struct nbd_handle *h;

  h = tu_create ();
  CHECK_OK (nbd_set_full_info (h, true));
  if (nbd_connect_command (h, exportname) == -1)
    FAIL ("connect: %s", tu_errmsg ());
  CHECK_STR_FREE (nbd_get_export_description (h), "hello world");
  CHECK_STR_FREE (nbd_get_canonical_export_name (h), "");
  nbd_close (h);

  h = tu_create ();
  CHECK_OK (nbd_set_full_info (h, true));
  if (nbd_connect_command (h, oldstyle) == -1)
    FAIL ("connect: %s", tu_errmsg ());
  CHECK_STR (nbd_get_protocol (h), "oldstyle");
  CHECK_ERR_NULL (nbd_get_canonical_export_name (h), ENOTSUP,
                  "nbd_get_canonical_export_name: server did not advertise a "
                  "canonical name: Operation not supported");
  CHECK_INT (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM), 0);
  CHECK_INT (nbd_can_df (h), 0);
  nbd_close (h);

  h = tu_connect (readonly);
  CHECK_INT (nbd_is_read_only (h), 1);
  CHECK_INT (nbd_can_df (h), 0);        /* no structured replies */
  CHECK_INT (nbd_can_fast_zero (h), 0); /* no zero on a read-only export */
  nbd_close (h);
}

static void
test_debug_callback (void)
{
  char *argv[] = { NBDKIT, "memory", "1M", NULL };
  struct dbg a = { "a" }, b = { "b" }, c = { "c" };
  struct nbd_handle *h = tu_create ();

  CHECK_OK (nbd_set_debug (h, true));
  CHECK_OK (nbd_set_debug_callback (h, callback_for (&a)));
  CHECK (a.calls > 0);          /* at least the "leave" of the call itself */
  if (nbd_connect_command (h, argv) == -1)
    FAIL ("connect: %s", tu_errmsg ());
  CHECK (a.saw_connect_enter > 0);
  CHECK (a.saw_leave_ok > 0);
  CHECK (a.bad_context == 0);
  CHECK_INT (a.frees, 0);

  /* Replacing frees the old one, once; the new one gets the messages. */
  CHECK_OK (nbd_set_debug_callback (h, callback_for (&b)));
  CHECK_INT (a.frees, 1);
  a.calls = 0;
  CHECK_INT (nbd_get_size (h), 1048576);
  CHECK_INT (a.calls, 0);
  CHECK (b.saw_enter > 0);
  CHECK (b.bad_context == 0);

  /* Debug off: nothing is called. */
  CHECK_OK (nbd_set_debug (h, false));
  b.calls = 0;
  CHECK_OK (nbd_flush (h, 0));
  CHECK_INT (b.calls, 0);
  CHECK_OK (nbd_set_debug (h, true));

  /* Clearing frees it; clearing again is harmless. */
  CHECK_OK (nbd_clear_debug_callback (h));
  CHECK_INT (b.frees, 1);
  CHECK_OK (nbd_clear_debug_callback (h));
  CHECK_INT (b.frees, 1);

  /* Without a callback the lines go to stderr, in libnbd's shape. */
  CHECK_OK (nbd_set_handle_name (h, "dbgtest"));
  capture_start ();
  CHECK_OK (nbd_flush (h, 0));
  {
    char *text = capture_stop ();
    check_debug_lines (text, "dbgtest", "nbd_flush");
    free (text);
  }

  /* A callback still set at close is freed then, once. */
  CHECK_OK (nbd_set_debug_callback (h, callback_for (&c)));
  c.calls = 0;
  nbd_close (h);
  CHECK (c.calls > 0);          /* "closing handle" */
  CHECK_INT (c.frees, 1);
  CHECK_INT (a.frees, 1);
  CHECK_INT (b.frees, 1);
}

static void
test_debug_env (void)
{
  struct nbd_handle *h;
  char *name, *text;

  CHECK (setenv ("LIBNBD_DEBUG", "1", 1) == 0);
  capture_start ();
  h = nbd_create ();
  text = capture_stop ();
  CHECK (unsetenv ("LIBNBD_DEBUG") == 0);
  if (h == NULL)
    FAIL ("nbd_create: %s", tu_errmsg ());
  CHECK_INT (nbd_get_debug (h), 1);
  name = nbd_get_handle_name (h);
  CHECK (name != NULL);
  check_debug_lines (text, name, "nbd_create");
  free (text);
  free (name);
  capture_start ();
  nbd_close (h);
  text = capture_stop ();
  CHECK (strstr (text, ": nbd_close: ") != NULL);
  free (text);

  h = tu_create ();
  CHECK_INT (nbd_get_debug (h), 0);
  nbd_close (h);
}

int
main (void)
{
  test_settings_before_connect ();
  test_connected ();
  test_descriptions ();
  test_debug_callback ();
  test_debug_env ();
  return 0;
}
