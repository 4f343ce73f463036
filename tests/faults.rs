//! Real-server faults, with nbdkit: the server killed in the middle of a
//! command, random errors from nbdkit's `error` filter and slow replies
//! from its `delay` filter, under a loop of commands with data checked.
//!
//! Skipped (with a message) when nbdkit is not installed; tests/ensure-deps.sh
//! installs it for `make check`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use nbd::{Completion, Error, Handle};

const DEADLINE: Duration = Duration::from_secs(60);

fn have_nbdkit() -> bool {
    let ok = Command::new("nbdkit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: nbdkit is not installed");
    }
    ok
}

/// Runs `f` in a thread; fails the test if it takes longer than the deadline.
fn with_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(r) => {
            t.join().unwrap();
            r
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung for {DEADLINE:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!(),
        },
    }
}

fn nbdkit(args: &[&str]) -> Handle {
    let h = Handle::new().unwrap();
    let mut argv = vec!["nbdkit", "-s", "--exit-with-parent"];
    argv.extend_from_slice(args);
    h.connect_command(&argv).expect("cannot start nbdkit");
    h
}

/// Counts calls and drops of completion callbacks.
#[derive(Default)]
struct Counts {
    calls: AtomicUsize,
    frees: AtomicUsize,
    errors: std::sync::Mutex<Vec<i32>>,
}

struct FreeGuard(Arc<Counts>);
impl Drop for FreeGuard {
    fn drop(&mut self) {
        self.0.frees.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_completion(counts: &Arc<Counts>) -> Completion {
    let guard = FreeGuard(counts.clone());
    Completion::new(move |err: &mut i32| {
        let c = &guard.0;
        c.calls.fetch_add(1, Ordering::SeqCst);
        c.errors.lock().unwrap().push(*err);
        0
    })
}

fn kill_after(pid: i32, delay: Duration) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(delay);
        // SAFETY: plain syscall. The handle's own kill_subprocess cannot be
        // used here: like libnbd, a synchronous call holds the handle's lock
        // while it waits, so another thread's call would wait for it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    })
}

/// nbdkit is SIGKILLed while a read waits for its (delayed) reply: the
/// read fails, the handle is closed, nothing hangs.
#[test]
fn nbdkit_killed_during_pread() {
    if !have_nbdkit() {
        return;
    }
    with_deadline(|| {
        let h = nbdkit(&["--filter=delay", "memory", "1M", "rdelay=5"]);
        let pid = h.subprocess_pid().unwrap();
        let killer = kill_after(pid, Duration::from_millis(300));
        let start = Instant::now();
        let mut buf = vec![0u8; 65536];
        let e = h
            .pread(&mut buf, 0, nbd::CmdFlag::empty())
            .expect_err("read from a killed server");
        killer.join().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the read waited for the delayed reply instead of failing"
        );
        // The server vanished between replies, with the command in
        // flight: it fails with ENOTCONN and the handle is closed, as
        // libnbd 1.22 reports it.
        assert_eq!(e.errno(), libc::ENOTCONN, "{e}");
        assert!(h.aio_is_closed());
        assert_eq!(
            h.flush(nbd::CmdFlag::empty()).unwrap_err().errno(),
            libc::EINVAL
        );
        // The subprocess is reaped on close; this must not hang.
        drop(h);
    });
}

/// The same during a large write, with the request still being sent.
#[test]
fn nbdkit_killed_during_pwrite() {
    if !have_nbdkit() {
        return;
    }
    with_deadline(|| {
        let h = nbdkit(&["--filter=delay", "memory", "64M", "wdelay=5"]);
        let pid = h.subprocess_pid().unwrap();
        let killer = kill_after(pid, Duration::from_millis(300));
        let data = vec![0x5au8; 32 << 20];
        let e = h
            .pwrite(&data, 0, nbd::CmdFlag::empty())
            .expect_err("write to a killed server");
        killer.join().unwrap();
        assert!(
            [0, libc::EPIPE, libc::ECONNRESET, libc::ENOTCONN].contains(&e.errno()),
            "{e}"
        );
        // Dead if the request was still being sent, closed if the server
        // had all of it.
        assert!(h.aio_is_dead() || h.aio_is_closed());
    });
}

/// Several asynchronous commands in flight when nbdkit is killed: every
/// one completes with an error, each completion callback is called once
/// and freed once, and polling does not hang.
#[test]
fn nbdkit_killed_with_commands_in_flight() {
    if !have_nbdkit() {
        return;
    }
    with_deadline(|| {
        let h = nbdkit(&["--filter=delay", "memory", "1M", "rdelay=5", "delay-zero=5"]);
        let counts = Arc::new(Counts::default());
        let mut bufs = vec![vec![0u8; 4096]; 6];
        let mut cookies = Vec::new();
        for (i, b) in bufs.iter_mut().enumerate() {
            // SAFETY: the buffers outlive the handle's use of them: every
            // command is retired (or the handle dropped) before they go.
            let c = unsafe {
                h.aio_pread(
                    b.as_mut_ptr(),
                    b.len(),
                    i as u64 * 4096,
                    Some(counting_completion(&counts)),
                    nbd::CmdFlag::empty(),
                )
            }
            .unwrap();
            cookies.push(c);
        }
        cookies.push(
            h.aio_zero(
                4096,
                65536,
                Some(counting_completion(&counts)),
                nbd::CmdFlag::empty(),
            )
            .unwrap(),
        );
        assert_eq!(h.aio_in_flight().unwrap(), 7);
        let pid = h.subprocess_pid().unwrap();
        kill_after(pid, Duration::from_millis(300)).join().unwrap();
        let start = Instant::now();
        while !h.aio_is_dead() && !h.aio_is_closed() {
            assert!(
                start.elapsed() < Duration::from_secs(4),
                "poll did not notice the death"
            );
            if h.poll(1000).is_err() {
                break;
            }
        }
        // The server left between replies: closed (as libnbd 1.22).
        assert!(h.aio_is_closed());
        assert_eq!(
            counts.calls.load(Ordering::SeqCst),
            7,
            "completion callbacks not called once each"
        );
        for c in cookies {
            let e: Error = h
                .aio_command_completed(c as i64)
                .expect_err("command succeeded");
            assert_eq!(e.errno(), libc::ENOTCONN, "{e}");
        }
        assert!(counts
            .errors
            .lock()
            .unwrap()
            .iter()
            .all(|&e| e == libc::ENOTCONN));
        assert_eq!(
            counts.frees.load(Ordering::SeqCst),
            7,
            "callbacks not freed once each"
        );
        drop(h);
        assert_eq!(counts.calls.load(Ordering::SeqCst), 7);
        assert_eq!(counts.frees.load(Ordering::SeqCst), 7);
        drop(bufs);
    });
}

/// A model of the export: which bytes are known, and what they hold.
struct Model {
    data: Vec<u8>,
    known: Vec<bool>,
}

impl Model {
    fn new(size: usize) -> Model {
        Model {
            data: vec![0; size],
            known: vec![true; size],
        }
    }
    fn set(&mut self, off: usize, d: &[u8]) {
        self.data[off..off + d.len()].copy_from_slice(d);
        self.known[off..off + d.len()].fill(true);
    }
    fn forget(&mut self, off: usize, len: usize) {
        self.known[off..off + len].fill(false);
    }
    fn check(&self, off: usize, got: &[u8]) {
        for (i, &b) in got.iter().enumerate() {
            if self.known[off + i] {
                assert_eq!(b, self.data[off + i], "wrong byte at {}", off + i);
            }
        }
    }
}

/// A small deterministic generator, so failures can be reproduced.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    failed: HashMap<i32, usize>,
}

/// A loop of reads, writes, zeroes and flushes against `h` (an empty
/// 1 MiB export): every failure must be EIO, every successful read must
/// return what was last successfully written. A failed write or zero
/// leaves its range unknown.
fn command_loop(h: &Handle, iterations: usize, seed: u64) -> Tally {
    const SIZE: usize = 1 << 20;
    let mut model = Model::new(SIZE);
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for i in 0..iterations {
        let len = 512 * (1 + rng.below(16) as usize);
        let off = 512 * rng.below((SIZE - len) as u64 / 512) as usize;
        let r = match rng.below(4) {
            0 | 1 => {
                let mut buf = vec![0u8; len];
                let r = h.pread(&mut buf, off as u64, nbd::CmdFlag::empty());
                if r.is_ok() {
                    model.check(off, &buf);
                }
                r
            }
            2 => {
                let data: Vec<u8> = (0..len).map(|k| (i + k) as u8 | 1).collect();
                let r = h.pwrite(&data, off as u64, nbd::CmdFlag::empty());
                match r {
                    Ok(()) => model.set(off, &data),
                    Err(_) => model.forget(off, len),
                }
                r
            }
            _ if rng.below(2) == 0 => {
                let r = h.zero(len as u64, off as u64, nbd::CmdFlag::empty());
                match r {
                    Ok(()) => model.set(off, &vec![0; len]),
                    Err(_) => model.forget(off, len),
                }
                r
            }
            _ => h.flush(nbd::CmdFlag::empty()),
        };
        match r {
            Ok(()) => tally.ok += 1,
            Err(e) => {
                assert_eq!(e.errno(), libc::EIO, "command {i} failed with {e}");
                *tally.failed.entry(e.errno()).or_default() += 1;
            }
        }
        assert!(!h.aio_is_dead(), "handle died at command {i}");
    }
    tally
}

/// nbdkit's error filter fails a third of all requests with EIO.
#[test]
fn error_filter_random_errors() {
    if !have_nbdkit() {
        return;
    }
    let tally = with_deadline(|| {
        let h = nbdkit(&[
            "--filter=error",
            "memory",
            "1M",
            "error=EIO",
            "error-rate=33%",
        ]);
        let t = command_loop(&h, 1500, 0x9e37_79b9_7f4a_7c15);
        h.shutdown(nbd::Shutdown::empty()).unwrap();
        t
    });
    eprintln!("error filter: {tally:?}");
    let failed = tally.failed.get(&libc::EIO).copied().unwrap_or(0);
    assert!(
        failed > 300 && tally.ok > 600,
        "implausible error rate: {tally:?}"
    );
}

/// The same without structured replies (errors come as simple replies).
#[test]
fn error_filter_random_errors_simple_replies() {
    if !have_nbdkit() {
        return;
    }
    let tally = with_deadline(|| {
        let h = Handle::new().unwrap();
        h.set_request_structured_replies(false).unwrap();
        h.connect_command(&[
            "nbdkit",
            "-s",
            "--exit-with-parent",
            "--filter=error",
            "memory",
            "1M",
            "error=EIO",
            "error-rate=33%",
        ])
        .unwrap();
        assert!(!h.structured_replies_negotiated().unwrap());
        command_loop(&h, 800, 77)
    });
    assert!(
        tally.failed.get(&libc::EIO).copied().unwrap_or(0) > 100,
        "{tally:?}"
    );
}

/// nbdkit's delay filter makes every reply slow: the commands still
/// complete correctly, each taking at least the delay.
#[test]
fn delay_filter_slow_replies() {
    if !have_nbdkit() {
        return;
    }
    with_deadline(|| {
        let h = nbdkit(&[
            "--filter=delay",
            "memory",
            "1M",
            "rdelay=20ms",
            "wdelay=20ms",
        ]);
        let start = Instant::now();
        let tally = command_loop(&h, 60, 5);
        assert!(tally.failed.is_empty(), "{tally:?}");
        // Reads and writes (most of the 60) each wait 20 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(20 * 30),
            "no delay seen"
        );
        h.shutdown(nbd::Shutdown::empty()).unwrap();
    });
}

/// Random errors and slow replies at once, with several asynchronous reads
/// in flight: each one fails with EIO or returns the right data.
#[test]
fn error_and_delay_filters_async_reads() {
    if !have_nbdkit() {
        return;
    }
    with_deadline(|| {
        let h = nbdkit(&[
            "--filter=error",
            "--filter=delay",
            "pattern",
            "1M",
            "error=EIO",
            "error-rate=25%",
            "rdelay=10ms",
        ]);
        let (mut ok, mut eio) = (0, 0);
        for round in 0..10u64 {
            let mut bufs = vec![vec![0u8; 4096]; 8];
            let mut cookies = Vec::new();
            for (i, b) in bufs.iter_mut().enumerate() {
                let off = (round * 8 + i as u64) * 4096;
                // SAFETY: every command is retired below, before bufs goes.
                let c =
                    unsafe { h.aio_pread(b.as_mut_ptr(), 4096, off, None, nbd::CmdFlag::empty()) }
                        .unwrap();
                cookies.push((c, off));
            }
            let mut done = vec![false; cookies.len()];
            while done.iter().any(|d| !d) {
                h.poll(-1).unwrap();
                for (k, &(c, off)) in cookies.iter().enumerate() {
                    if done[k] {
                        continue;
                    }
                    match h.aio_command_completed(c as i64) {
                        Ok(false) => {}
                        Ok(true) => {
                            done[k] = true;
                            ok += 1;
                            // The pattern plugin: each 8-byte word holds its offset.
                            for (w, chunk) in bufs[k].chunks(8).enumerate() {
                                let want = off + 8 * w as u64;
                                assert_eq!(u64::from_be_bytes(chunk.try_into().unwrap()), want);
                            }
                        }
                        Err(e) => {
                            done[k] = true;
                            assert_eq!(e.errno(), libc::EIO, "{e}");
                            eio += 1;
                        }
                    }
                }
            }
        }
        eprintln!("error+delay, async: {ok} ok, {eio} EIO");
        assert!(ok > 20 && eio > 5, "implausible: {ok} ok, {eio} EIO");
        h.shutdown(nbd::Shutdown::empty()).unwrap();
    });
}
