/* Beyond libnbd, through <libnbd-ext.h>: the IP family of TCP
 * connects, and the ready callback (called once, its free once).
 */
#include "test-util.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <libnbd-ext.h>

static int calls, frees, last_error = -1;

static int
ready (void *user_data, int *error)
{
  CHECK (user_data == &calls);
  calls++;
  last_error = *error;
  return 0;
}

static void
freed (void *user_data)
{
  CHECK (user_data == &calls);
  frees++;
}

/* A TCP port that was free a moment ago. */
static int
free_port (void)
{
  struct sockaddr_in sa = { .sin_family = AF_INET };
  socklen_t len = sizeof sa;
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  CHECK (fd >= 0);
  sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  CHECK (bind (fd, (struct sockaddr *) &sa, sizeof sa) == 0);
  CHECK (getsockname (fd, (struct sockaddr *) &sa, &len) == 0);
  close (fd);
  return ntohs (sa.sin_port);
}

int
main (void)
{
  struct nbd_handle *h;
  char port[16];
  pid_t pid;
  int i, r;

  /* 1. IP family: the setting, and a name of the other family fails. */
  h = tu_create ();
  CHECK_INT (rnbd_get_ip_family (h), RNBD_IP_FAMILY_ANY);
  CHECK_ERR (rnbd_set_ip_family (h, 5), EINVAL,
             "rnbd_set_ip_family: family: invalid IP family 5: Invalid argument");
  CHECK_OK (rnbd_set_ip_family (h, RNBD_IP_FAMILY_V6));
  CHECK_INT (rnbd_get_ip_family (h), RNBD_IP_FAMILY_V6);
  CHECK_INT (nbd_connect_tcp (h, "127.0.0.1", "10809"), -1);
  nbd_close (h);

  snprintf (port, sizeof port, "%d", free_port ());
  pid = fork ();
  CHECK (pid >= 0);
  if (pid == 0) {
    execlp ("nbdkit", "nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1",
            "-p", port, "memory", "1M", NULL);
    _exit (127);
  }
  /* IPv4 only, to a name that has both families here. */
  for (i = 0; i < 200; i++) {
    h = tu_create ();
    CHECK_OK (rnbd_set_ip_family (h, RNBD_IP_FAMILY_V4));
    r = nbd_connect_tcp (h, "localhost", port);
    if (r == 0)
      break;
    nbd_close (h);
    tu_msleep (50);
  }
  if (r == -1)
    FAIL ("nbd_connect_tcp (localhost, %s) over IPv4: %s", port, tu_errmsg ());
  CHECK_INT (nbd_get_size (h), 1 << 20);
  CHECK_INT (rnbd_set_ip_family (h, RNBD_IP_FAMILY_ANY), -1);
  CHECK_INT (nbd_get_errno (), EINVAL);
  nbd_close (h);
  CHECK (kill (pid, SIGTERM) == 0);
  CHECK (waitpid (pid, NULL, 0) == pid);

  /* 2. The ready callback: once with 0, its free once. */
  {
    char *argv[] = { NBDKIT, "memory", "1M", NULL };
    char *bad[] = { "false", NULL };
    nbd_completion_callback cb = { .callback = ready, .user_data = &calls,
                                   .free = freed };

    h = tu_create ();
    CHECK_OK (rnbd_set_ready_callback (h, cb));
    CHECK_INT (calls, 0);
    CHECK_OK (nbd_aio_connect_command (h, argv));
    while (!nbd_aio_is_ready (h)) {
      CHECK (nbd_aio_is_dead (h) == 0);
      CHECK (nbd_poll (h, 1000) != -1);
    }
    CHECK_INT (calls, 1);
    CHECK_INT (last_error, 0);
    CHECK_INT (nbd_get_size (h), 1 << 20);
    nbd_close (h);
    CHECK_INT (calls, 1);
    CHECK_INT (frees, 1);

    /* A connection that fails first: called once with an error. */
    calls = frees = 0;
    h = tu_create ();
    CHECK_OK (rnbd_set_ready_callback (h, cb));
    CHECK_INT (nbd_connect_command (h, bad), -1);
    nbd_close (h);
    CHECK_INT (calls, 1);
    CHECK (last_error != 0);
    CHECK_INT (frees, 1);

    /* Never connected: never called, freed once at close. */
    calls = frees = 0;
    h = tu_create ();
    CHECK_OK (rnbd_set_ready_callback (h, cb));
    nbd_close (h);
    CHECK_INT (calls, 0);
    CHECK_INT (frees, 1);

    /* No callback at all. */
    h = tu_create ();
    CHECK_ERR (rnbd_set_ready_callback (h, NBD_NULL_COMPLETION), EFAULT,
               "rnbd_set_ready_callback: cb cannot be NULL: Bad address");
    nbd_close (h);

    /* Replaced: the first is freed at once. */
    calls = frees = 0;
    h = tu_create ();
    CHECK_OK (rnbd_set_ready_callback (h, cb));
    CHECK_OK (rnbd_set_ready_callback (h, cb));
    CHECK_INT (frees, 1);
    nbd_close (h);
    CHECK_INT (frees, 2);
    CHECK_INT (calls, 0);
  }

  return 0;
}
