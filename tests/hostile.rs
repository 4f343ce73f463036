//! Hostile servers: a scripted fake NBD server on one end of a socketpair
//! does a correct handshake and then misbehaves in one precise way. Each
//! test checks the exact outcome: the errno of the failing call, whether
//! the handle is dead or still serves later commands correctly, that the
//! caller's memory outside the request is untouched, and that nothing
//! panics or hangs (every client runs in a thread joined with a deadline).

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

// The wire format, shared with the library, for the scripted servers.
#[allow(dead_code)]
#[path = "../src/proto.rs"]
mod proto;

use nbd::{Error, Handle};
use proto::Request;

/// How long any client may take before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(20);
/// Export size the fake server announces.
const SIZE: u64 = 1 << 20;
/// Transmission flags the fake server announces.
const EFLAGS: u16 = proto::NBD_FLAG_HAS_FLAGS
    | proto::NBD_FLAG_SEND_FLUSH
    | proto::NBD_FLAG_SEND_FUA
    | proto::NBD_FLAG_SEND_TRIM
    | proto::NBD_FLAG_SEND_WRITE_ZEROES
    | proto::NBD_FLAG_SEND_CACHE
    | proto::NBD_FLAG_SEND_DF;
/// What callers put around their read buffers to see stray writes.
const SENTINEL: u8 = 0x5a;

/// The byte the fake disk holds at `offset` before anything is written.
fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8 ^ (offset >> 12) as u8
}

// ---- the fake server ---------------------------------------------------------

/// How the fake server does the handshake.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Fixed newstyle, structured replies acknowledged, NBD_OPT_GO.
    Structured,
    /// Fixed newstyle, structured replies refused, NBD_OPT_GO.
    Simple,
    /// Oldstyle: size and flags straight after the magic.
    Oldstyle,
}

struct Fake {
    s: UnixStream,
    style: Style,
    disk: Vec<u8>,
}

impl Fake {
    fn new(s: UnixStream, style: Style) -> Fake {
        // A fake server stuck on a client that never speaks gives up
        // rather than hanging the test.
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Fake {
            s,
            style,
            disk: (0..SIZE).map(pattern).collect(),
        }
    }

    fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.s.write_all(b)
    }

    fn recv(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0; n];
        self.s.read_exact(&mut b)?;
        Ok(b)
    }

    fn send_option_reply(&mut self, option: u32, reply: u32, payload: &[u8]) -> io::Result<()> {
        let mut b = Vec::new();
        b.extend_from_slice(&proto::NBD_REP_MAGIC.to_be_bytes());
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&reply.to_be_bytes());
        b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        b.extend_from_slice(payload);
        self.send(&b)
    }

    /// Sends the newstyle greeting and reads the client's flags.
    fn greet_newstyle(&mut self) -> io::Result<()> {
        let mut g = Vec::new();
        g.extend_from_slice(&proto::NBD_MAGIC.to_be_bytes());
        g.extend_from_slice(&proto::NBD_OPTS_MAGIC.to_be_bytes());
        g.extend_from_slice(
            &(proto::NBD_FLAG_FIXED_NEWSTYLE | proto::NBD_FLAG_NO_ZEROES).to_be_bytes(),
        );
        self.send(&g)?;
        self.recv(4)?;
        Ok(())
    }

    /// Reads one option request: its number and payload.
    fn recv_option(&mut self) -> io::Result<(u32, Vec<u8>)> {
        let h = self.recv(16)?;
        assert_eq!(&h[0..8], &proto::NBD_OPTS_MAGIC.to_be_bytes());
        let option = u32::from_be_bytes(h[8..12].try_into().unwrap());
        let len = u32::from_be_bytes(h[12..16].try_into().unwrap());
        Ok((option, self.recv(len as usize)?))
    }

    fn info_export(size: u64, flags: u16) -> Vec<u8> {
        let mut p = proto::NBD_INFO_EXPORT.to_be_bytes().to_vec();
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&flags.to_be_bytes());
        p
    }

    /// Answers options up to and including NBD_OPT_GO, announcing `size`.
    fn negotiate(&mut self, size: u64) -> io::Result<()> {
        loop {
            let (option, _) = self.recv_option()?;
            match option {
                proto::NBD_OPT_STRUCTURED_REPLY if self.style == Style::Structured => {
                    self.send_option_reply(option, proto::NBD_REP_ACK, &[])?
                }
                proto::NBD_OPT_GO => {
                    self.send_option_reply(
                        option,
                        proto::NBD_REP_INFO,
                        &Fake::info_export(size, EFLAGS),
                    )?;
                    return self.send_option_reply(option, proto::NBD_REP_ACK, &[]);
                }
                _ => self.send_option_reply(option, proto::NBD_REP_ERR_UNSUP, &[])?,
            }
        }
    }

    /// A complete, correct handshake in this server's style.
    fn handshake(&mut self) -> io::Result<()> {
        self.handshake_with_size(SIZE)
    }

    fn handshake_with_size(&mut self, size: u64) -> io::Result<()> {
        if self.style == Style::Oldstyle {
            let mut g = Vec::new();
            g.extend_from_slice(&proto::NBD_MAGIC.to_be_bytes());
            g.extend_from_slice(&proto::NBD_OLDSTYLE_MAGIC.to_be_bytes());
            g.extend_from_slice(&size.to_be_bytes());
            g.extend_from_slice(&(EFLAGS as u32).to_be_bytes());
            g.extend_from_slice(&[0; 124]);
            return self.send(&g);
        }
        self.greet_newstyle()?;
        self.negotiate(size)
    }

    /// Reads one request header and, for a write, its payload.
    fn recv_request(&mut self) -> io::Result<(Request, Vec<u8>)> {
        let h = self.recv(proto::REQUEST_LEN)?;
        let req = proto::decode_request(&h).expect("client sent a bad request");
        let payload = if req.kind == proto::NBD_CMD_WRITE {
            self.recv(req.count as usize)?
        } else {
            Vec::new()
        };
        Ok((req, payload))
    }

    fn simple_reply(&mut self, error: u32, cookie: u64) -> io::Result<()> {
        self.send(&proto::encode_simple_reply(error, cookie))
    }

    fn chunk(&mut self, flags: u16, kind: u16, cookie: u64, payload: &[u8]) -> io::Result<()> {
        let mut b = proto::encode_chunk_header(flags, kind, cookie, payload.len() as u32).to_vec();
        b.extend_from_slice(payload);
        self.send(&b)
    }

    /// An OFFSET_DATA chunk carrying `data` for `offset`.
    fn data_chunk(&mut self, flags: u16, cookie: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut p = offset.to_be_bytes().to_vec();
        p.extend_from_slice(data);
        self.chunk(flags, proto::NBD_REPLY_TYPE_OFFSET_DATA, cookie, &p)
    }

    /// Ends a structured reply with a NONE chunk.
    fn end_reply(&mut self, cookie: u64) -> io::Result<()> {
        self.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_NONE,
            cookie,
            &[],
        )
    }

    /// The disk's bytes for a request.
    fn read_disk(&self, offset: u64, count: u64) -> Vec<u8> {
        self.disk[offset as usize..(offset + count) as usize].to_vec()
    }

    /// Answers one request correctly.
    fn answer(&mut self, req: &Request, payload: &[u8]) -> io::Result<()> {
        let (o, n) = (req.offset as usize, req.count as usize);
        match req.kind {
            proto::NBD_CMD_READ => {
                let data = self.read_disk(req.offset, req.count);
                if self.style == Style::Structured {
                    self.data_chunk(proto::NBD_REPLY_FLAG_DONE, req.cookie, req.offset, &data)
                } else {
                    self.simple_reply(0, req.cookie)?;
                    self.send(&data)
                }
            }
            proto::NBD_CMD_WRITE => {
                self.disk[o..o + n].copy_from_slice(payload);
                self.simple_reply(0, req.cookie)
            }
            proto::NBD_CMD_WRITE_ZEROES | proto::NBD_CMD_TRIM => {
                self.disk[o..o + n].fill(0);
                self.simple_reply(0, req.cookie)
            }
            _ => self.simple_reply(0, req.cookie),
        }
    }

    /// Serves requests correctly until the client disconnects or goes away.
    fn serve(&mut self) -> io::Result<()> {
        loop {
            let (req, payload) = match self.recv_request() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            if req.kind == proto::NBD_CMD_DISC {
                return Ok(());
            }
            self.answer(&req, &payload)?;
        }
    }

    /// Waits until the client closes its end; true if it did.
    fn wait_for_close(&mut self) -> bool {
        let mut b = [0u8; 4096];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

// ---- running a test ------------------------------------------------------------

/// Runs `server` on one end of a socketpair and `client` on the other, each
/// in its own thread; fails the test if the client has not finished by the
/// deadline. The server's I/O errors are expected (the client may hang up
/// on it) and ignored; its panics are not.
fn run<T: Send + 'static>(
    style: Style,
    server: impl FnOnce(&mut Fake) -> io::Result<()> + Send + 'static,
    client: impl FnOnce(OwnedFd) -> T + Send + 'static,
) -> T {
    let (c, s) = UnixStream::pair().unwrap();
    let srv = thread::spawn(move || {
        let mut fake = Fake::new(s, style);
        let _ = server(&mut fake);
    });
    let (tx, rx) = mpsc::channel();
    let cli = thread::spawn(move || {
        let r = client(OwnedFd::from(c));
        let _ = tx.send(r);
    });
    let r = match rx.recv_timeout(DEADLINE) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("client hung for {DEADLINE:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match cli.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("client ended without a result"),
        },
    };
    cli.join().unwrap();
    // The server ends once the client's socket is closed (or at its own
    // read timeout); wait for it so its panics fail the test.
    let start = Instant::now();
    while !srv.is_finished() {
        assert!(start.elapsed() < DEADLINE * 2, "fake server hung");
        thread::sleep(Duration::from_millis(5));
    }
    if let Err(panic) = srv.join() {
        std::panic::resume_unwind(panic);
    }
    r
}

/// Connects a handle over `fd`; panics if the handshake fails.
fn connect(fd: OwnedFd) -> Handle {
    let h = Handle::new().unwrap();
    h.connect_socket(fd).expect("handshake failed");
    h
}

/// Runs a client whose handshake is expected to fail; returns the error.
fn failed_handshake(
    style: Style,
    server: impl FnOnce(&mut Fake) -> io::Result<()> + Send + 'static,
) -> Error {
    run(style, server, |fd| {
        let h = Handle::new().unwrap();
        let err = h.connect_socket(fd).expect_err("handshake succeeded");
        assert!(h.aio_is_dead(), "handle not dead after a failed handshake");
        // A dead handle refuses commands and does not hang.
        let mut buf = [0u8; 512];
        assert_eq!(
            h.pread(&mut buf, 0, nbd::CmdFlag::empty())
                .unwrap_err()
                .errno(),
            libc::EINVAL
        );
        err
    })
}

/// Reads `len` bytes at `offset` through a window of a larger buffer and
/// checks the bytes around the window still hold the sentinel.
fn pread_window(h: &Handle, len: usize, offset: u64) -> (Result<(), Error>, Vec<u8>) {
    let mut big = vec![SENTINEL; len + 2048];
    let r = h.pread(&mut big[1024..1024 + len], offset, nbd::CmdFlag::empty());
    assert!(
        big[..1024].iter().all(|&b| b == SENTINEL),
        "bytes before the read buffer were written"
    );
    assert!(
        big[1024 + len..].iter().all(|&b| b == SENTINEL),
        "bytes after the read buffer were written"
    );
    (r, big[1024..1024 + len].to_vec())
}

/// Checks a live handle still reads correctly, writes, and reads back.
fn still_works(h: &Handle) {
    assert!(!h.aio_is_dead(), "handle died");
    let mut buf = vec![0u8; 4096];
    h.pread(&mut buf, 8192, nbd::CmdFlag::empty())
        .expect("read after the fault");
    let want: Vec<u8> = (8192..8192 + 4096).map(pattern).collect();
    assert_eq!(buf, want, "read after the fault returned wrong data");
    let data = vec![0xc3u8; 1000];
    h.pwrite(&data, 100_000, nbd::CmdFlag::empty())
        .expect("write after the fault");
    let mut back = vec![0u8; 1000];
    h.pread(&mut back, 100_000, nbd::CmdFlag::empty())
        .expect("read-back after the fault");
    assert_eq!(back, data);
    h.flush(nbd::CmdFlag::empty())
        .expect("flush after the fault");
}

fn errno(r: Result<(), Error>) -> i32 {
    r.expect_err("call succeeded").errno()
}

fn cookie_of_index(index: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

// ---- sanity: the fake server is correct -----------------------------------------

#[test]
fn fake_server_structured() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            assert!(h.structured_replies_negotiated().unwrap());
            assert_eq!(h.size().unwrap(), SIZE);
            still_works(&h);
            h.shutdown(nbd::Shutdown::empty()).unwrap();
        },
    );
}

#[test]
fn fake_server_simple() {
    run(
        Style::Simple,
        |f| {
            f.handshake()?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            assert!(!h.structured_replies_negotiated().unwrap());
            still_works(&h);
            h.shutdown(nbd::Shutdown::empty()).unwrap();
        },
    );
}

#[test]
fn fake_server_oldstyle() {
    run(
        Style::Oldstyle,
        |f| {
            f.handshake()?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            assert_eq!(h.protocol().unwrap(), "oldstyle");
            assert_eq!(h.size().unwrap(), SIZE);
            still_works(&h);
        },
    );
}

// ---- unknown cookies ---------------------------------------------------------------

/// Without structured replies a simple reply may carry read data, so one
/// naming no command cannot be skipped: the handle dies with EPROTO.
#[test]
fn unknown_cookie_simple_reply_kills_handle() {
    run(
        Style::Simple,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.simple_reply(0, req.cookie ^ 0xdead_0000)?;
            f.wait_for_close();
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            let (r, _) = pread_window(&h, 512, 0);
            assert_eq!(errno(r), libc::EPROTO);
            assert!(h.aio_is_dead());
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), libc::EINVAL);
        },
    );
}

/// With structured replies negotiated a simple reply has no payload, so
/// (as libnbd does) one for an unknown cookie is skipped.
#[test]
fn unknown_cookie_simple_reply_skipped_with_structured_replies() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.simple_reply(0, req.cookie ^ 0xdead_0000)?;
            f.answer(&req, &[])?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            h.flush(nbd::CmdFlag::empty())
                .expect("flush failed after a skipped reply");
            still_works(&h);
        },
    );
}

/// A simple error reply has no payload either: skipped even without
/// structured replies.
#[test]
fn unknown_cookie_simple_error_reply_skipped() {
    run(
        Style::Simple,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.simple_reply(proto::NBD_EIO, 0x7777_7777_7777)?;
            f.answer(&req, &[])?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            h.flush(nbd::CmdFlag::empty()).unwrap();
            still_works(&h);
        },
    );
}

/// A structured chunk says how long it is: one for an unknown cookie is
/// skipped, payload and all, and the read it interrupted completes.
#[test]
fn unknown_cookie_structured_chunk_skipped() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.data_chunk(
                proto::NBD_REPLY_FLAG_DONE,
                req.cookie ^ 0xdead_0000,
                req.offset,
                &vec![0xee; 700],
            )?;
            f.answer(&req, &[])?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            let (r, got) = pread_window(&h, 512, 4096);
            r.expect("read interrupted by a stray chunk failed");
            assert_eq!(got, (4096..4096 + 512).map(pattern).collect::<Vec<_>>());
            still_works(&h);
        },
    );
}

/// A chunk for a slot the client never used, and one reusing the cookie
/// of a command already finished: both skipped.
#[test]
fn reply_for_command_never_sent_structured() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (first, _) = f.recv_request()?;
            f.answer(&first, &[])?;
            let (second, _) = f.recv_request()?;
            assert_ne!(first.cookie, second.cookie);
            // A slot index never handed out.
            f.chunk(
                proto::NBD_REPLY_FLAG_DONE,
                proto::NBD_REPLY_TYPE_NONE,
                cookie_of_index(9, 1),
                &[],
            )?;
            // The finished first command's cookie.
            f.chunk(
                proto::NBD_REPLY_FLAG_DONE,
                proto::NBD_REPLY_TYPE_NONE,
                first.cookie,
                &[],
            )?;
            f.answer(&second, &[])?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            h.flush(nbd::CmdFlag::empty()).unwrap();
            h.flush(nbd::CmdFlag::empty()).unwrap();
            still_works(&h);
        },
    );
}

/// Without structured replies, a reply reusing the cookie of a finished
/// command cannot be skipped: EPROTO, dead.
#[test]
fn reply_for_finished_command_simple_kills_handle() {
    run(
        Style::Simple,
        |f| {
            f.handshake()?;
            let (first, _) = f.recv_request()?;
            f.answer(&first, &[])?;
            let (_second, _) = f.recv_request()?;
            f.simple_reply(0, first.cookie)?;
            f.wait_for_close();
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            h.flush(nbd::CmdFlag::empty()).unwrap();
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), libc::EPROTO);
            assert!(h.aio_is_dead());
        },
    );
}

// ---- data chunks out of range -----------------------------------------------------

/// Runs one read of 512 bytes at 4096 whose reply is `bad`, a chunk lying
/// outside the request: the read fails with EPROTO, the caller's buffer
/// around the request is untouched, and the handle is dead (as in libnbd
/// 1.22: the server has lost track of what it answers).
fn out_of_bounds_read_reply(
    bad: impl FnOnce(&mut Fake, &Request) -> io::Result<()> + Send + 'static,
) {
    run(
        Style::Structured,
        move |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            assert_eq!((req.offset, req.count), (4096, 512));
            bad(f, &req)?;
            f.serve()
        },
        move |fd| {
            let h = connect(fd);
            let (r, _) = pread_window(&h, 512, 4096);
            let err = r.expect_err("read succeeded");
            assert_eq!(err.errno(), libc::EPROTO);
            assert!(
                err.message()
                    .starts_with("range of structured reply is out of bounds"),
                "{err}"
            );
            assert!(h.aio_is_dead());
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), libc::EINVAL);
        },
    );
}

/// Runs one read of 512 bytes at 4096 whose reply is `bad`, then checks
/// the read failed with `want` errno, the caller's buffer around the
/// request is untouched, and the handle serves later commands.
fn bad_read_reply(
    want: i32,
    bad: impl FnOnce(&mut Fake, &Request) -> io::Result<()> + Send + 'static,
) {
    run(
        Style::Structured,
        move |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            assert_eq!((req.offset, req.count), (4096, 512));
            bad(f, &req)?;
            f.serve()
        },
        move |fd| {
            let h = connect(fd);
            let (r, _) = pread_window(&h, 512, 4096);
            assert_eq!(errno(r), want);
            still_works(&h);
        },
    );
}

#[test]
fn data_chunk_longer_than_request() {
    out_of_bounds_read_reply(|f, req| {
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            req.offset,
            &[0xee; 1024],
        )
    });
}

#[test]
fn data_chunk_starts_before_request() {
    out_of_bounds_read_reply(|f, req| {
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            req.offset - 256,
            &[0xee; 512],
        )
    });
}

#[test]
fn data_chunk_runs_past_request() {
    out_of_bounds_read_reply(|f, req| {
        f.data_chunk(0, req.cookie, req.offset, &[0xee; 256])?;
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            req.offset + 256,
            &[0xee; 257],
        )
    });
}

#[test]
fn data_chunk_offset_past_request_end() {
    out_of_bounds_read_reply(|f, req| {
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            req.offset + 512,
            &[0xee; 16],
        )
    });
}

/// An offset near 2^64 must not wrap around into the buffer.
#[test]
fn data_chunk_offset_wraps() {
    out_of_bounds_read_reply(|f, req| {
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            u64::MAX - 8,
            &[0xee; 16],
        )
    });
}

/// Chunks that overlap count more bytes than were asked for: EPROTO.
#[test]
fn overlapping_data_chunks() {
    bad_read_reply(libc::EPROTO, |f, req| {
        let d = f.read_disk(req.offset, req.count);
        f.data_chunk(0, req.cookie, req.offset, &d[..300])?;
        f.data_chunk(0, req.cookie, req.offset + 200, &d[200..400])?;
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            req.offset + 300,
            &d[300..],
        )
    });
}

/// A reply that leaves part of the range uncovered and reports no error
/// is not a successful read.
#[test]
fn data_chunks_short_of_request() {
    bad_read_reply(libc::EPROTO, |f, req| {
        let d = f.read_disk(req.offset, req.count);
        f.data_chunk(
            proto::NBD_REPLY_FLAG_DONE,
            req.cookie,
            req.offset,
            &d[..500],
        )
    });
}

/// Chunks in any order that cover the range exactly are a good read.
#[test]
fn data_chunks_out_of_order_succeed() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            let d = f.read_disk(req.offset, req.count);
            f.data_chunk(0, req.cookie, req.offset + 256, &d[256..])?;
            let mut hole = (req.offset + 128).to_be_bytes().to_vec();
            hole.extend_from_slice(&128u32.to_be_bytes());
            f.chunk(0, proto::NBD_REPLY_TYPE_OFFSET_HOLE, req.cookie, &hole)?;
            f.data_chunk(0, req.cookie, req.offset, &d[..128])?;
            f.chunk(
                proto::NBD_REPLY_FLAG_DONE,
                proto::NBD_REPLY_TYPE_NONE,
                req.cookie,
                &[],
            )?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            let (r, got) = pread_window(&h, 512, 4096);
            r.unwrap();
            let mut want: Vec<u8> = (4096..4096 + 512).map(pattern).collect();
            want[128..256].fill(0);
            assert_eq!(got, want);
            still_works(&h);
        },
    );
}

// ---- holes, errors, odd chunk types ----------------------------------------------------

fn hole(offset: u64, length: u32) -> Vec<u8> {
    let mut p = offset.to_be_bytes().to_vec();
    p.extend_from_slice(&length.to_be_bytes());
    p
}

#[test]
fn hole_chunk_wrong_payload_length() {
    bad_read_reply(libc::EPROTO, |f, req| {
        let mut p = hole(req.offset, 512);
        p.extend_from_slice(&[0; 4]);
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_OFFSET_HOLE,
            req.cookie,
            &p,
        )
    });
}

#[test]
fn hole_chunk_payload_too_short() {
    bad_read_reply(libc::EPROTO, |f, req| {
        let p = hole(req.offset, 512);
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_OFFSET_HOLE,
            req.cookie,
            &p[..8],
        )
    });
}

#[test]
fn hole_longer_than_request() {
    out_of_bounds_read_reply(|f, req| {
        let p = hole(req.offset, 4096);
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_OFFSET_HOLE,
            req.cookie,
            &p,
        )
    });
}

#[test]
fn hole_before_request() {
    out_of_bounds_read_reply(|f, req| {
        let p = hole(req.offset - 1, 512);
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_OFFSET_HOLE,
            req.cookie,
            &p,
        )
    });
}

fn error_payload(error: u32, msg_len: u16, msg: &[u8]) -> Vec<u8> {
    let mut p = error.to_be_bytes().to_vec();
    p.extend_from_slice(&msg_len.to_be_bytes());
    p.extend_from_slice(msg);
    p
}

#[test]
fn error_chunk_reports_server_errno() {
    bad_read_reply(libc::ENOSPC, |f, req| {
        let p = error_payload(proto::NBD_ENOSPC, 4, b"full");
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &p,
        )
    });
}

/// A message length past the end of the chunk: the server's error still
/// wins (as in libnbd), the chunk is skipped by its own length.
#[test]
fn error_chunk_absurd_message_length() {
    bad_read_reply(libc::ENOSPC, |f, req| {
        let p = error_payload(proto::NBD_ENOSPC, 0xffff, b"short");
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &p,
        )
    });
}

/// A message longer than the protocol's string limit, with all its bytes
/// sent: skipped, the server's error kept.
#[test]
fn error_chunk_huge_message() {
    bad_read_reply(libc::EPERM, |f, req| {
        let msg = vec![b'x'; 65535];
        let p = error_payload(proto::NBD_EPERM, 65535, &msg);
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &p,
        )
    });
}

/// Too short to hold an error number: EPROTO.
#[test]
fn error_chunk_too_short() {
    bad_read_reply(libc::EPROTO, |f, req| {
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &[0, 0, 5],
        )
    });
}

/// ERROR_OFFSET with a missing or out-of-range offset: the error counts.
#[test]
fn error_offset_chunk_bad_offset() {
    bad_read_reply(libc::EIO, |f, req| {
        let mut p = error_payload(proto::NBD_EIO, 2, b"no");
        p.extend_from_slice(&(1u64 << 40).to_be_bytes());
        f.chunk(0, proto::NBD_REPLY_TYPE_ERROR_OFFSET, req.cookie, &p)?;
        let p = error_payload(proto::NBD_EIO, 2, b"no");
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR_OFFSET,
            req.cookie,
            &p,
        )
    });
}

/// An unknown error chunk type still carries the server's error.
#[test]
fn error_chunk_unknown_type() {
    bad_read_reply(libc::ENOSPC, |f, req| {
        let p = error_payload(proto::NBD_ENOSPC, 0, b"");
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR_BIT | 77,
            req.cookie,
            &p,
        )
    });
}

/// The spec requires a non-zero error: zero means EPROTO.
#[test]
fn error_chunk_with_error_zero() {
    bad_read_reply(libc::EPROTO, |f, req| {
        let p = error_payload(0, 3, b"oops");
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &p[..9],
        )
    });
}

/// The first error of a reply is the one reported.
#[test]
fn first_error_chunk_wins() {
    bad_read_reply(libc::EPERM, |f, req| {
        f.chunk(
            0,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &error_payload(proto::NBD_EPERM, 0, b""),
        )?;
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &error_payload(proto::NBD_EIO, 0, b""),
        )
    });
}

/// NONE must be the last chunk; one without DONE fails the command but
/// later chunks of the same reply are still read.
#[test]
fn none_chunk_without_done() {
    bad_read_reply(libc::EPROTO, |f, req| {
        f.chunk(0, proto::NBD_REPLY_TYPE_NONE, req.cookie, &[])?;
        let d = f.read_disk(req.offset, req.count);
        f.data_chunk(proto::NBD_REPLY_FLAG_DONE, req.cookie, req.offset, &d)
    });
}

#[test]
fn none_chunk_with_payload() {
    bad_read_reply(libc::EPROTO, |f, req| {
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_NONE,
            req.cookie,
            &[1, 2, 3, 4],
        )
    });
}

/// Block status was never negotiated (and this is a read): skipped, EPROTO.
#[test]
fn block_status_chunk_unnegotiated() {
    bad_read_reply(libc::EPROTO, |f, req| {
        let mut p = 1u32.to_be_bytes().to_vec();
        p.extend_from_slice(&512u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_BLOCK_STATUS,
            req.cookie,
            &p,
        )
    });
}

#[test]
fn unknown_chunk_type() {
    bad_read_reply(libc::EPROTO, |f, req| {
        f.chunk(proto::NBD_REPLY_FLAG_DONE, 1234, req.cookie, &[9; 100])
    });
}

/// Data for a command that is not a read: skipped, EPROTO.
#[test]
fn data_chunk_for_flush() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.data_chunk(proto::NBD_REPLY_FLAG_DONE, req.cookie, 0, &[1; 64])?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), libc::EPROTO);
            still_works(&h);
        },
    );
}

/// With structured replies a read must not get a simple reply: the data
/// is consumed and the read fails with EPROTO, as in libnbd.
#[test]
fn simple_reply_to_structured_read() {
    bad_read_reply(libc::EPROTO, |f, req| {
        f.simple_reply(0, req.cookie)?;
        let d = f.read_disk(req.offset, req.count);
        f.send(&d)
    });
}

/// A chunk longer than any reply could be: the handle dies at once
/// instead of reading gigabytes.
#[test]
fn chunk_length_absurd() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.send(&proto::encode_chunk_header(
                proto::NBD_REPLY_FLAG_DONE,
                proto::NBD_REPLY_TYPE_OFFSET_DATA,
                req.cookie,
                0xffff_fff0,
            ))?;
            f.send(&[0; 4096])?;
            f.wait_for_close();
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            let (r, _) = pread_window(&h, 512, 4096);
            assert_eq!(errno(r), libc::EPROTO);
            assert!(h.aio_is_dead());
        },
    );
}

/// A structured chunk when structured replies were refused: the chunk's
/// length still frames it, so it is skipped and its command fails.
#[test]
fn structured_reply_without_negotiation() {
    run(
        Style::Simple,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            let d = f.read_disk(req.offset, req.count);
            f.data_chunk(proto::NBD_REPLY_FLAG_DONE, req.cookie, req.offset, &d)?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            let (r, _) = pread_window(&h, 512, 4096);
            assert_eq!(errno(r), libc::EPROTO);
            still_works(&h);
        },
    );
}

// ---- export size --------------------------------------------------------------------

/// A size above `i64::MAX` does not fail the connection (as in libnbd
/// 1.22): `size()` reports EOVERFLOW, the other calls work.
#[test]
fn export_size_2_pow_63_overflows_size() {
    for (style, size) in [
        (Style::Structured, 1u64 << 63),
        (Style::Structured, (1 << 63) + 1),
        (Style::Structured, u64::MAX),
        (Style::Oldstyle, 1 << 63),
    ] {
        run(
            style,
            move |f| {
                f.handshake_with_size(size)?;
                f.serve()
            },
            move |fd| {
                let h = connect(fd);
                let err = h.size().expect_err("size() succeeded");
                assert_eq!(err.errno(), libc::EOVERFLOW, "size {size}: {err}");
                assert!(h.can_flush().unwrap());
                h.flush(nbd::CmdFlag::empty()).unwrap();
            },
        );
    }
}

#[test]
fn export_size_2_pow_63_minus_1_accepted() {
    run(
        Style::Structured,
        |f| {
            f.handshake_with_size(i64::MAX as u64)?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            assert_eq!(h.size().unwrap(), i64::MAX as u64);
            let mut buf = [0u8; 512];
            // Offsets past 2^63 are refused locally, without overflow.
            assert_eq!(
                errno(h.pread(&mut buf, u64::MAX - 100, nbd::CmdFlag::empty())),
                libc::EINVAL
            );
            h.flush(nbd::CmdFlag::empty()).unwrap();
        },
    );
}

// ---- option replies ------------------------------------------------------------------

/// Runs a newstyle handshake whose reply to `bad_for` is replaced by `bad`.
fn bad_option_reply(
    bad_for: u32,
    bad: impl FnOnce(&mut Fake, u32) -> io::Result<()> + Send + 'static,
) -> Error {
    failed_handshake(Style::Structured, move |f| {
        f.greet_newstyle()?;
        let mut bad = Some(bad);
        loop {
            let (option, _) = f.recv_option()?;
            if option == bad_for {
                (bad.take().unwrap())(f, option)?;
                f.wait_for_close();
                return Ok(());
            }
            match option {
                proto::NBD_OPT_STRUCTURED_REPLY => {
                    f.send_option_reply(option, proto::NBD_REP_ACK, &[])?
                }
                proto::NBD_OPT_GO => {
                    f.send_option_reply(
                        option,
                        proto::NBD_REP_INFO,
                        &Fake::info_export(SIZE, EFLAGS),
                    )?;
                    f.send_option_reply(option, proto::NBD_REP_ACK, &[])?;
                }
                _ => f.send_option_reply(option, proto::NBD_REP_ERR_UNSUP, &[])?,
            }
        }
    })
}

#[test]
fn option_reply_wrong_type_structured_reply() {
    let err = bad_option_reply(proto::NBD_OPT_STRUCTURED_REPLY, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_SERVER, &[0, 0, 0, 0])
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

#[test]
fn option_reply_wrong_type_go() {
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_META_CONTEXT, &[0, 0, 0, 1, b'x'])
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

#[test]
fn option_reply_for_other_option() {
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, _| {
        f.send_option_reply(proto::NBD_OPT_LIST, proto::NBD_REP_ACK, &[])
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

#[test]
fn option_reply_ack_with_payload() {
    let err = bad_option_reply(proto::NBD_OPT_STRUCTURED_REPLY, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_ACK, &[1, 2, 3, 4])
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_INFO, &Fake::info_export(SIZE, EFLAGS))?;
        f.send_option_reply(o, proto::NBD_REP_ACK, &[0; 8])
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

#[test]
fn option_reply_info_export_wrong_length() {
    for cut in [1usize, 11, 13] {
        let err = bad_option_reply(proto::NBD_OPT_GO, move |f, o| {
            let mut p = Fake::info_export(SIZE, EFLAGS);
            p.resize(cut, 0);
            f.send_option_reply(o, proto::NBD_REP_INFO, &p)
        });
        assert_eq!(err.errno(), libc::EPROTO, "length {cut}: {err}");
    }
}

#[test]
fn option_reply_info_block_size_wrong_length() {
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, o| {
        let mut p = proto::NBD_INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 2, 0, 0, 0, 16]);
        f.send_option_reply(o, proto::NBD_REP_INFO, &p)
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

/// GO acknowledged without ever saying how big the export is: connected
/// (as in libnbd 1.22), but the size and flags are unknown (EINVAL).
#[test]
fn option_reply_go_without_export_info() {
    run(
        Style::Structured,
        |f| {
            f.greet_newstyle()?;
            loop {
                let (option, _) = f.recv_option()?;
                if option == proto::NBD_OPT_GO {
                    f.send_option_reply(option, proto::NBD_REP_ACK, &[])?;
                    return f.serve();
                }
                f.send_option_reply(option, proto::NBD_REP_ERR_UNSUP, &[])?;
            }
        },
        |fd| {
            let h = connect(fd);
            assert_eq!(h.size().unwrap_err().errno(), libc::EINVAL);
            assert_eq!(h.can_flush().unwrap_err().errno(), libc::EINVAL);
        },
    );
}

/// An error message longer than the protocol allows.
#[test]
fn option_reply_error_message_too_long() {
    let err = bad_option_reply(proto::NBD_OPT_STRUCTURED_REPLY, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_ERR_POLICY, &vec![b'x'; 5000])
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

/// A reply claiming a 4 GiB payload: refused before reading (or
/// allocating) it.
#[test]
fn option_reply_huge_length() {
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, o| {
        let mut b = Vec::new();
        b.extend_from_slice(&proto::NBD_REP_MAGIC.to_be_bytes());
        b.extend_from_slice(&o.to_be_bytes());
        b.extend_from_slice(&proto::NBD_REP_INFO.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        f.send(&b)
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

/// An export whose flags lack NBD_FLAG_HAS_FLAGS (all zero) is refused
/// with EINVAL, as libnbd does.
#[test]
fn export_flags_zero_rejected() {
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_INFO, &Fake::info_export(SIZE, 0))?;
        f.send_option_reply(o, proto::NBD_REP_ACK, &[])
    });
    assert_eq!(err.errno(), libc::EINVAL, "{err}");
}

// ---- bad magic -----------------------------------------------------------------------

#[test]
fn bad_magic_greeting() {
    for (first, second) in [
        (0x4e42_444d_4147_4943u64 ^ 1, proto::NBD_OPTS_MAGIC),
        (proto::NBD_MAGIC, 0x1234_5678_9abc_def0),
    ] {
        let err = failed_handshake(Style::Structured, move |f| {
            let mut g = first.to_be_bytes().to_vec();
            g.extend_from_slice(&second.to_be_bytes());
            g.extend_from_slice(&[0, 3]);
            f.send(&g)?;
            f.wait_for_close();
            Ok(())
        });
        assert_eq!(err.errno(), libc::EPROTO, "{err}");
    }
}

#[test]
fn bad_magic_option_reply() {
    let err = bad_option_reply(proto::NBD_OPT_STRUCTURED_REPLY, |f, o| {
        let mut b = (proto::NBD_REP_MAGIC ^ 0x100).to_be_bytes().to_vec();
        b.extend_from_slice(&o.to_be_bytes());
        b.extend_from_slice(&proto::NBD_REP_ACK.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        f.send(&b)
    });
    assert_eq!(err.errno(), libc::EPROTO, "{err}");
}

#[test]
fn bad_magic_transmission_reply() {
    for style in [Style::Structured, Style::Simple] {
        run(
            style,
            |f| {
                f.handshake()?;
                let (req, _) = f.recv_request()?;
                let mut b = proto::encode_simple_reply(0, req.cookie);
                b[3] ^= 0x40;
                f.send(&b)?;
                f.wait_for_close();
                Ok(())
            },
            |fd| {
                let h = connect(fd);
                let (r, _) = pread_window(&h, 512, 0);
                assert_eq!(errno(r), libc::EPROTO);
                assert!(h.aio_is_dead());
            },
        );
    }
}

// ---- closes and stalls -------------------------------------------------------------

/// The server hangs up half way through a data payload: the read fails,
/// the handle is dead, nothing hangs. libnbd reports no errno here
/// ("server disconnected unexpectedly").
#[test]
fn mid_reply_close_structured() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.send(&proto::encode_chunk_header(
                proto::NBD_REPLY_FLAG_DONE,
                proto::NBD_REPLY_TYPE_OFFSET_DATA,
                req.cookie,
                8 + 4096,
            ))?;
            f.send(&req.offset.to_be_bytes())?;
            f.send(&[0xee; 1000])?;
            Ok(()) // drops the socket
        },
        |fd| {
            let h = connect(fd);
            let (r, got) = pread_window(&h, 4096, 0);
            assert_eq!(errno(r), 0);
            assert!(h.aio_is_dead());
            // What had arrived went where it belongs, nowhere else.
            assert!(got[..1000].iter().all(|&b| b == 0xee));
            assert_eq!(
                errno(h.pread(&mut [0u8; 512], 0, nbd::CmdFlag::empty())),
                libc::EINVAL
            );
        },
    );
}

#[test]
fn mid_reply_close_simple() {
    run(
        Style::Simple,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            f.simple_reply(0, req.cookie)?;
            f.send(&[0xee; 100])?;
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            let (r, _) = pread_window(&h, 4096, 0);
            assert_eq!(errno(r), 0);
            assert!(h.aio_is_dead());
        },
    );
}

#[test]
fn mid_header_close() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            let b =
                proto::encode_chunk_header(0, proto::NBD_REPLY_TYPE_OFFSET_DATA, req.cookie, 520);
            f.send(&b[..11])?;
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), 0);
            assert!(h.aio_is_dead());
        },
    );
}

#[test]
fn close_during_handshake() {
    let err = bad_option_reply(proto::NBD_OPT_GO, |f, o| {
        f.send_option_reply(o, proto::NBD_REP_INFO, &Fake::info_export(SIZE, EFLAGS))?;
        f.s.shutdown(std::net::Shutdown::Both)
    });
    assert_eq!(err.errno(), 0, "{err}");
}

/// The server reads the request, says nothing for a while, then dies
/// between replies: the read fails with ENOTCONN and the handle is
/// closed (as in libnbd 1.22), not dead.
#[test]
fn stall_then_death() {
    let stall = Duration::from_millis(500);
    let took = run(
        Style::Structured,
        move |f| {
            f.handshake()?;
            f.recv_request()?;
            thread::sleep(stall);
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            let start = Instant::now();
            let (r, _) = pread_window(&h, 512, 0);
            assert_eq!(errno(r), libc::ENOTCONN);
            assert!(h.aio_is_closed());
            start.elapsed()
        },
    );
    assert!(
        took >= stall - Duration::from_millis(50),
        "returned before the server died"
    );
}

/// The server goes away while the client is still sending a large write:
/// the write fails (EPIPE, no SIGPIPE), the handle is dead.
#[test]
fn close_during_write_payload() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            f.recv(proto::REQUEST_LEN + 1000)?;
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            // Larger than the socket buffer: the send is still going on
            // when the server hangs up.
            let data = vec![7u8; SIZE as usize];
            let e = h
                .pwrite(&data, 0, nbd::CmdFlag::empty())
                .expect_err("write to a dead server succeeded");
            // EPIPE when the send fails while the call waits; ENOTCONN
            // (the command aborted by the dying handle) when it fails
            // already while the request is being issued.
            assert!([libc::EPIPE, libc::ENOTCONN].contains(&e.errno()), "{e}");
            assert!(h.aio_is_dead());
        },
    );
}

/// Bytes that arrive while no command is in flight: garbage is caught as
/// soon as the client next reads.
#[test]
fn unsolicited_garbage_while_idle() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            // Once the client is idle (before, the garbage would fail
            // the handshake's last read instead).
            thread::sleep(Duration::from_millis(100));
            f.send(b"hello, this is not an NBD reply")?;
            f.wait_for_close();
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            thread::sleep(Duration::from_millis(300));
            assert!(!h.aio_is_dead());
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), libc::EPROTO);
            assert!(h.aio_is_dead());
        },
    );
}

/// A well-framed chunk for no command while idle: skipped, and the next
/// command is unaffected.
#[test]
fn unsolicited_chunk_while_idle() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            f.data_chunk(
                proto::NBD_REPLY_FLAG_DONE,
                // Not the cookie the client's first command will get
                // (slot 0, generation 1): bytes waiting in the socket
                // cannot be told apart from a reply sent after a request.
                cookie_of_index(3, 7),
                0,
                &[0xee; 512],
            )?;
            f.chunk(
                0,
                proto::NBD_REPLY_TYPE_ERROR,
                42,
                &error_payload(proto::NBD_EIO, 0, b""),
            )?;
            f.serve()
        },
        |fd| {
            let h = connect(fd);
            thread::sleep(Duration::from_millis(100));
            let (r, got) = pread_window(&h, 512, 0);
            r.unwrap();
            assert_eq!(got, (0..512).map(pattern).collect::<Vec<_>>());
            still_works(&h);
        },
    );
}

/// The server closes while the client is idle: the next command fails
/// and the handle is dead.
#[test]
fn close_while_idle() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            // Once the client is idle: a close straight after the
            // handshake can fail the handshake's last read instead.
            thread::sleep(Duration::from_millis(100));
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            thread::sleep(Duration::from_millis(300));
            // Sending the request fails (EPIPE), which kills the handle
            // and fails the command with ENOTCONN, as libnbd does.
            assert_eq!(errno(h.flush(nbd::CmdFlag::empty())), libc::ENOTCONN);
            assert!(h.aio_is_dead());
        },
    );
}

// ---- pread_initialize: no stale byte survives a read -------------------------------
//
// With `pread_initialize` on (the default), libnbd zeroes the buffer before
// the request goes out, so whatever the server fails to send reads as zero.
// This library zeroes only what is left unfilled when the command ends; these
// cases check the caller sees the same thing. Buffers start out as STALE.

/// What a caller's buffer holds before a read.
const STALE: u8 = 0xa5;
/// Size of the reads below, above the size up to which buffers are zeroed
/// up front (128 KiB), so the lazy zeroing is what is tested; HALF splits
/// them.
const LEN: u64 = 512 * 1024;
const HALF: u64 = LEN / 2;

/// Reads LEN bytes at 0 from a server that answers with `reply` and then
/// serves correctly; returns the result and the buffer.
fn read_stale_buffer(
    initialize: bool,
    reply: impl FnOnce(&mut Fake, &Request) -> io::Result<()> + Send + 'static,
) -> (Result<(), Error>, Vec<u8>) {
    read_stale_buffer_of(LEN as usize, initialize, reply)
}

/// As [`read_stale_buffer`], reading `len` bytes.
fn read_stale_buffer_of(
    len: usize,
    initialize: bool,
    reply: impl FnOnce(&mut Fake, &Request) -> io::Result<()> + Send + 'static,
) -> (Result<(), Error>, Vec<u8>) {
    run(
        Style::Structured,
        move |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            reply(f, &req)?;
            f.serve()
        },
        move |fd| {
            let h = connect(fd);
            h.set_pread_initialize(initialize).unwrap();
            let mut buf = vec![STALE; len];
            let r = h.pread(&mut buf, 0, nbd::CmdFlag::empty());
            (r, buf)
        },
    )
}

/// A reply with data for the first half only.
fn first_half_only(f: &mut Fake, req: &Request) -> io::Result<()> {
    let d = f.read_disk(0, HALF);
    f.data_chunk(0, req.cookie, 0, &d)?;
    f.end_reply(req.cookie)
}

/// The disk's bytes over `range`, zeros elsewhere in [0, LEN).
fn disk_over(range: std::ops::Range<u64>) -> Vec<u8> {
    (0..LEN)
        .map(|i| if range.contains(&i) { pattern(i) } else { 0 })
        .collect()
}

#[test]
fn initialize_chunks_out_of_order() {
    let (r, buf) = read_stale_buffer(true, |f, req| {
        let d = f.read_disk(HALF, HALF);
        f.data_chunk(0, req.cookie, HALF, &d)?;
        let d = f.read_disk(0, HALF);
        f.data_chunk(proto::NBD_REPLY_FLAG_DONE, req.cookie, 0, &d)
    });
    r.unwrap();
    assert_eq!(buf, disk_over(0..LEN));
}

#[test]
fn initialize_hole_then_data() {
    let (r, buf) = read_stale_buffer(true, |f, req| {
        let mut hole = 0u64.to_be_bytes().to_vec();
        hole.extend_from_slice(&(HALF as u32).to_be_bytes());
        f.chunk(0, proto::NBD_REPLY_TYPE_OFFSET_HOLE, req.cookie, &hole)?;
        let d = f.read_disk(HALF, HALF);
        f.data_chunk(proto::NBD_REPLY_FLAG_DONE, req.cookie, HALF, &d)
    });
    r.unwrap();
    assert_eq!(buf, disk_over(HALF..LEN));
}

/// The first half arrives in order, then the reply ends: EPROTO, and the
/// second half is zero, not the caller's old bytes.
#[test]
fn initialize_reply_short_in_order() {
    let (r, buf) = read_stale_buffer(true, first_half_only);
    assert_eq!(errno(r), libc::EPROTO);
    assert_eq!(buf, disk_over(0..HALF));
}

/// Only a piece in the middle arrives: both sides of it read as zero.
#[test]
fn initialize_reply_short_out_of_order() {
    let (r, buf) = read_stale_buffer(true, |f, req| {
        let d = f.read_disk(1000, 3000);
        f.data_chunk(0, req.cookie, 1000, &d)?;
        f.end_reply(req.cookie)
    });
    assert_eq!(errno(r), libc::EPROTO);
    assert_eq!(buf, disk_over(1000..4000));
}

#[test]
fn initialize_error_reply() {
    let (r, buf) = read_stale_buffer(true, |f, req| {
        let mut e = proto::NBD_EIO.to_be_bytes().to_vec();
        e.extend_from_slice(&0u16.to_be_bytes());
        f.chunk(
            proto::NBD_REPLY_FLAG_DONE,
            proto::NBD_REPLY_TYPE_ERROR,
            req.cookie,
            &e,
        )
    });
    assert_eq!(errno(r), libc::EIO);
    assert_eq!(buf, vec![0; LEN as usize]);
}

/// A small read (zeroed up front, libnbd's way) gives the same result.
#[test]
fn initialize_small_read_reply_short() {
    let (r, buf) = read_stale_buffer_of(4096, true, |f, req| {
        let d = f.read_disk(0, 1000);
        f.data_chunk(0, req.cookie, 0, &d)?;
        f.end_reply(req.cookie)
    });
    assert_eq!(errno(r), libc::EPROTO);
    let want: Vec<u8> = (0..4096u64)
        .map(|i| if i < 1000 { pattern(i) } else { 0 })
        .collect();
    assert_eq!(buf, want);
}

/// Turned off, the unfilled half keeps the caller's bytes: the check above
/// would see a missing zeroing.
#[test]
fn initialize_off_leaves_buffer() {
    let (r, buf) = read_stale_buffer(false, first_half_only);
    assert_eq!(errno(r), libc::EPROTO);
    assert_eq!(&buf[..HALF as usize], &disk_over(0..HALF)[..HALF as usize]);
    assert!(buf[HALF as usize..].iter().all(|&b| b == STALE));
}

/// The server dies in the middle of the data: what arrived stays where it
/// landed, the rest is zero, none of the caller's old bytes remain.
#[test]
fn initialize_server_dies_mid_data() {
    let buf = run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            let mut p = proto::encode_chunk_header(
                proto::NBD_REPLY_FLAG_DONE,
                proto::NBD_REPLY_TYPE_OFFSET_DATA,
                req.cookie,
                (8 + LEN) as u32,
            )
            .to_vec();
            p.extend_from_slice(&0u64.to_be_bytes());
            p.extend_from_slice(&f.read_disk(0, HALF + 100));
            f.send(&p)
        },
        |fd| {
            let h = connect(fd);
            let mut buf = vec![STALE; LEN as usize];
            // libnbd reports no errno here ("server disconnected unexpectedly").
            assert_eq!(errno(h.pread(&mut buf, 0, nbd::CmdFlag::empty())), 0);
            assert!(h.aio_is_dead());
            buf
        },
    );
    // What arrived stays, as after libnbd's zeroing up front.
    assert_eq!(buf, disk_over(0..HALF + 100));
}

/// A read still in flight when the handle closes: the buffer outlives the
/// handle and holds no stale byte.
#[test]
fn initialize_pending_read_at_close() {
    let buf = run(
        Style::Structured,
        |f| {
            f.handshake()?;
            let (req, _) = f.recv_request()?;
            let d = f.read_disk(0, HALF);
            f.data_chunk(0, req.cookie, 0, &d)?;
            f.wait_for_close();
            Ok(())
        },
        |fd| {
            let h = connect(fd);
            let before = h.stats_bytes_received();
            let mut buf = vec![STALE; LEN as usize];
            // SAFETY: buf outlives the handle, which is dropped below.
            unsafe { h.aio_pread(buf.as_mut_ptr(), buf.len(), 0, None, nbd::CmdFlag::empty()) }
                .unwrap();
            // Let the first chunk (header, offset, data) arrive.
            let deadline = Instant::now() + DEADLINE;
            while h.stats_bytes_received() < before + 20 + 8 + HALF && Instant::now() < deadline {
                h.poll(100).unwrap();
            }
            drop(h);
            buf
        },
    );
    assert_eq!(buf, disk_over(0..HALF));
}

/// The server dies while one thread waits for its reply with the handle
/// unlocked and another thread keeps running the machine: whichever sees
/// the end closes the handle; the waiting thread wakes (its fd is shut
/// down, not closed under it) and fails; nothing hangs.
#[test]
fn server_dies_while_another_thread_waits() {
    run(
        Style::Structured,
        |f| {
            f.handshake()?;
            f.recv_request()?;
            thread::sleep(Duration::from_millis(200));
            Ok(()) // drops the socket
        },
        |fd| {
            let h = std::sync::Arc::new(connect(fd));
            let waiter = {
                let h = h.clone();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    h.pread(&mut buf, 0, nbd::CmdFlag::empty())
                })
            };
            // Run the machine from this thread until the handle is closed.
            while !h.aio_is_dead() && !h.aio_is_closed() {
                let _ = h.aio_notify_read();
                thread::sleep(Duration::from_micros(200));
            }
            let err = waiter.join().unwrap().expect_err("read succeeded");
            // The server left between replies: the command fails with
            // ENOTCONN, the handle is closed.
            assert_eq!(err.errno(), libc::ENOTCONN, "{err:?}");
            assert!(h.aio_is_closed());
            assert_eq!(
                errno(h.pread(&mut [0u8; 512], 0, nbd::CmdFlag::empty())),
                libc::EINVAL
            );
        },
    );
}
