/* How replies that break the protocol are handled, each sent by a
 * scripted server (fake-server.h), compared with libnbd 1.22.2:
 * reply magic that does not match the negotiated headers, an extended
 * reply for the wrong offset, block status extents of zero length or
 * past the end of the export, invalid block size constraints, an
 * overlong NBD_INFO_NAME, and a server closing with a command in flight.
 */
#include "fake-server.h"

static void
bs_chunk32 (int fd, uint16_t flags, uint64_t cookie, uint64_t offset,
            size_t n, const uint32_t *ext)
{
  unsigned char p[4 + 8 * 8];
  size_t i;
  fake_put32 (p, 1);
  for (i = 0; i < n; ++i) {
    fake_put32 (p + 4 + 8 * i, ext[2 * i]);
    fake_put32 (p + 8 + 8 * i, ext[2 * i + 1]);
  }
  if (fake_ext)
    fake_ext_chunk (fd, flags, FS_TYPE_BS, cookie, offset, 4 + 8 * n);
  else
    fake_chunk (fd, flags, FS_TYPE_BS, cookie, 4 + 8 * n);
  fake_send (fd, p, 4 + 8 * n);
}

static void
bs_chunk64 (int fd, uint16_t flags, uint64_t cookie, uint64_t offset,
            size_t n, const uint64_t *ext)
{
  unsigned char p[8 + 16 * 8];
  size_t i;
  fake_put32 (p, 1);
  fake_put32 (p + 4, n);
  for (i = 0; i < n; ++i) {
    fake_put64 (p + 8 + 16 * i, ext[2 * i]);
    fake_put64 (p + 16 + 16 * i, ext[2 * i + 1]);
  }
  fake_ext_chunk (fd, flags, FS_TYPE_BS_EXT, cookie, offset, 8 + 16 * n);
  fake_send (fd, p, 8 + 16 * n);
}

/* What the server does with the first request; later ones are served
 * correctly.
 */
enum fault {
  EXT_REPLY_UNNEGOTIATED,       /* extended reply, extended headers refused */
  COMPACT_CHUNK_UNDER_EXT,      /* compact chunk after extended headers */
  SIMPLE_REPLY_UNDER_EXT,       /* simple reply after extended headers */
  EXT_WRONG_OFFSET,             /* extended reply naming another offset */
  BS32_UNDER_EXT,               /* 32-bit block status chunk, extended */
  BS_ZERO_FIRST,                /* zero-length first extent */
  BS_ZERO_LATER,                /* zero-length second extent */
  BS_PAST_REQUEST,              /* extent beyond the request, inside export */
  BS_PAST_EXPORT,               /* extent beyond the export */
  BS_UNKNOWN_CONTEXT,           /* context id never agreed */
  CLOSE_IN_FLIGHT,              /* close with the command in flight */
  DATA_OUT_OF_BOUNDS,           /* read data running past the request */
  HOLE_BEFORE_REQUEST,          /* a hole starting before the request */
  DATA_ZERO_LENGTH,             /* an empty data chunk, then the data */
  BS_EXT_BAD_COUNT,             /* descriptor count not matching length */
  BS_EXT_WIDE_FLAGS_FIRST,      /* 64-bit flags in the first extent */
  BS_EXT_WIDE_FLAGS_LATER,      /* 64-bit flags in the second extent */
};

static void
misbehave (int fd, void *arg)
{
  enum fault f = *(enum fault *) arg;
  struct fake_req req;

  fake_recv_req (fd, &req);
  switch (f) {
  case EXT_REPLY_UNNEGOTIATED:
    fake_ext_chunk (fd, FS_REPLY_DONE, FS_TYPE_NONE, req.cookie, req.offset, 0);
    break;
  case COMPACT_CHUNK_UNDER_EXT: {
    /* 20 bytes, then 12 more so that a 32-byte read completes. */
    char pad[12] = { 0 };
    fake_chunk (fd, FS_REPLY_DONE, FS_TYPE_NONE, req.cookie, 0);
    fake_send (fd, pad, sizeof pad);
    break;
  }
  case SIMPLE_REPLY_UNDER_EXT: {
    char pad[16] = { 0 };
    fake_simple_reply (fd, 0, req.cookie);
    fake_send (fd, pad, sizeof pad);
    break;
  }
  case EXT_WRONG_OFFSET:
    fake_ext_chunk (fd, FS_REPLY_DONE, FS_TYPE_NONE, req.cookie,
                    req.offset + 512, 0);
    break;
  case BS32_UNDER_EXT: {
    uint32_t e[] = { 4096, 3 };
    bs_chunk32 (fd, FS_REPLY_DONE, req.cookie, req.offset, 1, e);
    break;
  }
  case BS_ZERO_FIRST: {
    uint64_t e[] = { 0, 1, 512, 2 };
    uint32_t e32[] = { 0, 1, 512, 2 };
    if (fake_ext)
      bs_chunk64 (fd, FS_REPLY_DONE, req.cookie, req.offset, 2, e);
    else
      bs_chunk32 (fd, FS_REPLY_DONE, req.cookie, req.offset, 2, e32);
    break;
  }
  case BS_ZERO_LATER: {
    uint32_t e[] = { 512, 1, 0, 2, 512, 3 };
    bs_chunk32 (fd, FS_REPLY_DONE, req.cookie, req.offset, 3, e);
    break;
  }
  case BS_PAST_REQUEST: {
    uint32_t e[] = { 65536, 1 };
    bs_chunk32 (fd, FS_REPLY_DONE, req.cookie, req.offset, 1, e);
    break;
  }
  case BS_PAST_EXPORT: {
    uint32_t e[] = { 2048, 1, 65536, 2, 512, 3 };
    bs_chunk32 (fd, FS_REPLY_DONE, req.cookie, req.offset, 3, e);
    break;
  }
  case BS_UNKNOWN_CONTEXT: {
    unsigned char p[12];
    fake_put32 (p, 99);
    fake_put32 (p + 4, 4096);
    fake_put32 (p + 8, 0);
    fake_chunk (fd, FS_REPLY_DONE, FS_TYPE_BS, req.cookie, sizeof p);
    fake_send (fd, p, sizeof p);
    break;
  }
  case CLOSE_IN_FLIGHT:
    _exit (0);
  case DATA_OUT_OF_BOUNDS:
  case DATA_ZERO_LENGTH: {
    unsigned char p[8 + 1024] = { 0 };
    uint32_t len = f == DATA_ZERO_LENGTH ? 0 : req.count + 1;
    fake_put64 (p, req.offset);
    fake_chunk (fd, f == DATA_ZERO_LENGTH ? 0 : FS_REPLY_DONE,
                FS_TYPE_OFFSET_DATA, req.cookie, 8 + len);
    fake_send (fd, p, 8 + len);
    if (f == DATA_ZERO_LENGTH)
      fake_answer (fd, &req);
    break;
  }
  case BS_EXT_BAD_COUNT:
  case BS_EXT_WIDE_FLAGS_FIRST:
  case BS_EXT_WIDE_FLAGS_LATER: {
    uint64_t e[] = { 2048, 1, 2048, 2 };
    unsigned char p[8 + 32];
    if (f == BS_EXT_WIDE_FLAGS_FIRST)
      e[1] = UINT64_C (0x100000003);
    if (f == BS_EXT_WIDE_FLAGS_LATER)
      e[3] = UINT64_C (0x100000002);
    if (f != BS_EXT_BAD_COUNT) {
      bs_chunk64 (fd, FS_REPLY_DONE, req.cookie, req.offset, 2, e);
      break;
    }
    memset (p, 0, sizeof p);
    fake_put32 (p, 1);
    fake_put32 (p + 4, 3);
    fake_ext_chunk (fd, FS_REPLY_DONE, FS_TYPE_BS_EXT, req.cookie,
                    req.offset, sizeof p);
    fake_send (fd, p, sizeof p);
    break;
  }
  case HOLE_BEFORE_REQUEST: {
    unsigned char p[12];
    fake_put64 (p, req.offset - 1);
    fake_put32 (p + 8, req.count);
    fake_chunk (fd, FS_REPLY_DONE, 2, req.cookie, sizeof p);
    fake_send (fd, p, sizeof p);
    break;
  }
  }
  fake_serve (fd);
}

struct seen {
  size_t calls, n;
  uint64_t len[8], flags[8];
};

static int
extent32 (void *user_data, const char *metacontext, uint64_t offset,
          uint32_t *entries, size_t nr_entries, int *error)
{
  struct seen *s = user_data;
  size_t i;
  s->calls++;
  for (i = 0; i + 1 < nr_entries && s->n < 8; i += 2, s->n++) {
    s->len[s->n] = entries[i];
    s->flags[s->n] = entries[i + 1];
  }
  return 0;
}

struct result {
  int r, err;                   /* the first command */
  char msg[256];
  int dead, closed;             /* the handle after it */
  int r2, err2;                 /* a read after it */
  struct seen s;                /* what the extent callback saw */
};

/* Runs one fault: the first command is a block status at `off` for
 * `count` (if `bs`) or a flush; then a read.
 */
static void
run (enum fault f, bool extended, bool bs, uint64_t off, uint64_t count,
     struct result *res)
{
  struct nbd_handle *h = tu_create ();
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true, .extended = extended };
  char buf[512];

  memset (res, 0, sizeof *res);
  CHECK_OK (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION));
  CHECK_OK (fake_start (h, &cfg, misbehave, &f, &srv));
  CHECK_INT (nbd_get_extended_headers_negotiated (h), extended);
  if (bs)
    res->r = nbd_block_status (h, count, off,
                               (nbd_extent_callback) {
                                 .callback = extent32, .user_data = &res->s },
                               0);
  else
    res->r = nbd_flush (h, 0);
  if (res->r == -1) {
    res->err = nbd_get_errno ();
    snprintf (res->msg, sizeof res->msg, "%s", tu_errmsg ());
  }
  res->dead = nbd_aio_is_dead (h);
  res->closed = nbd_aio_is_closed (h);
  res->r2 = nbd_pread (h, buf, sizeof buf, 0, 0);
  if (res->r2 == -1)
    res->err2 = nbd_get_errno ();
  nbd_close (h);
  fake_wait (&srv);
}

/* The connection is dead after a reply with the wrong magic.  libnbd
 * leaves errno 0 here; we report EPROTO (see README).
 */
static void
check_bad_magic (enum fault f, bool extended, const char *magic)
{
  struct result res;
  char msg[128];

  run (f, extended, false, 0, 0, &res);
  CHECK_INT (res.r, -1);
  if (res.err != 0 && res.err != EPROTO)
    FAIL ("bad magic %s: errno %d", magic, res.err);
  snprintf (msg, sizeof msg,
            "nbd_flush: invalid or unexpected reply magic %s", magic);
  if (strncmp (res.msg, msg, strlen (msg)) != 0)
    FAIL ("bad magic: message \"%s\", expected \"%s...\"", res.msg, msg);
  CHECK_INT (res.dead, 1);
  CHECK_INT (res.r2, -1);
  CHECK_INT (res.err2, EINVAL);
}

/* The command fails (or not) with `err`, the handle lives on. */
static void
check_alive (const struct result *res, int err)
{
  CHECK_INT (res->r, err ? -1 : 0);
  CHECK_INT (res->err, err);
  CHECK_INT (res->dead, 0);
  CHECK_INT (res->r2, 0);
}

static void
check_extents (const struct result *res, size_t n, const uint64_t *ext)
{
  size_t i;
  CHECK_INT (res->s.calls, n > 0);
  CHECK_INT (res->s.n, n);
  for (i = 0; i < n; ++i) {
    CHECK_INT (res->s.len[i], ext[2 * i]);
    CHECK_INT (res->s.flags[i], ext[2 * i + 1]);
  }
}

static int
chunk_cb (void *user_data, const void *subbuf, size_t count,
          uint64_t offset, unsigned status, int *error)
{
  size_t *calls = user_data;
  if (calls[0] < 4)
    calls[1 + calls[0]] = count;
  calls[0]++;
  return 0;
}

/* A structured read of 512 bytes at 4096 answered with fault `f`. */
static void
run_read (enum fault f, int *r, int *err, char *msg, size_t msglen,
          int *dead, size_t *calls)
{
  struct nbd_handle *h = tu_create ();
  struct fake_srv srv;
  struct fake_cfg cfg = { .structured = true };
  char buf[512];

  memset (calls, 0, 5 * sizeof *calls);
  CHECK_OK (fake_start (h, &cfg, misbehave, &f, &srv));
  *r = nbd_pread_structured (h, buf, sizeof buf, 4096,
                             (nbd_chunk_callback) { .callback = chunk_cb,
                                                    .user_data = calls }, 0);
  *err = *r == -1 ? nbd_get_errno () : 0;
  snprintf (msg, msglen, "%s", *r == -1 ? tu_errmsg () : "");
  *dead = nbd_aio_is_dead (h);
  nbd_close (h);
  fake_wait (&srv);
}

/* A read chunk outside the request kills the connection (errno: libnbd
 * leaves 0, we say EPROTO; see README).
 */
static void
check_out_of_bounds (enum fault f, const char *exp_msg)
{
  int r, err, dead;
  char msg[256];
  size_t calls[5];

  run_read (f, &r, &err, msg, sizeof msg, &dead, calls);
  CHECK_INT (r, -1);
  if (err != 0 && err != EPROTO)
    FAIL ("out of bounds chunk: errno %d", err);
  if (strncmp (msg, exp_msg, strlen (exp_msg)) != 0)
    FAIL ("out of bounds chunk: message \"%s\", expected \"%s...\"",
          msg, exp_msg);
  CHECK_INT (dead, 1);
  CHECK_INT (calls[0], 0);
}

int
main (void)
{
  struct result res;
  int r, err, dead;
  char msg[256];
  size_t calls[5];

  /* Read chunks outside the request. */
  check_out_of_bounds (DATA_OUT_OF_BOUNDS,
                       "nbd_pread_structured: range of structured reply is "
                       "out of bounds, offset=4096, cmd->offset=4096, "
                       "length=513, cmd->count=512: this is likely to be a "
                       "bug in the NBD server");
  check_out_of_bounds (HOLE_BEFORE_REQUEST,
                       "nbd_pread_structured: range of structured reply is "
                       "out of bounds, offset=4095, cmd->offset=4096, "
                       "length=512, cmd->count=512: this is likely to be a "
                       "bug in the NBD server");

  /* An empty data chunk inside the request is accepted and shown. */
  run_read (DATA_ZERO_LENGTH, &r, &err, msg, sizeof msg, &dead, calls);
  CHECK_INT (r, 0);
  CHECK_INT (calls[0], 2);
  CHECK_INT (calls[1], 0);
  CHECK_INT (calls[2], 512);

  /* Reply magic that does not match the negotiated headers. */
  check_bad_magic (EXT_REPLY_UNNEGOTIATED, false, "0x6e8a278c");
  check_bad_magic (COMPACT_CHUNK_UNDER_EXT, true, "0x668e33ef");
  check_bad_magic (SIMPLE_REPLY_UNDER_EXT, true, "0x67446698");

  /* An extended reply for another offset: skipped, the command fails. */
  run (EXT_WRONG_OFFSET, true, true, 4096, 4096, &res);
  check_alive (&res, EPROTO);
  CHECK_INT (res.s.calls, 0);

  /* A 32-bit block status chunk under extended headers: shown, but the
   * command fails.
   */
  run (BS32_UNDER_EXT, true, true, 0, 4096, &res);
  check_alive (&res, EPROTO);
  check_extents (&res, 1, (uint64_t []) { 4096, 3 });

  /* A zero-length first extent: shown alone, the command fails; a later
   * one ends the list without error.
   */
  run (BS_ZERO_FIRST, false, true, 0, 4096, &res);
  check_alive (&res, EPROTO);
  check_extents (&res, 1, (uint64_t []) { 0, 1 });
  run (BS_ZERO_FIRST, true, true, 0, 4096, &res);
  check_alive (&res, EPROTO);
  check_extents (&res, 1, (uint64_t []) { 0, 1 });
  run (BS_ZERO_LATER, false, true, 0, 4096, &res);
  check_alive (&res, 0);
  check_extents (&res, 1, (uint64_t []) { 512, 1 });

  /* Past the request but inside the export: shown as sent.  Past the
   * export: clamped to its end, the list stops, the command fails.
   */
  run (BS_PAST_REQUEST, false, true, 0, 4096, &res);
  check_alive (&res, 0);
  check_extents (&res, 1, (uint64_t []) { 65536, 1 });
  run (BS_PAST_EXPORT, false, true, 1024 * 1024 - 4096, 4096, &res);
  check_alive (&res, EPROTO);
  check_extents (&res, 2, (uint64_t []) { 2048, 1, 2048, 2 });

  /* Extended block status: a descriptor count that does not match the
   * length fails the command unseen; flags a 32-bit callback cannot hold
   * end the list, with EOVERFLOW if they come first (truncated).
   */
  run (BS_EXT_BAD_COUNT, true, true, 0, 4096, &res);
  check_alive (&res, EPROTO);
  CHECK_INT (res.s.calls, 0);
  run (BS_EXT_WIDE_FLAGS_FIRST, true, true, 0, 4096, &res);
  check_alive (&res, EOVERFLOW);
  check_extents (&res, 1, (uint64_t []) { 2048, 3 });
  run (BS_EXT_WIDE_FLAGS_LATER, true, true, 0, 4096, &res);
  check_alive (&res, 0);
  check_extents (&res, 1, (uint64_t []) { 2048, 1 });

  /* A context never agreed to: ignored. */
  run (BS_UNKNOWN_CONTEXT, false, true, 0, 4096, &res);
  check_alive (&res, 0);
  CHECK_INT (res.s.calls, 0);

  /* The server closes between replies with a command in flight: the
   * command fails with ENOTCONN, the handle is closed (not dead).
   */
  run (CLOSE_IN_FLIGHT, false, false, 0, 0, &res);
  CHECK_INT (res.r, -1);
  CHECK_INT (res.err, ENOTCONN);
  CHECK (strcmp (res.msg, "nbd_flush: flush: command failed: "
                 "Transport endpoint is not connected") == 0);
  CHECK_INT (res.dead, 0);
  CHECK_INT (res.closed, 1);
  CHECK_INT (res.r2, -1);
  CHECK_INT (res.err2, EINVAL);
  return 0;
}
