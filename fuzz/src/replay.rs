//! Without libFuzzer: replays inputs, or records seed inputs from nbdkit.
//!
//! ```text
//! replay FILE|DIR...     run each input once through the harness
//! record OUTDIR          record valid exchanges with nbdkit as seeds
//! ```
//!
//! Recording runs the harness's client against a real nbdkit through a
//! proxy that keeps what the server sends between two client actions as
//! one segment, which is the harness's input format.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libnbd_rs_fuzz::{drain_into, encode, run, Client, GROUPS};

fn inputs(args: &[String]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for a in args {
        let p = Path::new(a);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.to_path_buf());
        }
    }
    files
}

fn replay(args: &[String]) {
    let files = inputs(args);
    let start = Instant::now();
    let mut clean = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        clean += run(&data) as usize;
    }
    println!(
        "replayed {} inputs in {:.2}s, no crash ({} ended in a clean disconnect)",
        files.len(),
        start.elapsed().as_secs_f64(),
        clean
    );
}

/// Waits up to `ms` for `fd` to be readable.
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// A proxy between the harness's client and a real server.
struct Proxy {
    /// Our end of the client's socket.
    s: UnixStream,
    /// Our end of the server's socket.
    n: UnixStream,
    server_eof: bool,
    seg: Vec<u8>,
}

impl Proxy {
    /// Moves bytes both ways once, waiting up to 50 ms for the server.
    fn pump(&mut self, client: &mut Client) {
        client.drive();
        let mut out = Vec::new();
        drain_into(&mut self.s, &mut out);
        if !out.is_empty() {
            let _ = self.n.write_all(&out);
        }
        if self.server_eof || !readable(self.n.as_raw_fd(), 50) {
            return;
        }
        let mut b = [0u8; 65536];
        match self.n.read(&mut b) {
            Ok(0) | Err(_) => {
                self.server_eof = true;
                let _ = self.s.shutdown(std::net::Shutdown::Write);
            }
            Ok(k) => {
                self.seg.extend_from_slice(&b[..k]);
                let mut off = 0;
                while off < k {
                    match self.s.write(&b[off..k]) {
                        Ok(w) => off += w,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => client.drive(),
                        Err(e) => panic!("proxy write: {e}"),
                    }
                }
            }
        }
        client.drive();
    }

    fn pump_until(&mut self, client: &mut Client, done: impl Fn(&Client) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(client) {
            assert!(Instant::now() < deadline, "recording stalled");
            self.pump(client);
            if self.server_eof {
                client.drive();
                return;
            }
        }
    }
}

/// Records one exchange with `argv` (an nbdkit command serving on stdin).
fn record_one(cfg: u8, argv: &[&str]) -> Vec<u8> {
    let (c, s) = UnixStream::pair().unwrap();
    let (n, theirs) = UnixStream::pair().unwrap();
    s.set_nonblocking(true).unwrap();
    let theirs = OwnedFd::from(theirs);
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::from(theirs.try_clone().unwrap()))
        .stdout(Stdio::from(theirs))
        .spawn()
        .expect("cannot run nbdkit");
    let mut proxy = Proxy {
        s,
        n,
        server_eof: false,
        seg: Vec::new(),
    };
    let mut client = Client::start(cfg, OwnedFd::from(c));
    let mut segs = Vec::new();
    proxy.pump_until(&mut client, |c| c.connected() || c.finished());
    segs.push(std::mem::take(&mut proxy.seg));
    assert!(client.connected(), "handshake with {argv:?} failed");
    for g in GROUPS {
        if !client.connected() {
            break;
        }
        client.issue(g, cfg);
        proxy.pump_until(&mut client, |c| c.pending() == 0 || c.finished());
        segs.push(std::mem::take(&mut proxy.seg));
    }
    proxy.pump_until(&mut client, |c| c.finished());
    let closed = client.h.aio_is_closed();
    client.finish();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        closed,
        "{argv:?}: the exchange did not end in a clean disconnect"
    );
    encode(cfg, &segs)
}

fn record(out: &str) {
    let out = Path::new(out);
    std::fs::create_dir_all(out).unwrap();
    let base = ["nbdkit", "-s", "--exit-with-parent"];
    let cases: &[(&str, u8, &[&str])] = &[
        ("memory-structured", 0, &["memory", "1M"]),
        ("memory-simple", 1, &["memory", "1M"]),
        ("memory-chunk-callback", 4, &["memory", "1M"]),
        ("memory-oldstyle", 0, &["--oldstyle", "memory", "1M"]),
        ("pattern-readonly", 0, &["-r", "pattern", "1M"]),
        ("pattern-simple", 1, &["pattern", "1M"]),
        (
            "error-structured",
            0,
            &[
                "--filter=error",
                "memory",
                "1M",
                "error-rate=100%",
                "error=EIO",
            ],
        ),
        (
            "error-simple",
            1,
            &[
                "--filter=error",
                "memory",
                "1M",
                "error-rate=100%",
                "error=ENOSPC",
            ],
        ),
        ("small-export", 0, &["memory", "6000"]),
    ];
    for (name, cfg, args) in cases {
        let argv: Vec<&str> = base.iter().chain(args.iter()).copied().collect();
        let data = record_one(*cfg, &argv);
        // A recorded exchange must replay to the same clean end.
        assert!(run(&data), "{name}: the recording does not replay");
        let path = out.join(name);
        std::fs::write(&path, &data).unwrap();
        println!("{}: {} bytes", path.display(), data.len());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("record") if args.len() == 2 => record(&args[1]),
        Some("replay") if args.len() >= 2 => replay(&args[1..]),
        _ => {
            eprintln!("usage: replay record OUTDIR | replay replay FILE|DIR...");
            std::process::exit(2);
        }
    }
}
