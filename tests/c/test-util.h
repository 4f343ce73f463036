/* Shared helpers for the rust-libnbd C test suite.
 *
 * Every test is a standalone program: it exits 0 when everything
 * passed and prints a diagnostic to stderr and exits 1 on the first
 * failed check.  The tests are written against the public libnbd API
 * only, so the same source runs against the oracle, the real libnbd
 * 1.22.2 (tests/run-c-tests.sh --oracle), and against our replacement
 * library.
 */
#ifndef RUST_LIBNBD_TEST_UTIL_H
#define RUST_LIBNBD_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <inttypes.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <libnbd.h>

/* The common prefix of every nbdkit command line we start. */
#define NBDKIT "nbdkit", "-s", "--exit-with-parent"

/* Abort the test with a message that names the source line. */
#define FAIL(...)                                                    \
  do {                                                               \
    fprintf (stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);           \
    fprintf (stderr, __VA_ARGS__);                                   \
    fprintf (stderr, "\n");                                          \
    exit (EXIT_FAILURE);                                             \
  } while (0)

/* A plain boolean condition. */
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond))                                                     \
      FAIL ("condition is false: %s", #cond);                        \
  } while (0)

/* The last libnbd error message, never NULL (for printing). */
static inline const char *
tu_errmsg (void)
{
  const char *m = nbd_get_error ();
  return m ? m : "(null)";
}

/* EXPR (any integer-returning libnbd call) must return EXPECTED. */
#define CHECK_INT(expr, expected)                                    \
  do {                                                               \
    long long tu_r_ = (long long) (expr);                            \
    long long tu_x_ = (long long) (expected);                        \
    if (tu_r_ != tu_x_)                                              \
      FAIL ("%s returned %lld, expected %lld (errno %d, error: %s)", \
            #expr, tu_r_, tu_x_, nbd_get_errno (), tu_errmsg ());    \
  } while (0)

/* EXPR must succeed, i.e. return 0. */
#define CHECK_OK(expr) CHECK_INT ((expr), 0)

/* Compare the thread's libnbd errno and message with the expected
 * values; used right after a failing call.
 */
#define CHECK_LAST_ERROR(what, exp_errno, exp_msg)                   \
  do {                                                               \
    int tu_e_ = nbd_get_errno ();                                    \
    const char *tu_m_ = nbd_get_error ();                            \
    if (tu_e_ != (exp_errno))                                        \
      FAIL ("%s: errno is %d (%s), expected %d (%s); error: %s",     \
            (what), tu_e_, strerror (tu_e_), (exp_errno),            \
            strerror (exp_errno), tu_m_ ? tu_m_ : "(null)");         \
    if (tu_m_ == NULL)                                               \
      FAIL ("%s: nbd_get_error() is NULL, expected \"%s\"",          \
            (what), (exp_msg));                                      \
    if (strcmp (tu_m_, (exp_msg)) != 0)                              \
      FAIL ("%s: error message mismatch\n  got:      \"%s\"\n"       \
            "  expected: \"%s\"", (what), tu_m_, (exp_msg));         \
  } while (0)

/* EXPR must fail by returning EXP_RET (normally -1), and set
 * nbd_get_errno() == EXP_ERRNO and nbd_get_error() == EXP_MSG exactly.
 */
#define CHECK_ERR_RET(expr, exp_ret, exp_errno, exp_msg)             \
  do {                                                               \
    long long tu_r_ = (long long) (expr);                            \
    if (tu_r_ != (long long) (exp_ret))                              \
      FAIL ("%s returned %lld, expected failure %lld (error: %s)",   \
            #expr, tu_r_, (long long) (exp_ret), tu_errmsg ());      \
    CHECK_LAST_ERROR (#expr, (exp_errno), (exp_msg));                \
  } while (0)

#define CHECK_ERR(expr, exp_errno, exp_msg)                          \
  CHECK_ERR_RET ((expr), -1, (exp_errno), (exp_msg))

/* A pointer-returning call must fail with NULL plus errno/message. */
#define CHECK_ERR_NULL(expr, exp_errno, exp_msg)                     \
  do {                                                               \
    const void *tu_p_ = (const void *) (expr);                       \
    if (tu_p_ != NULL)                                               \
      FAIL ("%s returned non-NULL, expected NULL", #expr);           \
    CHECK_LAST_ERROR (#expr, (exp_errno), (exp_msg));                \
  } while (0)

/* A string-returning call must return exactly EXPECTED. */
#define CHECK_STR(expr, expected)                                    \
  do {                                                               \
    const char *tu_s_ = (expr);                                      \
    if (tu_s_ == NULL)                                               \
      FAIL ("%s returned NULL, expected \"%s\" (error: %s)",         \
            #expr, (expected), tu_errmsg ());                        \
    if (strcmp (tu_s_, (expected)) != 0)                             \
      FAIL ("%s returned \"%s\", expected \"%s\"",                   \
            #expr, tu_s_, (expected));                               \
  } while (0)

/* Same, for calls returning a malloc'd string that the caller frees. */
#define CHECK_STR_FREE(expr, expected)                               \
  do {                                                               \
    char *tu_s_ = (expr);                                            \
    if (tu_s_ == NULL)                                               \
      FAIL ("%s returned NULL, expected \"%s\" (error: %s)",         \
            #expr, (expected), tu_errmsg ());                        \
    if (strcmp (tu_s_, (expected)) != 0)                             \
      FAIL ("%s returned \"%s\", expected \"%s\"",                   \
            #expr, tu_s_, (expected));                               \
    free (tu_s_);                                                    \
  } while (0)

/* Create a handle or die. */
static inline struct nbd_handle *
tu_create (void)
{
  struct nbd_handle *h = nbd_create ();
  if (h == NULL)
    FAIL ("nbd_create: %s", tu_errmsg ());
  return h;
}

/* Create a handle and connect it to the server started by ARGV. */
static inline struct nbd_handle *
tu_connect (char **argv)
{
  struct nbd_handle *h = tu_create ();
  if (nbd_connect_command (h, argv) == -1)
    FAIL ("nbd_connect_command (%s ...): %s", argv[0], tu_errmsg ());
  return h;
}

/* Expected content of the nbdkit "pattern" plugin: every aligned
 * 8-byte word holds its own offset as a big-endian integer.
 */
static inline unsigned char
tu_pattern_byte (uint64_t offset)
{
  uint64_t word = offset & ~(uint64_t) 7;
  unsigned shift = (unsigned) (7 - (offset & 7)) * 8;
  return (unsigned char) (word >> shift);
}

/* Verify BUF (COUNT bytes read at OFFSET) against the pattern. */
static inline void
tu_check_pattern (const unsigned char *buf, size_t count, uint64_t offset)
{
  size_t i;

  for (i = 0; i < count; ++i) {
    if (buf[i] != tu_pattern_byte (offset + i))
      FAIL ("pattern mismatch at offset %" PRIu64 ": got 0x%02x, "
            "expected 0x%02x", offset + i, buf[i],
            tu_pattern_byte (offset + i));
  }
}

/* Read /proc/PID/stat and return the state letter and parent pid;
 * returns 0 if the process was found.
 */
static inline int
tu_proc_stat (pid_t pid, char *state, pid_t *ppid)
{
  char path[64], comm[256];
  FILE *fp;
  int p, pp, n;
  char st;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  fp = fopen (path, "r");
  if (fp == NULL)
    return -1;
  n = fscanf (fp, "%d (%255[^)]) %c %d", &p, comm, &st, &pp);
  fclose (fp);
  if (n != 4)
    return -1;
  if (state) *state = st;
  if (ppid) *ppid = pp;
  return 0;
}

/* Return the pid of the only live or zombie child of this process,
 * 0 if there is none; fail if there are several.  libnbd forks the
 * server of nbd_connect_command as a direct child, so this finds it
 * without needing nbd_get_subprocess_pid (which 1.14 lacks).
 */
static inline pid_t
tu_find_child (void)
{
  DIR *dir;
  struct dirent *d;
  pid_t found = 0, me = getpid ();

  dir = opendir ("/proc");
  if (dir == NULL)
    FAIL ("opendir /proc: %s", strerror (errno));
  while ((d = readdir (dir)) != NULL) {
    pid_t pid, ppid;
    char *end;

    pid = (pid_t) strtol (d->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    if (tu_proc_stat (pid, NULL, &ppid) == 0 && ppid == me) {
      if (found != 0)
        FAIL ("more than one child process (%d and %d)",
              (int) found, (int) pid);
      found = pid;
    }
  }
  closedir (dir);
  return found;
}

/* Sleep for MS milliseconds. */
static inline void
tu_msleep (long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep (&ts, NULL);
}

/* Start "nbdkit -f --exit-with-parent -U PATH ARGS..." (ARGS ends with
 * NULL, at most 10 of them; PATH is /tmp/TAG-PID.sock, written to PATH,
 * of LEN bytes) and wait until it accepts connections: the socket file
 * exists from bind, before listen.  Returns its pid; the caller stops it
 * by that pid.
 */
static inline pid_t
tu_start_nbdkit_unix_args (const char *tag, char *path, size_t len,
                           char **args)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  char *argv[16] = { "nbdkit", "-f", "--exit-with-parent", "-U", path };
  pid_t pid;
  int i, n = 5, fd, ok = 0;

  snprintf (path, len, "/tmp/%s-%d.sock", tag, (int) getpid ());
  if (strlen (path) >= sizeof sun.sun_path)
    FAIL ("socket path too long: %s", path);
  strcpy (sun.sun_path, path);
  unlink (path);
  for (i = 0; args[i] != NULL; ++i) {
    if (n >= 15)
      FAIL ("too many nbdkit arguments");
    argv[n++] = args[i];
  }
  argv[n] = NULL;
  pid = fork ();
  if (pid == -1)
    FAIL ("fork: %s", strerror (errno));
  if (pid == 0) {
    execvp ("nbdkit", argv);
    _exit (127);
  }
  for (i = 0; i < 1000 && !ok; ++i) {
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
      FAIL ("socket: %s", strerror (errno));
    ok = connect (fd, (struct sockaddr *) &sun, sizeof sun) == 0;
    close (fd);
    if (!ok)
      tu_msleep (10);
  }
  if (!ok)
    FAIL ("nbdkit did not start listening on %s", path);
  return pid;
}

/* tu_start_nbdkit_unix_args with "memory 1M". */
static inline pid_t
tu_start_nbdkit_unix (const char *tag, char *path, size_t len)
{
  char *args[] = { "memory", "1M", NULL };
  return tu_start_nbdkit_unix_args (tag, path, len, args);
}

/* Number of threads listed in /proc/PID/task (0 if unreadable). */
static inline int
tu_thread_count (pid_t pid)
{
  char path[64];
  DIR *dir;
  struct dirent *d;
  int n = 0;

  snprintf (path, sizeof path, "/proc/%d/task", (int) pid);
  dir = opendir (path);
  if (dir == NULL)
    return 0;
  while ((d = readdir (dir)) != NULL)
    if (d->d_name[0] != '.')
      n++;
  closedir (dir);
  return n;
}

/* Wait (up to ~10 s) until PID has completely exited: gone, or a
 * zombie whose other threads have all finished too (only then are its
 * file descriptors, e.g. its end of the NBD socket, closed).  Returns
 * 0 when it has exited, -1 on timeout.
 */
static inline int
tu_wait_exited (pid_t pid)
{
  int i;
  char st;

  for (i = 0; i < 1000; ++i) {
    if (tu_proc_stat (pid, &st, NULL) == -1)
      return 0;
    if ((st == 'Z' || st == 'X') && tu_thread_count (pid) <= 1)
      return 0;
    tu_msleep (10);
  }
  return -1;
}

/* True if PID no longer exists at all (reaped, not even a zombie). */
static inline int
tu_pid_gone (pid_t pid)
{
  return kill (pid, 0) == -1 && errno == ESRCH;
}

#endif /* RUST_LIBNBD_TEST_UTIL_H */
