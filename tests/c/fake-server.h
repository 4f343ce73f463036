/* A scripted NBD server for the C tests: a child process on one end of
 * a socketpair speaks the protocol the way a test wants, including the
 * ways no real server would.  The same program then runs against any
 * libnbd (ours or the oracle) and shows how each one reacts.
 *
 * Usage: fill a struct fake_cfg, call fake_start (h, &cfg, transmission)
 * which forks the server and connects the handle with
 * nbd_connect_socket, and at the end fake_wait (&srv).  The server's
 * transmission function gets the connection after the handshake; the
 * fake_* helpers read requests and send replies.  The child ends
 * quietly as soon as the client goes away.
 */
#ifndef RUST_LIBNBD_FAKE_SERVER_H
#define RUST_LIBNBD_FAKE_SERVER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem */
#endif

#include <stdbool.h>
#include <sys/socket.h>
#include <endian.h>

#include "test-util.h"

#define FS_NBDMAGIC        UINT64_C (0x4e42444d41474943)
#define FS_IHAVEOPT        UINT64_C (0x49484156454f5054)
#define FS_REP_MAGIC       UINT64_C (0x0003e889045565a9)
#define FS_REQ_MAGIC       UINT32_C (0x25609513)
#define FS_EXT_REQ_MAGIC   UINT32_C (0x21e41c71)
#define FS_SIMPLE_MAGIC    UINT32_C (0x67446698)
#define FS_CHUNK_MAGIC     UINT32_C (0x668e33ef)
#define FS_EXT_REPLY_MAGIC UINT32_C (0x6e8a278c)

#define FS_OPT_EXPORT_NAME      1
#define FS_OPT_ABORT            2
#define FS_OPT_LIST             3
#define FS_OPT_STARTTLS         5
#define FS_OPT_INFO             6
#define FS_OPT_GO               7
#define FS_OPT_STRUCTURED_REPLY 8
#define FS_OPT_LIST_META        9
#define FS_OPT_SET_META        10
#define FS_OPT_EXTENDED_HEADERS 11

#define FS_REP_ACK           1
#define FS_REP_SERVER        2
#define FS_REP_INFO          3
#define FS_REP_META_CONTEXT  4
#define FS_REP_ERR_UNSUP     (UINT32_C (0x80000000) | 1)
#define FS_REP_ERR_UNKNOWN   (UINT32_C (0x80000000) | 6)

#define FS_INFO_EXPORT     0
#define FS_INFO_NAME       1
#define FS_INFO_BLOCK_SIZE 3

#define FS_CMD_READ         0
#define FS_CMD_WRITE        1
#define FS_CMD_DISC         2
#define FS_CMD_BLOCK_STATUS 7

#define FS_REPLY_DONE         1
#define FS_TYPE_NONE          0
#define FS_TYPE_OFFSET_DATA   1
#define FS_TYPE_BS            5
#define FS_TYPE_BS_EXT        6

/* Transmission flags: has flags, flush, fua, trim, write zeroes. */
#define FS_EFLAGS (1 | 4 | 8 | 32 | 64)

/* How the fake server does the handshake. */
struct fake_cfg {
  uint16_t gflags;            /* global flags; 0 means fixed newstyle + no zeroes */
  bool not_fixed;             /* gflags 0: plain, not fixed, newstyle */
  bool structured;            /* ACK NBD_OPT_STRUCTURED_REPLY */
  bool extended;              /* ACK NBD_OPT_EXTENDED_HEADERS */
  uint64_t size;              /* export size (0 means 1 MiB) */
  bool no_export_info;        /* answer GO with ACK but no NBD_INFO_EXPORT */
  bool block_size;            /* send NBD_INFO_BLOCK_SIZE ... */
  uint32_t bs_min, bs_pref, bs_max;
  uint32_t name_len;          /* send an NBD_INFO_NAME this long (if > 0) */
  uint32_t refuse_go;         /* refuse GO/INFO with this error reply */
  const char *refuse_msg;     /* ... and this message (NULL: none) */
  /* If set, answers NBD_OPT_GO/INFO instead (and the server then ends). */
  void (*go_hook) (int fd, uint32_t option);
  /* Every option the client sent, in order (for checks after the fact:
   * written by the child, so only seen through `log_fd`).
   */
};

struct fake_srv {
  pid_t pid;
  int log_fd;                 /* read end: one byte per option the client sent */
};

/* The request the client sent. */
struct fake_req {
  uint16_t flags, type;
  uint64_t cookie, offset, count;
  bool extended;
};

static inline void
fake_send (int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0) {
    ssize_t r = send (fd, p, len, MSG_NOSIGNAL);
    if (r <= 0)
      _exit (0);                /* the client went away */
    p += r;
    len -= r;
  }
}

static inline void
fake_recv (int fd, void *buf, size_t len)
{
  char *p = buf;
  while (len > 0) {
    ssize_t r = recv (fd, p, len, 0);
    if (r <= 0)
      _exit (0);
    p += r;
    len -= r;
  }
}

static inline void
fake_put16 (unsigned char *p, uint16_t v) { v = htobe16 (v); memcpy (p, &v, 2); }
static inline void
fake_put32 (unsigned char *p, uint32_t v) { v = htobe32 (v); memcpy (p, &v, 4); }
static inline void
fake_put64 (unsigned char *p, uint64_t v) { v = htobe64 (v); memcpy (p, &v, 8); }
static inline uint16_t
fake_get16 (const unsigned char *p) { uint16_t v; memcpy (&v, p, 2); return be16toh (v); }
static inline uint32_t
fake_get32 (const unsigned char *p) { uint32_t v; memcpy (&v, p, 4); return be32toh (v); }
static inline uint64_t
fake_get64 (const unsigned char *p) { uint64_t v; memcpy (&v, p, 8); return be64toh (v); }

static inline void
fake_opt_reply (int fd, uint32_t option, uint32_t reply,
                const void *payload, uint32_t len)
{
  unsigned char h[20];
  fake_put64 (h, FS_REP_MAGIC);
  fake_put32 (h + 8, option);
  fake_put32 (h + 12, reply);
  fake_put32 (h + 16, len);
  fake_send (fd, h, sizeof h);
  if (len)
    fake_send (fd, payload, len);
}

/* Reads one option; returns its number, payload in a malloc'd buffer. */
static inline uint32_t
fake_recv_opt (int fd, unsigned char **payload, uint32_t *len)
{
  unsigned char h[16];
  fake_recv (fd, h, sizeof h);
  *len = fake_get32 (h + 12);
  *payload = malloc (*len + 1);
  if (*payload == NULL)
    _exit (1);
  fake_recv (fd, *payload, *len);
  return fake_get32 (h + 8);
}

/* Drains whatever the client sends until it closes. */
static inline void
fake_drain (int fd)
{
  char buf[4096];
  while (recv (fd, buf, sizeof buf, 0) > 0)
    ;
  _exit (0);
}

/* Whether extended headers were negotiated (set during the handshake). */
static bool fake_ext;
static bool fake_sr;

/* The handshake as `cfg` says.  Returns when the client has sent GO (and
 * got its answer) or EXPORT_NAME; never returns if the client aborts.
 */
static inline void
fake_handshake (int fd, const struct fake_cfg *cfg, int log_fd)
{
  unsigned char g[18], cflags[4];
  uint16_t gflags = cfg->not_fixed ? 0 : cfg->gflags ? cfg->gflags : 3;
  uint64_t size = cfg->size ? cfg->size : 1024 * 1024;

  fake_put64 (g, FS_NBDMAGIC);
  fake_put64 (g + 8, FS_IHAVEOPT);
  fake_put16 (g + 16, gflags);
  fake_send (fd, g, sizeof g);
  fake_recv (fd, cflags, sizeof cflags);

  for (;;) {
    unsigned char *p, info[12];
    uint32_t len;
    uint32_t opt = fake_recv_opt (fd, &p, &len);
    unsigned char byte = opt;

    if (log_fd >= 0 && write (log_fd, &byte, 1) != 1)
      _exit (1);
    switch (opt) {
    case FS_OPT_EXPORT_NAME: {
      unsigned char r[10];
      fake_put64 (r, size);
      fake_put16 (r + 8, FS_EFLAGS);
      fake_send (fd, r, sizeof r);
      if (!(fake_get32 (cflags) & 2)) {
        unsigned char zeroes[124] = { 0 };
        fake_send (fd, zeroes, sizeof zeroes);
      }
      free (p);
      return;
    }
    case FS_OPT_ABORT:
      fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
      free (p);
      _exit (0);
    case FS_OPT_STRUCTURED_REPLY:
      if (cfg->structured) {
        fake_sr = true;
        fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
      }
      else
        fake_opt_reply (fd, opt, FS_REP_ERR_UNSUP, NULL, 0);
      break;
    case FS_OPT_EXTENDED_HEADERS:
      if (cfg->extended) {
        fake_sr = fake_ext = true;
        fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
      }
      else
        fake_opt_reply (fd, opt, FS_REP_ERR_UNSUP, NULL, 0);
      break;
    case FS_OPT_SET_META: {
      /* Agree to base:allocation as context 1 if asked for. */
      unsigned char ctx[4 + 15];
      if (len > 0 && memmem (p, len, "base:allocation", 15)) {
        fake_put32 (ctx, 1);
        memcpy (ctx + 4, "base:allocation", 15);
        fake_opt_reply (fd, opt, FS_REP_META_CONTEXT, ctx, sizeof ctx);
      }
      fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
      break;
    }
    case FS_OPT_INFO:
    case FS_OPT_GO:
      if (cfg->go_hook) {
        cfg->go_hook (fd, opt);
        fake_drain (fd);
      }
      if (cfg->refuse_go) {
        fake_opt_reply (fd, opt, cfg->refuse_go, cfg->refuse_msg,
                        cfg->refuse_msg ? strlen (cfg->refuse_msg) : 0);
        break;
      }
      if (!cfg->no_export_info) {
        fake_put16 (info, FS_INFO_EXPORT);
        fake_put64 (info + 2, size);
        fake_put16 (info + 10, FS_EFLAGS);
        fake_opt_reply (fd, opt, FS_REP_INFO, info, sizeof info);
      }
      if (cfg->block_size) {
        unsigned char bs[14];
        fake_put16 (bs, FS_INFO_BLOCK_SIZE);
        fake_put32 (bs + 2, cfg->bs_min);
        fake_put32 (bs + 6, cfg->bs_pref);
        fake_put32 (bs + 10, cfg->bs_max);
        fake_opt_reply (fd, opt, FS_REP_INFO, bs, sizeof bs);
      }
      if (cfg->name_len) {
        unsigned char *n = malloc (2 + cfg->name_len);
        if (n == NULL)
          _exit (1);
        fake_put16 (n, FS_INFO_NAME);
        memset (n + 2, 'x', cfg->name_len);
        fake_opt_reply (fd, opt, FS_REP_INFO, n, 2 + cfg->name_len);
        free (n);
      }
      fake_opt_reply (fd, opt, FS_REP_ACK, NULL, 0);
      if (opt == FS_OPT_GO) {
        free (p);
        return;
      }
      break;
    default:
      fake_opt_reply (fd, opt, FS_REP_ERR_UNSUP, NULL, 0);
    }
    free (p);
  }
}

/* Reads one request header (compact or extended, as negotiated) and
 * skips a write's payload.
 */
static inline void
fake_recv_req (int fd, struct fake_req *req)
{
  unsigned char h[32];
  size_t len = fake_ext ? 32 : 28;
  fake_recv (fd, h, len);
  req->extended = fake_get32 (h) == FS_EXT_REQ_MAGIC;
  req->flags = fake_get16 (h + 4);
  req->type = fake_get16 (h + 6);
  req->cookie = fake_get64 (h + 8);
  req->offset = fake_get64 (h + 16);
  req->count = fake_ext ? fake_get64 (h + 24) : fake_get32 (h + 24);
  if (req->type == FS_CMD_WRITE) {
    char buf[65536];
    uint64_t left = req->count;
    while (left > 0) {
      size_t n = left < sizeof buf ? left : sizeof buf;
      fake_recv (fd, buf, n);
      left -= n;
    }
  }
}

static inline void
fake_simple_reply (int fd, uint32_t error, uint64_t cookie)
{
  unsigned char r[16];
  fake_put32 (r, FS_SIMPLE_MAGIC);
  fake_put32 (r + 4, error);
  fake_put64 (r + 8, cookie);
  fake_send (fd, r, sizeof r);
}

/* A compact structured reply chunk header. */
static inline void
fake_chunk (int fd, uint16_t flags, uint16_t type, uint64_t cookie,
            uint32_t length)
{
  unsigned char r[20];
  fake_put32 (r, FS_CHUNK_MAGIC);
  fake_put16 (r + 4, flags);
  fake_put16 (r + 6, type);
  fake_put64 (r + 8, cookie);
  fake_put32 (r + 16, length);
  fake_send (fd, r, sizeof r);
}

/* An extended reply chunk header. */
static inline void
fake_ext_chunk (int fd, uint16_t flags, uint16_t type, uint64_t cookie,
                uint64_t offset, uint64_t length)
{
  unsigned char r[32];
  fake_put32 (r, FS_EXT_REPLY_MAGIC);
  fake_put16 (r + 4, flags);
  fake_put16 (r + 6, type);
  fake_put64 (r + 8, cookie);
  fake_put64 (r + 16, offset);
  fake_put64 (r + 24, length);
  fake_send (fd, r, sizeof r);
}

/* Answers a request correctly (reads: zeroes), in the negotiated style. */
static inline void
fake_answer (int fd, const struct fake_req *req)
{
  if (req->type == FS_CMD_READ && fake_sr) {
    static char zero[65536];
    uint64_t left = req->count;
    if (fake_ext)
      fake_ext_chunk (fd, FS_REPLY_DONE, FS_TYPE_OFFSET_DATA, req->cookie,
                      req->offset, 8 + req->count);
    else
      fake_chunk (fd, FS_REPLY_DONE, FS_TYPE_OFFSET_DATA, req->cookie,
                  8 + req->count);
    unsigned char off[8];
    fake_put64 (off, req->offset);
    fake_send (fd, off, 8);
    while (left > 0) {
      size_t n = left < sizeof zero ? left : sizeof zero;
      fake_send (fd, zero, n);
      left -= n;
    }
    return;
  }
  if (fake_ext) {
    fake_ext_chunk (fd, FS_REPLY_DONE, FS_TYPE_NONE, req->cookie,
                    req->offset, 0);
    return;
  }
  fake_simple_reply (fd, 0, req->cookie);
  if (req->type == FS_CMD_READ) {
    static char zero[65536];
    uint64_t left = req->count;
    while (left > 0) {
      size_t n = left < sizeof zero ? left : sizeof zero;
      fake_send (fd, zero, n);
      left -= n;
    }
  }
}

/* Serves correctly until the client disconnects. */
static inline void
fake_serve (int fd)
{
  for (;;) {
    struct fake_req req;
    fake_recv_req (fd, &req);
    if (req.type == FS_CMD_DISC)
      _exit (0);
    fake_answer (fd, &req);
  }
}

typedef void (*fake_transmission) (int fd, void *arg);

/* Forks a fake server doing the handshake per `cfg`, then `fn` (NULL:
 * serve correctly), and connects `h` to it.  Returns what
 * nbd_connect_socket returned.
 */
static inline int
fake_start (struct nbd_handle *h, const struct fake_cfg *cfg,
            fake_transmission fn, void *arg, struct fake_srv *srv)
{
  int sv[2], logp[2];
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1 ||
      pipe (logp) == -1) {
    perror ("socketpair");
    exit (EXIT_FAILURE);
  }
  srv->pid = fork ();
  if (srv->pid == -1) {
    perror ("fork");
    exit (EXIT_FAILURE);
  }
  if (srv->pid == 0) {
    close (sv[0]);
    close (logp[0]);
    fake_handshake (sv[1], cfg, logp[1]);
    close (logp[1]);
    if (fn)
      fn (sv[1], arg);
    else
      fake_serve (sv[1]);
    _exit (0);
  }
  close (sv[1]);
  close (logp[1]);
  srv->log_fd = logp[0];
  return nbd_connect_socket (h, sv[0]);
}

/* Reaps the fake server (the handle must be closed first, or the
 * server must be done) and returns the options the client sent, as a
 * NUL-terminated string of option numbers (caller frees nothing: a
 * static buffer).
 */
static inline const unsigned char *
fake_wait (struct fake_srv *srv)
{
  static unsigned char opts[256];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof opts - 1 &&
         (r = read (srv->log_fd, opts + n, sizeof opts - 1 - n)) > 0)
    n += r;
  opts[n] = 0;
  close (srv->log_fd);
  waitpid (srv->pid, NULL, 0);
  return opts;
}

#endif /* RUST_LIBNBD_FAKE_SERVER_H */
