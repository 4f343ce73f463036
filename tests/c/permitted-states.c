/* Permitted handle states of every call, as libnbd 1.22 documents them:
 * each call is made in each public state (created, connecting,
 * negotiating, connected, shut down, dead).  Where the state is not
 * permitted the call must fail with "invalid state" (ENOTCONN on a
 * newly created handle, EINVAL otherwise) and name the states it
 * needs; where it is permitted it must not fail for its state.
 *
 * One nbdkit serves every connection over a Unix socket; a handle is
 * replaced whenever a permitted call moved it to another state.
 */
#include "test-util.h"

#include <sys/socket.h>
#include <sys/un.h>

enum { S_CREATED, S_CONNECTING, S_NEGOTIATING, S_READY, S_CLOSED, S_DEAD,
       NR_STATES };
#define C   (1 << S_CREATED)
#define N   (1 << S_CONNECTING)
#define G   (1 << S_NEGOTIATING)
#define R   (1 << S_READY)
#define X   (1 << S_CLOSED)
#define D   (1 << S_DEAD)
#define ANY (C | N | G | R | X | D)
#define INFO (G | R | X)

static const char *state_names[NR_STATES] = {
  "created", "connecting", "negotiating", "ready", "closed", "dead"
};
/* How libnbd names each state in "the handle must be ...". */
static const char *state_texts[NR_STATES] = {
  "newly created", "connecting", "negotiating", "connected with the server",
  "shut down", "dead"
};

static char sockpath[128];
static int connecting_peer = -1;
static char buf[4096];

static int list_cb (void *u, const char *n, const char *d) { return 0; }
static int ctx_cb (void *u, const char *n) { return 0; }
static int extent_cb (void *u, const char *m, uint64_t o, uint32_t *e,
                      size_t n, int *err) { return 0; }
static int extent64_cb (void *u, const char *m, uint64_t o,
                        nbd_extent *e, size_t n, int *err) { return 0; }
static int chunk_cb (void *u, const void *b, size_t c, uint64_t o,
                     unsigned s, int *err) { return 0; }

#define LIST ((nbd_list_callback) { .callback = list_cb })
#define CTX ((nbd_context_callback) { .callback = ctx_cb })
#define EXT ((nbd_extent_callback) { .callback = extent_cb })
#define EXT64 ((nbd_extent64_callback) { .callback = extent64_cb })
#define CHUNK ((nbd_chunk_callback) { .callback = chunk_cb })
#define DONE NBD_NULL_COMPLETION

static char *queries[] = { "base:allocation", NULL };
static char *bad_argv[] = { "false", NULL };
#define NOSOCK "nbd+unix:///?socket=/nonexistent/sock"

/* A socket whose peer has gone: connecting on it fails at once. */
static int
dead_socket (void)
{
  int sv[2];
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == -1)
    FAIL ("socketpair: %s", strerror (errno));
  close (sv[1]);
  return sv[0];
}

static void free_nothing (void *u) { }

static int
ptr_ret (char *p)
{
  free (p);
  return p ? 0 : -1;
}

static int
sockaddr_connect (struct nbd_handle *h)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX,
                             .sun_path = "/nonexistent/sock" };
  return nbd_aio_connect (h, (struct sockaddr *) &sun, sizeof sun);
}

struct call {
  const char *name;
  int allowed;
  int (*fn) (struct nbd_handle *h);
};

#define CALL(name, allowed, expr) \
  static int call_##name (struct nbd_handle *h) { return (expr); }
#include "permitted-states.h"
#undef CALL
#define CALL(name, allowed, expr) { "nbd_" #name, allowed, call_##name },
static const struct call calls[] = {
#include "permitted-states.h"
};
#undef CALL

static int
in_state (struct nbd_handle *h, int s)
{
  switch (s) {
  case S_CREATED: return nbd_aio_is_created (h);
  case S_CONNECTING: return nbd_aio_is_connecting (h);
  case S_NEGOTIATING: return nbd_aio_is_negotiating (h);
  case S_READY: return nbd_aio_is_ready (h);
  case S_CLOSED: return nbd_aio_is_closed (h);
  case S_DEAD: return nbd_aio_is_dead (h);
  }
  return 0;
}

static struct nbd_handle *
make (int s)
{
  struct nbd_handle *h = tu_create ();
  int sv[2];

  switch (s) {
  case S_CREATED:
    break;
  case S_CONNECTING:
    /* The server never sends its greeting. */
    if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == -1)
      FAIL ("socketpair: %s", strerror (errno));
    if (connecting_peer >= 0)
      close (connecting_peer);
    connecting_peer = sv[1];
    CHECK_OK (nbd_aio_connect_socket (h, sv[0]));
    break;
  case S_NEGOTIATING:
    CHECK_OK (nbd_set_opt_mode (h, true));
    CHECK_OK (nbd_connect_unix (h, sockpath));
    break;
  case S_READY:
    CHECK_OK (nbd_connect_unix (h, sockpath));
    break;
  case S_CLOSED:
    CHECK_OK (nbd_connect_unix (h, sockpath));
    CHECK_OK (nbd_shutdown (h, 0));
    break;
  case S_DEAD:
    CHECK_INT (nbd_connect_socket (h, dead_socket ()), -1);
    break;
  }
  if (!in_state (h, s))
    FAIL ("could not reach state %s (%s)", state_names[s],
          nbd_connection_state (h));
  return h;
}

static pid_t
start_server (void)
{
  return tu_start_nbdkit_unix ("permitted-states", sockpath, sizeof sockpath);
}

int
main (void)
{
  pid_t server;
  size_t i, nr = sizeof calls / sizeof calls[0];
  int s, failures = 0;
  char must[256], want[512];

  signal (SIGPIPE, SIG_IGN);
  server = start_server ();

  for (s = 0; s < NR_STATES; ++s) {
    struct nbd_handle *h = make (s);

    for (i = 0; i < nr; ++i) {
      const struct call *c = &calls[i];
      int allowed = (c->allowed >> s) & 1;
      int r = c->fn (h);
      const char *msg = nbd_get_error ();
      int rejected = r == -1 && msg && strstr (msg, ": invalid state: ");

      if (rejected && allowed) {
        fprintf (stderr, "%s in state %s: rejected: %s\n",
                 c->name, state_names[s], msg);
        failures++;
      }
      else if (!rejected && !allowed) {
        fprintf (stderr, "%s in state %s: not rejected (returned %d)\n",
                 c->name, state_names[s], r);
        failures++;
      }
      else if (rejected) {
        int e = nbd_get_errno (), want_e = s == S_CREATED ? ENOTCONN : EINVAL;
        int k;

        must[0] = '\0';
        for (k = 0; k < NR_STATES; ++k)
          if ((c->allowed >> k) & 1)
            snprintf (must + strlen (must), sizeof must - strlen (must),
                      "%s%s", must[0] ? ", or " : "", state_texts[k]);
        snprintf (want, sizeof want, ": the handle must be %s: %s",
                  must, strerror (want_e));
        if (e != want_e ||
            strncmp (msg, c->name, strlen (c->name)) != 0 ||
            strlen (msg) < strlen (want) ||
            strcmp (msg + strlen (msg) - strlen (want), want) != 0) {
          fprintf (stderr, "%s in state %s: errno %d, message \"%s\"; "
                   "expected errno %d and a message ending \"%s\"\n",
                   c->name, state_names[s], e, msg, want_e, want);
          failures++;
        }
      }
      if (!in_state (h, s)) {
        nbd_close (h);
        h = make (s);
      }
    }
    nbd_close (h);
  }

  /* nbd_shutdown in option mode ends the negotiation cleanly. */
  {
    struct nbd_handle *h = make (S_NEGOTIATING);
    CHECK_OK (nbd_shutdown (h, 0));
    CHECK (nbd_aio_is_closed (h));
    nbd_close (h);
  }

  if (connecting_peer >= 0)
    close (connecting_peer);
  kill (server, SIGTERM);
  waitpid (server, NULL, 0);
  unlink (sockpath);
  if (failures)
    FAIL ("%d call/state combinations differ from libnbd 1.22", failures);
  return 0;
}
