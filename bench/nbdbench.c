/* nbdbench: one measurement of one libnbd workload, for bench/run.sh.
 *
 * Built once against include/libnbd.h; which libnbd.so.0 it runs on is
 * chosen by LD_LIBRARY_PATH.  It only calls functions that libnbd 1.14
 * already had, so the same binary runs on Debian's library and on ours.
 *
 *   nbdbench MODE SOCKET SECONDS
 *       MODE is one of
 *         pread4k     sync nbd_pread, 4 KiB, queue depth 1     (ops/s)
 *         pwrite4k    sync nbd_pwrite, 4 KiB, queue depth 1    (ops/s)
 *         read1m      sync nbd_pread, 1 MiB                    (MiB/s)
 *         write1m     sync nbd_pwrite, 1 MiB                   (MiB/s)
 *         pread4k-mt  sync nbd_pread, 4 KiB, from 8 threads sharing one
 *                     handle                                  (ops/s)
 *         aio-loop    nbd_aio_pread, 64 x 64 KiB in flight, own poll(2) loop
 *                     over aio_get_fd/aio_get_direction/aio_notify_*  (MiB/s)
 *         aio-poll    the same, driven by nbd_poll                (MiB/s)
 *                     (NBDBENCH_DEPTH and NBDBENCH_SIZE change the 64 x
 *                     64 KiB of both, for bench/chart.sh)
 *         pread-size  sync nbd_pread of NBDBENCH_SIZE bytes, QD1  (MiB/s)
 *         connect     nbd_create + nbd_connect_unix + nbd_close (conn/s)
 *         handle-rss  resident memory per connected handle: opens
 *                     NBDBENCH_HANDLES (500) handles, each connected and
 *                     having done one 4 KiB nbd_pread, and divides the
 *                     growth of VmRSS by their number (KiB/handle; lower
 *                     is better; SECONDS is ignored)
 *   nbdbench exec CMD ARGS...
 *       runs CMD, reports its wall time and its CPU time (wait4 rusage).
 *
 * The read modes expect nbdkit's pattern plugin (each 8-byte word holds
 * its own offset, big-endian) and check the first and last word of every
 * read; the write modes want a writable export such as nbdkit memory.
 *
 * Output is one line of key=value pairs starting with "RESULT", e.g.
 *   RESULT mode=read1m value=1234.5 unit=MiB/s secs=2.00 bytes=...
 *          cpu=0.81 cpu_per_gib=0.32 lib=/path/to/libnbd.so.0.0.0
 * Anything else on stdout/stderr is diagnostics.  Exit status 0 on
 * success, 1 on any libnbd error (the error text is printed as
 * "ERROR <nbd_get_error()>").
 */

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#define KiB 1024ULL
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/* Offsets wrap inside this much of the export (the servers are >= 1 GiB). */
#define SPAN (512ULL * MiB)

#define AIO_DEPTH 64
#define AIO_SIZE  (64 * KiB)
/* bench/chart.sh varies these: NBDBENCH_DEPTH (1..AIO_DEPTH) and
 * NBDBENCH_SIZE (bytes) for aio-loop, NBDBENCH_SIZE for pread-size. */
static int aio_depth = AIO_DEPTH;
static size_t aio_size = AIO_SIZE;

static const char *sock_path;
static double run_secs;

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu_s (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
    + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The path libnbd.so.0 was really mapped from, so that run.sh can check
 * which library a run used.
 */
static void
loaded_libnbd (char *out, size_t len)
{
  FILE *maps = fopen ("/proc/self/maps", "r");
  char line[4096];

  snprintf (out, len, "unknown");
  if (!maps)
    return;
  while (fgets (line, sizeof line, maps)) {
    char *p = strchr (line, '/');
    if (p && strstr (p, "/libnbd.so")) {
      p[strcspn (p, "\n")] = '\0';
      snprintf (out, len, "%s", p);
      break;
    }
  }
  fclose (maps);
}

static void
die_nbd (const char *what)
{
  printf ("ERROR %s: %s (errno %d)\n", what,
          nbd_get_error () ? nbd_get_error () : "(no message)",
          nbd_get_errno ());
  fflush (stdout);
  exit (1);
}

/* Check the pattern plugin's data at the two ends of a read. */
static uint64_t
be64_at (const char *p)
{
  const unsigned char *u = (const unsigned char *) p;
  uint64_t v = 0;

  for (int i = 0; i < 8; i++)
    v = (v << 8) | u[i];
  return v;
}

static bool
pattern_ok (const char *buf, size_t size, uint64_t off)
{
  return be64_at (buf) == off && be64_at (buf + size - 8) == off + size - 8;
}

static void
die_data (const char *mode, const char *buf, size_t size, uint64_t off)
{
  printf ("ERROR %s: wrong data at offset %" PRIu64 " (first word %" PRIu64
          ", last word %" PRIu64 ")\n", mode, off, be64_at (buf),
          be64_at (buf + size - 8));
  exit (1);
}

static struct nbd_handle *
open_handle (void)
{
  struct nbd_handle *h = nbd_create ();

  if (!h)
    die_nbd ("nbd_create");
  /* NBDBENCH_TLS_PSK=FILE: TLS with the pre-shared key of user "bench". */
  const char *psk = getenv ("NBDBENCH_TLS_PSK");
  if (psk) {
    if (nbd_set_tls (h, LIBNBD_TLS_REQUIRE) == -1 ||
        nbd_set_tls_username (h, "bench") == -1 ||
        nbd_set_tls_psk_file (h, psk) == -1)
      die_nbd ("TLS setup");
  }
  if (nbd_connect_unix (h, sock_path) == -1)
    die_nbd ("nbd_connect_unix");
  return h;
}

static void
report (const char *mode, double value, const char *unit,
        double secs, uint64_t bytes, uint64_t ops, double cpu)
{
  char lib[1024];

  loaded_libnbd (lib, sizeof lib);
  printf ("RESULT mode=%s value=%.3f unit=%s secs=%.3f bytes=%" PRIu64
          " ops=%" PRIu64 " cpu=%.3f cpu_per_gib=%.4f lib=%s\n",
          mode, value, unit, secs, bytes, ops, cpu,
          bytes ? cpu / ((double) bytes / GiB) : 0.0, lib);
}

/* --- synchronous modes ------------------------------------------------ */

static void
bench_sync (const char *mode, size_t size, bool write)
{
  struct nbd_handle *h = open_handle ();
  char *buf = malloc (size);
  uint64_t ops = 0, off = 0;
  double t0, c0, t;

  if (!buf) {
    perror ("malloc");
    exit (1);
  }
  memset (buf, 0xa5, size);

  t0 = now_s ();
  c0 = cpu_s ();
  do {
    int r = write ? nbd_pwrite (h, buf, size, off, 0)
                  : nbd_pread (h, buf, size, off, 0);
    if (r == -1)
      die_nbd (write ? "nbd_pwrite" : "nbd_pread");
    if (!write && !pattern_ok (buf, size, off))
      die_data (mode, buf, size, off);
    ops++;
    off += size;
    if (off + size > SPAN)
      off = 0;
    t = now_s () - t0;
  } while (t < run_secs);
  double cpu = cpu_s () - c0;

  if (size >= MiB || strcmp (mode, "pread-size") == 0)
    report (mode, (double) ops * size / MiB / t, "MiB/s", t,
            ops * size, ops, cpu);
  else
    report (mode, ops / t, "ops/s", t, ops * size, ops, cpu);

  nbd_close (h);
  free (buf);
}

/* --- asynchronous modes ----------------------------------------------- */

struct slot {
  char *buf;
  uint64_t off;
  bool busy;
  int error;
  bool bad_data;
};

static uint64_t aio_done;

static int
aio_completed (void *user_data, int *error)
{
  struct slot *s = user_data;

  s->busy = false;
  if (*error)
    s->error = *error;
  else if (!pattern_ok (s->buf, aio_size, s->off)) {
    if (!s->bad_data)
      fprintf (stderr, "nbdbench: wrong data at offset %" PRIu64 "\n",
               s->off);
    s->bad_data = true;
  }
  aio_done++;
  return 1;                     /* retire the command */
}

/* One pass of the hand-written event loop. */
static void
loop_once (struct nbd_handle *h)
{
  struct pollfd pfd;
  int dir, fd, r;

  fd = nbd_aio_get_fd (h);
  if (fd == -1)
    die_nbd ("nbd_aio_get_fd");
  dir = nbd_aio_get_direction (h);
  pfd.fd = fd;
  pfd.events = 0;
  pfd.revents = 0;
  if (dir & LIBNBD_AIO_DIRECTION_READ)
    pfd.events |= POLLIN;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE)
    pfd.events |= POLLOUT;
  if (pfd.events == 0) {
    fprintf (stderr, "nbdbench: aio_get_direction is %d with commands "
             "in flight\n", dir);
    exit (1);
  }
  do
    r = poll (&pfd, 1, -1);
  while (r == -1 && errno == EINTR);
  if (r == -1) {
    perror ("poll");
    exit (1);
  }
  if ((pfd.revents & (POLLIN | POLLHUP | POLLERR))
      && (dir & LIBNBD_AIO_DIRECTION_READ)) {
    if (nbd_aio_notify_read (h) == -1)
      die_nbd ("nbd_aio_notify_read");
  }
  else if (pfd.revents & (POLLOUT | POLLERR)) {
    if (nbd_aio_notify_write (h) == -1)
      die_nbd ("nbd_aio_notify_write");
  }
}

static void
bench_aio (const char *mode, bool own_loop)
{
  struct nbd_handle *h = open_handle ();
  struct slot slots[AIO_DEPTH];
  uint64_t issued = 0, off = 0;
  int in_flight = 0;
  bool stopping = false;
  double t0, c0, t;

  for (int i = 0; i < aio_depth; i++) {
    slots[i].buf = malloc (aio_size);
    if (!slots[i].buf) {
      perror ("malloc");
      exit (1);
    }
    memset (slots[i].buf, 0, aio_size);
    slots[i].busy = false;
    slots[i].error = 0;
    slots[i].bad_data = false;
  }

  aio_done = 0;
  t0 = now_s ();
  c0 = cpu_s ();
  for (;;) {
    if (!stopping && now_s () - t0 >= run_secs)
      stopping = true;
    if (!stopping) {
      for (int i = 0; i < aio_depth; i++) {
        if (slots[i].busy)
          continue;
        nbd_completion_callback cb = {
          .callback = aio_completed, .user_data = &slots[i],
        };
        slots[i].busy = true;
        slots[i].off = off;
        if (nbd_aio_pread (h, slots[i].buf, aio_size, off, cb, 0) == -1)
          die_nbd ("nbd_aio_pread");
        issued++;
        off += aio_size;
        if (off + aio_size > SPAN)
          off = 0;
      }
    }
    in_flight = (int) (issued - aio_done);
    if (in_flight == 0)
      break;
    if (own_loop)
      loop_once (h);
    else if (nbd_poll (h, -1) == -1)
      die_nbd ("nbd_poll");
  }
  t = now_s () - t0;
  double cpu = cpu_s () - c0;

  for (int i = 0; i < aio_depth; i++) {
    if (slots[i].error) {
      printf ("ERROR aio_pread completed with error %d (%s)\n",
              slots[i].error, strerror (slots[i].error));
      exit (1);
    }
    if (slots[i].bad_data) {
      printf ("ERROR %s: wrong data in a read (slot %d)\n", mode, i);
      exit (1);
    }
    free (slots[i].buf);
  }
  report (mode, (double) aio_done * aio_size / MiB / t, "MiB/s", t,
          aio_done * aio_size, aio_done, cpu);
  nbd_close (h);
}

/* --- connect + close --------------------------------------------------- */

static void
bench_connect (void)
{
  uint64_t ops = 0;
  double t0, c0, t;

  t0 = now_s ();
  c0 = cpu_s ();
  do {
    struct nbd_handle *h = open_handle ();
    nbd_close (h);
    ops++;
    t = now_s () - t0;
  } while (t < run_secs);
  report ("connect", ops / t, "conn/s", t, 0, ops, cpu_s () - c0);
}

/* --- resident memory per handle ---------------------------------------- */

/* VmRSS of this process in KiB. */
static long
rss_kib (void)
{
  FILE *f = fopen ("/proc/self/status", "r");
  char line[256];
  long kib = -1;

  if (!f) {
    perror ("/proc/self/status");
    exit (1);
  }
  while (fgets (line, sizeof line, f))
    if (sscanf (line, "VmRSS: %ld", &kib) == 1)
      break;
  fclose (f);
  return kib;
}

static void
bench_handle_rss (void)
{
  const char *env = getenv ("NBDBENCH_HANDLES");
  size_t n = env ? strtoul (env, NULL, 10) : 500, i;
  struct nbd_handle **hs = calloc (n, sizeof *hs);
  char *buf = malloc (4 * KiB);
  struct rlimit rl;
  double t0, c0;
  long before, after;

  if (!hs || !buf || n == 0) {
    fprintf (stderr, "handle-rss: bad NBDBENCH_HANDLES or out of memory\n");
    exit (1);
  }
  /* A socket (and maybe an eventfd) per handle. */
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit (RLIMIT_NOFILE, &rl);
  }
  /* One handle first, so that what the library sets up once per process
   * is not counted. */
  hs[0] = open_handle ();
  if (nbd_pread (hs[0], buf, 4 * KiB, 0, 0) == -1)
    die_nbd ("nbd_pread");
  nbd_close (hs[0]);

  t0 = now_s ();
  c0 = cpu_s ();
  before = rss_kib ();
  for (i = 0; i < n; i++) {
    hs[i] = open_handle ();
    if (nbd_pread (hs[i], buf, 4 * KiB, i * 4 * KiB, 0) == -1)
      die_nbd ("nbd_pread");
  }
  after = rss_kib ();
  for (i = 0; i < n; i++)
    nbd_close (hs[i]);
  report ("handle-rss", (double) (after - before) / n, "KiB/handle",
          now_s () - t0, 0, n, cpu_s () - c0);
  free (buf);
  free (hs);
}

/* --- run a command, report its time and CPU --------------------------- */

static int
bench_exec (char **argv)
{
  struct rusage ru;
  int status;
  double t0 = now_s ();
  pid_t pid = fork ();

  if (pid == -1) {
    perror ("fork");
    return 1;
  }
  if (pid == 0) {
    execvp (argv[0], argv);
    perror (argv[0]);
    _exit (127);
  }
  if (wait4 (pid, &status, 0, &ru) == -1) {
    perror ("wait4");
    return 1;
  }
  double t = now_s () - t0;
  double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
    + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    printf ("ERROR %s exited with status 0x%x\n", argv[0], status);
    return 1;
  }
  printf ("RESULT mode=exec value=%.3f unit=s secs=%.3f bytes=0 ops=1 "
          "cpu=%.3f cpu_per_gib=0 lib=child\n", t, t, cpu);
  return 0;
}

/* --- synchronous reads from threads sharing one handle ----------------- */

#define MT_THREADS 8

struct mt_worker {
  struct nbd_handle *h;
  int index;
  double end;
  uint64_t ops;
};

static void *
mt_read (void *arg)
{
  struct mt_worker *w = arg;
  char buf[4 * KiB];
  /* Each thread reads its own stretch of the export. */
  uint64_t stretch = SPAN / MT_THREADS, base = w->index * stretch, off = 0;

  do {
    if (nbd_pread (w->h, buf, sizeof buf, base + off, 0) == -1)
      die_nbd ("nbd_pread");
    if (!pattern_ok (buf, sizeof buf, base + off))
      die_data ("pread4k-mt", buf, sizeof buf, base + off);
    w->ops++;
    off = (off + sizeof buf) % stretch;
  } while (now_s () < w->end);
  return NULL;
}

static void
bench_mt (const char *mode)
{
  struct nbd_handle *h = open_handle ();
  struct mt_worker w[MT_THREADS];
  pthread_t tid[MT_THREADS];
  uint64_t ops = 0;
  double t0 = now_s (), c0 = cpu_s (), t;

  for (int i = 0; i < MT_THREADS; i++) {
    w[i] = (struct mt_worker) { .h = h, .index = i, .end = t0 + run_secs };
    if (pthread_create (&tid[i], NULL, mt_read, &w[i]) != 0) {
      perror ("pthread_create");
      exit (1);
    }
  }
  for (int i = 0; i < MT_THREADS; i++) {
    pthread_join (tid[i], NULL);
    ops += w[i].ops;
  }
  t = now_s () - t0;
  report (mode, ops / t, "ops/s", t, ops * 4 * KiB, ops, cpu_s () - c0);
  nbd_close (h);
}

int
main (int argc, char **argv)
{
  if (argc >= 3 && strcmp (argv[1], "exec") == 0)
    return bench_exec (&argv[2]);
  if (argc != 4) {
    fprintf (stderr,
             "usage: %s pread4k|pwrite4k|read1m|write1m|pread4k-mt|aio-loop|aio-poll|connect|handle-rss "
             "SOCKET SECONDS\n"
             "       %s exec CMD [ARGS...]\n", argv[0], argv[0]);
    return 2;
  }
  sock_path = argv[2];
  run_secs = atof (argv[3]);
  setvbuf (stdout, NULL, _IOLBF, 0);
  if (getenv ("NBDBENCH_DEPTH"))
    aio_depth = atoi (getenv ("NBDBENCH_DEPTH"));
  if (getenv ("NBDBENCH_SIZE"))
    aio_size = strtoull (getenv ("NBDBENCH_SIZE"), NULL, 10);
  if (aio_depth < 1 || aio_depth > AIO_DEPTH || aio_size == 0 || aio_size > SPAN) {
    fprintf (stderr, "%s: NBDBENCH_DEPTH 1..%d, NBDBENCH_SIZE 1..%llu\n",
             argv[0], AIO_DEPTH, SPAN);
    return 2;
  }

  const char *mode = argv[1];
  if (strcmp (mode, "pread4k") == 0)
    bench_sync (mode, 4 * KiB, false);
  else if (strcmp (mode, "pwrite4k") == 0)
    bench_sync (mode, 4 * KiB, true);
  else if (strcmp (mode, "read1m") == 0)
    bench_sync (mode, MiB, false);
  else if (strcmp (mode, "write1m") == 0)
    bench_sync (mode, MiB, true);
  else if (strcmp (mode, "pread4k-mt") == 0)
    bench_mt (mode);
  else if (strcmp (mode, "pread-size") == 0)
    bench_sync (mode, getenv ("NBDBENCH_SIZE")
                ? strtoull (getenv ("NBDBENCH_SIZE"), NULL, 10) : 4 * KiB, false);
  else if (strcmp (mode, "aio-loop") == 0)
    bench_aio (mode, true);
  else if (strcmp (mode, "aio-poll") == 0)
    bench_aio (mode, false);
  else if (strcmp (mode, "connect") == 0)
    bench_connect ();
  else if (strcmp (mode, "handle-rss") == 0)
    bench_handle_rss ();
  else {
    fprintf (stderr, "%s: unknown mode %s\n", argv[0], mode);
    return 2;
  }
  return 0;
}
