/* Beyond libnbd, through <libnbd-ext.h>: the subprocess of
 * nbd_connect_command with an explicit environment, its standard error
 * captured (in the error message of a failed connect and from
 * rnbd_get_subprocess_stderr), and a close that does not wait for it.
 */
#include "test-util.h"

#include <libnbd-ext.h>

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main (void)
{
  struct nbd_handle *h;
  char *s;
  char path[4096];
  const char *p = getenv ("PATH");
  char **volatile no_envp = NULL; /* hidden from -Wnonnull */

  /* 1. The whole environment of the command is ENVP: the size comes
   * from $SIZE, and nothing else of ours is inherited.
   */
  snprintf (path, sizeof path, "PATH=%s", p ? p : "/usr/bin:/bin");
  {
    char *argv[] = { "sh", "-c",
                     "test -z \"$HOME$NBD_TEST_OURS\" || exit 9; "
                     "exec nbdkit -s --exit-with-parent memory \"$SIZE\"",
                     NULL };
    char *envp[] = { path, "SIZE=3M", NULL };
    h = tu_create ();
    CHECK_OK (rnbd_connect_command_env (h, argv, envp));
    CHECK_INT (nbd_get_size (h), 3 << 20);
    nbd_close (h);

    h = tu_create ();
    CHECK_ERR (rnbd_connect_command_env (h, argv, no_envp), EFAULT,
               "rnbd_connect_command_env: envp cannot be NULL: Bad address");
    nbd_close (h);

    /* The aio form, driven by rnbd_aio_run and poll. */
    h = tu_create ();
    CHECK_OK (rnbd_aio_connect_command_env (h, argv, envp));
    while (!nbd_aio_is_ready (h)) {
      CHECK (nbd_aio_is_dead (h) == 0);
      CHECK (nbd_poll (h, 1000) != -1);
    }
    CHECK_OK (rnbd_aio_run (h));
    CHECK_INT (nbd_get_size (h), 3 << 20);
    nbd_close (h);
  }

  /* 2. Captured standard error. */
  {
    char *argv[] = { "sh", "-c",
                     "echo one >&2; echo 'server: no disk' >&2; exit 1",
                     NULL };
    h = tu_create ();
    CHECK_INT (rnbd_get_capture_stderr (h), 0);
    CHECK (rnbd_get_subprocess_stderr (h) == NULL);
    CHECK_INT (nbd_get_errno (), ENOENT);
    CHECK_OK (rnbd_set_capture_stderr (h, true));
    CHECK_INT (rnbd_get_capture_stderr (h), 1);
    CHECK_INT (nbd_connect_command (h, argv), -1);
    CHECK_STR (nbd_get_error (),
               "nbd_connect_command: recv: server disconnected unexpectedly: "
               "sh exited with status 1: one; server: no disk");
    s = rnbd_get_subprocess_stderr (h);
    if (s == NULL)
      FAIL ("rnbd_get_subprocess_stderr: %s", tu_errmsg ());
    if (strstr (s, "server: no disk") == NULL)
      FAIL ("captured stderr is \"%s\"", s);
    free (s);
    CHECK_INT (nbd_aio_is_dead (h), 1);
    CHECK_INT (rnbd_set_capture_stderr (h, false), -1);
    CHECK_INT (nbd_get_errno (), EINVAL);
    nbd_close (h);

    /* Not captured (the default): libnbd's message, nothing added. */
    h = tu_create ();
    CHECK_INT (nbd_connect_command (h, argv), -1);
    CHECK_STR (nbd_get_error (),
               "nbd_connect_command: recv: server disconnected unexpectedly");
    nbd_close (h);
  }

  /* 3. Close without waiting for a server that lingers, deaf to
   * SIGTERM (libnbd waits seconds for it).
   */
  {
    char *argv[] = { "sh", "-c",
                     "trap '' TERM; nbdkit -s memory 1M; sleep 30", NULL };
    pid_t pid;
    double t;
    int i;

    h = tu_create ();
    CHECK_INT (rnbd_get_close_waits_for_subprocess (h), 1);
    CHECK_OK (rnbd_set_close_waits_for_subprocess (h, false));
    CHECK_INT (rnbd_get_close_waits_for_subprocess (h), 0);
    CHECK_OK (nbd_connect_command (h, argv));
    pid = nbd_get_subprocess_pid (h);
    CHECK (pid > 0);
    t = now ();
    nbd_close (h);
    t = now () - t;
    /* Waiting would take over 3 s (2 s, SIGTERM ignored, 2 s). */
    if (t >= (getenv ("NBD_TEST_SLOW") ? 2.0 : 1.0))
      FAIL ("nbd_close took %.2f s though it should not wait", t);
    /* Stop it ourselves; it is still reaped by the library. */
    CHECK (kill (pid, SIGKILL) == 0);
    for (i = 0; i < 300 && kill (pid, 0) == 0; i++)
      tu_msleep (50);
    if (kill (pid, 0) == 0)
      FAIL ("subprocess %d was never reaped", (int) pid);
  }

  return 0;
}
