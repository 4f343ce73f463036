//! The fuzz harness: arbitrary bytes play the server side of a connection
//! through the real state machine while the client issues a fixed mix of
//! commands.
//!
//! Input format: one configuration byte, then segments, each a big-endian
//! `u16` length and that many bytes. Segment 0 is what the server sends
//! for the handshake; segment k (k >= 1) is what it sends after the
//! client has issued command group k-1 of [`GROUPS`]. Everything runs on
//! one thread with non-blocking calls only (`aio_*`), so the outcome is
//! deterministic and nothing can block: a stuck client simply runs out of
//! input, sees end-of-file and dies.
//!
//! Configuration bits: bit 0 asks for no structured replies; bit 2 reads
//! with a chunk callback (`aio_pread_structured`). Read buffers sit between
//! guard zones that are checked after every run.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nbd::{Chunk, CmdFlag, Handle};

/// Flag values of the C API, repeated here to keep the harness standalone.
const CMD_FLAG_FUA: u32 = 1;
const CMD_FLAG_DF: u32 = 4;

/// Bytes of read buffers, write data and guard zones the harness owns.
const READ_BUF: usize = 8192;
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xa7;

/// One command the client issues.
#[derive(Clone, Copy, Debug)]
pub enum Cmd {
    Read {
        buf: usize,
        len: usize,
        offset: u64,
        flags: u32,
    },
    Write {
        len: usize,
        offset: u64,
        flags: u32,
    },
    Flush,
    Trim {
        len: u64,
        offset: u64,
    },
    Zero {
        len: u64,
        offset: u64,
    },
    Cache {
        len: u64,
        offset: u64,
    },
    Disconnect,
}

/// The fixed mix: each group is issued at once, then its segment arrives.
pub const GROUPS: &[&[Cmd]] = &[
    &[Cmd::Read {
        buf: 0,
        len: 512,
        offset: 0,
        flags: 0,
    }],
    &[Cmd::Read {
        buf: 1,
        len: 8192,
        offset: 4096,
        flags: 0,
    }],
    &[Cmd::Write {
        len: 1024,
        offset: 512,
        flags: 0,
    }],
    &[Cmd::Flush],
    &[Cmd::Trim {
        len: 4096,
        offset: 8192,
    }],
    &[Cmd::Zero {
        len: 4096,
        offset: 12288,
    }],
    &[Cmd::Cache {
        len: 4096,
        offset: 0,
    }],
    &[Cmd::Read {
        buf: 2,
        len: 1,
        offset: 1,
        flags: CMD_FLAG_DF,
    }],
    &[
        Cmd::Read {
            buf: 3,
            len: 4096,
            offset: 0,
            flags: 0,
        },
        Cmd::Write {
            len: 512,
            offset: 4096,
            flags: CMD_FLAG_FUA,
        },
        Cmd::Read {
            buf: 4,
            len: 4096,
            offset: 65536,
            flags: 0,
        },
        Cmd::Flush,
    ],
    &[Cmd::Disconnect],
];

/// Read buffers with guard zones on both sides, checked after every run.
struct Buffers {
    reads: Vec<Vec<u8>>,
    write: Vec<u8>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            reads: (0..5)
                .map(|_| vec![GUARD_BYTE; READ_BUF + 2 * GUARD])
                .collect(),
            write: (0..4096).map(|i| i as u8).collect(),
        }
    }

    fn read_ptr(&mut self, buf: usize) -> *mut u8 {
        // SAFETY: GUARD < the vector's length.
        unsafe { self.reads[buf].as_mut_ptr().add(GUARD) }
    }

    /// Panics if anything wrote outside a read buffer's window.
    fn check_guards(&self) {
        for r in &self.reads {
            assert!(
                r[..GUARD].iter().all(|&b| b == GUARD_BYTE),
                "write before a read buffer"
            );
            assert!(
                r[GUARD + READ_BUF..].iter().all(|&b| b == GUARD_BYTE),
                "write past a read buffer"
            );
        }
        assert!(
            self.write.iter().enumerate().all(|(i, &b)| b == i as u8),
            "write buffer modified"
        );
    }
}

/// Splits the input into its configuration byte and segments.
pub fn parse(data: &[u8]) -> (u8, Vec<&[u8]>) {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut segs = Vec::new();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let take = len.min(body.len());
        segs.push(&body[..take]);
        rest = &body[take..];
    }
    (cfg, segs)
}

/// Encodes an input from its parts (used to write seeds).
pub fn encode(cfg: u8, segs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![cfg];
    for s in segs {
        assert!(
            s.len() <= u16::MAX as usize,
            "segment too long for the format"
        );
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// The client side: a handle plus what the harness needs to drive it.
pub struct Client {
    // Field order matters: the handle goes before the buffers it points into.
    pub h: Handle,
    cookies: Vec<u64>,
    bufs: Box<Buffers>,
}

impl Client {
    /// Creates the handle and starts the handshake over `sock`.
    pub fn start(cfg: u8, sock: OwnedFd) -> Client {
        let h = Handle::new().expect("nbd_create");
        if cfg & 1 != 0 {
            h.set_request_structured_replies(false).unwrap();
        }
        let _ = h.aio_connect_socket(sock);
        Client {
            h,
            cookies: Vec::new(),
            bufs: Box::new(Buffers::new()),
        }
    }

    /// Lets the state machine do all it can without blocking, and retires
    /// whatever has completed.
    pub fn drive(&mut self) {
        let _ = self.h.aio_notify_read();
        let _ = self.h.aio_notify_write();
        self.cookies
            .retain(|&c| matches!(self.h.aio_command_completed(c as i64), Ok(false)));
    }

    /// True once the handshake is over and commands may be issued.
    pub fn connected(&self) -> bool {
        !self.h.aio_is_created() && !self.h.aio_is_connecting() && !self.h.aio_is_dead()
    }

    pub fn finished(&self) -> bool {
        self.h.aio_is_dead() || self.h.aio_is_closed()
    }

    /// Commands issued and not yet retired.
    pub fn pending(&self) -> usize {
        self.cookies.len()
    }

    /// Issues one group of the mix; commands refused locally are skipped.
    pub fn issue(&mut self, group: &[Cmd], cfg: u8) {
        for &cmd in group {
            let chunk = || {
                (cfg & 4 != 0).then(|| {
                    Chunk::new(|data: &[u8], _offset: u64, _status: u32, _err: &mut i32| {
                        std::hint::black_box(data.iter().fold(0u8, |a, &b| a ^ b));
                        0
                    })
                })
            };
            let r = match cmd {
                Cmd::Read {
                    buf,
                    len,
                    offset,
                    flags,
                } => {
                    let p = self.bufs.read_ptr(buf);
                    // SAFETY: p has READ_BUF >= len bytes, kept alive (and
                    // not otherwise touched) until the handle is dropped.
                    unsafe {
                        match chunk() {
                            Some(c) => self.h.aio_pread_structured(
                                p,
                                len,
                                offset,
                                c,
                                None,
                                CmdFlag::from_bits_retain(flags),
                            ),
                            None => self.h.aio_pread(
                                p,
                                len,
                                offset,
                                None,
                                CmdFlag::from_bits_retain(flags),
                            ),
                        }
                    }
                }
                Cmd::Write { len, offset, flags } => {
                    // SAFETY: as above, for reading.
                    unsafe {
                        self.h.aio_pwrite(
                            self.bufs.write.as_ptr(),
                            len,
                            offset,
                            None,
                            CmdFlag::from_bits_retain(flags),
                        )
                    }
                }
                Cmd::Flush => self.h.aio_flush(None, CmdFlag::empty()),
                Cmd::Trim { len, offset } => self.h.aio_trim(len, offset, None, CmdFlag::empty()),
                Cmd::Zero { len, offset } => self.h.aio_zero(len, offset, None, CmdFlag::empty()),
                Cmd::Cache { len, offset } => self.h.aio_cache(len, offset, None, CmdFlag::empty()),
                Cmd::Disconnect => {
                    let _ = self.h.aio_disconnect(CmdFlag::empty());
                    continue;
                }
            };
            if let Ok(cookie) = r {
                self.cookies.push(cookie);
            }
        }
    }

    /// Drops the handle, then checks nothing wrote outside the buffers.
    pub fn finish(self) {
        let Client { h, bufs, .. } = self;
        drop(h);
        bufs.check_guards();
    }
}

/// Reads and throws away whatever the client has sent.
pub fn drain(s: &mut UnixStream) {
    let mut b = [0u8; 65536];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(_) => return,
        }
    }
}

/// Reads whatever the client has sent into `out`.
pub fn drain_into(s: &mut UnixStream, out: &mut Vec<u8>) {
    let mut b = [0u8; 65536];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(k) => out.extend_from_slice(&b[..k]),
            Err(_) => return,
        }
    }
}

/// Sends `seg` as the server, draining the client's bytes if the socket
/// fills up. Gives up on what does not fit after that.
fn feed(s: &mut UnixStream, seg: &[u8]) {
    let mut off = 0;
    let mut stuck = 0;
    while off < seg.len() && stuck < 2 {
        match s.write(&seg[off..]) {
            Ok(n) => {
                off += n;
                stuck = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                drain(s);
                stuck += 1;
            }
            Err(_) => return,
        }
    }
}

/// One fuzz execution.
pub fn run_one(data: &[u8]) {
    run(data);
}

/// One execution; true if it ended in a clean disconnect (as a replayed
/// recording of a good server does).
pub fn run(data: &[u8]) -> bool {
    let (cfg, segs) = parse(data);
    let (c, mut s) = UnixStream::pair().expect("socketpair");
    s.set_nonblocking(true).unwrap();
    let mut client = Client::start(cfg, OwnedFd::from(c));
    let mut groups = GROUPS.iter();
    for seg in segs {
        feed(&mut s, seg);
        drain(&mut s);
        client.drive();
        if client.finished() {
            break;
        }
        if client.connected() {
            match groups.next() {
                Some(g) => client.issue(g, cfg),
                None => break,
            }
            client.drive();
            drain(&mut s);
        }
    }
    // End of input: the server stops sending. Whatever the client still
    // waits for, it must now finish or die.
    let _ = s.shutdown(std::net::Shutdown::Write);
    for _ in 0..4 {
        drain(&mut s);
        client.drive();
        if client.finished() || (client.connected() && client.pending() == 0) {
            break;
        }
    }
    if !client.h.aio_is_connecting() {
        assert!(
            client.finished() || client.pending() == 0,
            "client still waiting after end-of-file"
        );
    }
    let clean = client.h.aio_is_closed();
    client.finish();
    clean
}
