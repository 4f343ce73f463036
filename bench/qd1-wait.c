/* qd1-wait.c: how should a client wait for the reply to its one command
 * in flight?  Measures request/reply round trips per second over a Unix
 * socketpair, with a server thread that answers each 28-byte request with
 * a 4 KiB + 28-byte reply after SERVER_USEC microseconds of busy work
 * (standing in for nbdkit), for three ways of waiting:
 *
 *   poll      poll(POLLIN) on the non-blocking socket, then recv
 *             (rust-libnbd's way: right after sending, nothing is there yet)
 *   blocking  one blocking recv (the socket in blocking mode)
 *   try-first recv (EAGAIN), poll, recv (C libnbd's way)
 *
 * Build and run (the numbers are in BENCHMARKS.md):
 *   gcc -O2 -o qd1-wait bench/qd1-wait.c -lpthread
 *   ./qd1-wait MODE SECONDS SERVER_USEC      (MODE: poll, blocking, try-first)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQ_LEN 28
#define REPLY_LEN (4096 + 28)

static int sv[2];
static double server_secs;

static double
now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void *
server (void *arg)
{
  static char buf[REPLY_LEN];
  (void) arg;
  for (;;) {
    if (recv (sv[1], buf, REQ_LEN, MSG_WAITALL) != REQ_LEN)
      return NULL;
    double until = now () + server_secs;
    while (now () < until)
      ;
    if (send (sv[1], buf, REPLY_LEN, 0) != REPLY_LEN)
      return NULL;
  }
}

static void
wait_readable (void)
{
  struct pollfd p = { .fd = sv[0], .events = POLLIN };
  while (poll (&p, 1, -1) == -1 && errno == EINTR)
    ;
}

int
main (int argc, char **argv)
{
  static char req[REQ_LEN], reply[REPLY_LEN];
  pthread_t thread;
  long ops = 0;

  if (argc != 4) {
    fprintf (stderr, "usage: %s poll|blocking|try-first SECONDS SERVER_USEC\n",
             argv[0]);
    return 2;
  }
  const char *mode = argv[1];
  int blocking = strcmp (mode, "blocking") == 0;
  int try_first = strcmp (mode, "try-first") == 0;
  if (!blocking && !try_first && strcmp (mode, "poll") != 0) {
    fprintf (stderr, "unknown mode %s\n", mode);
    return 2;
  }
  server_secs = atof (argv[3]) / 1e6;
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == -1 ||
      pthread_create (&thread, NULL, server, NULL) != 0) {
    perror ("setup");
    return 1;
  }
  if (!blocking)
    fcntl (sv[0], F_SETFL, O_NONBLOCK);

  double start = now (), end = start + atof (argv[2]);
  while (now () < end) {
    for (int k = 0; k < 100; k++, ops++) {
      if (send (sv[0], req, REQ_LEN, 0) != REQ_LEN) {
        perror ("send");
        return 1;
      }
      size_t got = 0;
      int first = 1;
      while (got < REPLY_LEN) {
        if (!blocking && !(try_first && first))
          wait_readable ();
        first = 0;
        ssize_t n = recv (sv[0], reply + got, REPLY_LEN - got, 0);
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
          continue;
        if (n <= 0) {
          perror ("recv");
          return 1;
        }
        got += n;
      }
    }
  }
  printf ("%s server_usec=%s ops_per_s=%.0f\n", mode, argv[3],
          ops / (now () - start));
  return 0;
}
