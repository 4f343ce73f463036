//! The close contract of libnbd(3) and nbd_close(3), and what a
//! connect_command child inherits.
//!
//! nbd_close must not race with any other call on the same handle; every
//! other call may come from any thread, and a synchronous call holds the
//! handle's lock while it waits. What the contract allows is tested here:
//! commands left in flight by one thread and the handle closed by another
//! (each callback freed exactly once, the subprocess reaped), calls from
//! other threads while one waits in a slow synchronous read, and a
//! shutdown from one thread while another runs its own poll loop. (In the
//! Rust API the handle is dropped only when the last `Arc` goes, so close
//! cannot race with another call at all.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nbd::{Chunk, Completion, Handle};

/// These tests look at our child processes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on a thread; fails the test if it takes longer than 60 s.
fn with_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => {
            t.join().unwrap();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("hung for 60 s"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!(),
        },
    }
}

#[derive(Default)]
struct Counts {
    calls: AtomicUsize,
    frees: AtomicUsize,
    twice: AtomicUsize,
    ok: AtomicUsize,
}

/// A buffer owned by a completion callback, freed when the callback is.
struct Owned(*mut [u8]);
// SAFETY: touched by the library while the command runs, then only by
// the callback owning it.
unsafe impl Send for Owned {}
impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: from Box::into_raw, dropped once.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

struct Freed(Arc<Counts>);
impl Drop for Freed {
    fn drop(&mut self) {
        self.0.frees.fetch_add(1, Ordering::SeqCst);
    }
}

/// A completion callback that owns `buf` and counts its calls and frees.
fn counted(counts: &Arc<Counts>, buf: Option<Owned>) -> Completion {
    let freed = Freed(counts.clone());
    let mut called = false;
    Completion::new(move |err| {
        let _keep = &buf;
        let c = &freed.0;
        if called {
            c.twice.fetch_add(1, Ordering::SeqCst);
        }
        called = true;
        c.calls.fetch_add(1, Ordering::SeqCst);
        if *err == 0 {
            c.ok.fetch_add(1, Ordering::SeqCst);
        }
        1
    })
}

fn owned(len: usize, byte: u8) -> (Owned, *mut u8) {
    let p = Box::into_raw(vec![byte; len].into_boxed_slice());
    (Owned(p), p as *mut u8)
}

/// Whether `pid` is no longer our child, not even a zombie.
fn reaped(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: plain syscall.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// Commands in flight on a slow server, issued by one thread that then
/// finishes; another thread closes the handle. Every completion callback
/// is called once with an error, as if the connection had died (libnbd
/// 1.22), and every callback is freed exactly once; close does not wait
/// for the delayed replies, and the subprocess is reaped.
#[test]
fn close_in_another_thread_with_commands_in_flight() {
    let _serial = serial();
    with_deadline(|| {
        let h = Arc::new(common::nbdkit(&[
            "--log=null",
            "--filter=delay",
            "memory",
            "4M",
            "rdelay=3",
            "wdelay=3",
        ]));
        let counts = Arc::new(Counts::default());
        let chunk_counts = Arc::new(Counts::default());
        const N: usize = 32;
        let issuer = {
            let h = h.clone();
            let counts = counts.clone();
            let chunk_counts = chunk_counts.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    let (buf, p) = owned(4096, i as u8);
                    let off = (i * 4096) as u64;
                    let cb = counted(&counts, Some(buf));
                    // SAFETY: the callback owns the buffer and is dropped
                    // only once the library is done with it.
                    if i % 4 == 0 {
                        let freed = Freed(chunk_counts.clone());
                        let chunk = Chunk::new(move |_, _, _, _| {
                            let _keep = &freed;
                            0
                        });
                        // SAFETY: as above, the callback owns the buffer.
                        unsafe {
                            h.aio_pread_structured(
                                p,
                                4096,
                                off,
                                chunk,
                                Some(cb),
                                nbd::CmdFlag::empty(),
                            )
                        }
                        .unwrap();
                    } else if i % 2 == 0 {
                        // SAFETY: as above, the callback owns the buffer.
                        unsafe { h.aio_pread(p, 4096, off, Some(cb), nbd::CmdFlag::empty()) }
                            .unwrap();
                    } else {
                        // SAFETY: as above, the callback owns the buffer.
                        unsafe { h.aio_pwrite(p, 4096, off, Some(cb), nbd::CmdFlag::empty()) }
                            .unwrap();
                    }
                }
                h.aio_flush(Some(counted(&counts, None)), nbd::CmdFlag::empty())
                    .unwrap();
                assert_eq!(h.aio_in_flight().unwrap(), N as i32 + 1);
            })
        };
        issuer.join().unwrap();
        let pid = h.subprocess_pid().unwrap();
        assert!(!reaped(pid));
        let closer = std::thread::spawn(move || {
            let h = Arc::try_unwrap(h).expect("the issuer is done with the handle");
            let start = Instant::now();
            h.close();
            start.elapsed()
        });
        let took = closer.join().unwrap();
        eprintln!("close with {} commands in flight took {took:?}", N + 1);
        assert!(
            took < Duration::from_secs(2),
            "close waited for the delayed replies: {took:?}"
        );
        assert_eq!(counts.frees.load(Ordering::SeqCst), N + 1, "frees");
        assert_eq!(
            chunk_counts.frees.load(Ordering::SeqCst),
            N / 4,
            "chunk frees"
        );
        assert_eq!(
            counts.twice.load(Ordering::SeqCst),
            0,
            "callbacks called twice"
        );
        assert_eq!(counts.calls.load(Ordering::SeqCst), N + 1, "calls at close");
        // No reply arrived in time: no command can have succeeded.
        assert_eq!(counts.ok.load(Ordering::SeqCst), 0);
        assert!(reaped(pid), "subprocess {pid} not reaped by close");
    });
}

/// One thread waits in a synchronous read on a slow server (holding the
/// handle's lock, as libnbd does); other threads' calls wait for it and
/// then work; the owner closes once they are all done.
#[test]
fn calls_from_other_threads_while_a_sync_read_waits() {
    let _serial = serial();
    with_deadline(|| {
        let h = Arc::new(common::nbdkit(&[
            "--filter=delay",
            "memory",
            "4M",
            "rdelay=1",
        ]));
        h.pwrite(&[0xab; 65536], 0, nbd::CmdFlag::empty()).unwrap();
        let counts = Arc::new(Counts::default());
        let reader = {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let start = Instant::now();
                h.pread(&mut buf, 0, nbd::CmdFlag::empty()).unwrap();
                assert!(buf.iter().all(|&b| b == 0xab));
                start.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let others: Vec<_> = (0..3)
            .map(|t| {
                let h = h.clone();
                let counts = counts.clone();
                std::thread::spawn(move || {
                    // Any call may come from any thread; those needing the
                    // lock wait until the read is done.
                    assert!(!h.debug());
                    let _ = h.private_data();
                    let (buf, p) = owned(4096, t as u8 + 1);
                    let off = 1_048_576 + (t * 4096) as u64;
                    // SAFETY: the callback owns the buffer.
                    unsafe {
                        h.aio_pwrite(
                            p,
                            4096,
                            off,
                            Some(counted(&counts, Some(buf))),
                            nbd::CmdFlag::empty(),
                        )
                    }
                    .unwrap();
                    assert!(h.aio_in_flight().unwrap() >= 0);
                    let mut back = vec![0u8; 4096];
                    h.pread(&mut back, off, nbd::CmdFlag::empty()).unwrap();
                    assert!(back.iter().all(|&b| b == t as u8 + 1), "thread {t}");
                })
            })
            .collect();
        let took = reader.join().unwrap();
        assert!(
            took >= Duration::from_millis(900),
            "the read was not delayed: {took:?}"
        );
        for o in others {
            o.join().unwrap();
        }
        // Each writer read its block back, so its write is done.
        assert_eq!(counts.calls.load(Ordering::SeqCst), 3);
        assert_eq!(counts.ok.load(Ordering::SeqCst), 3);
        assert_eq!(counts.frees.load(Ordering::SeqCst), 3);
        let pid = h.subprocess_pid().unwrap();
        Arc::try_unwrap(h).expect("every thread is done").close();
        assert!(reaped(pid));
    });
}

/// One thread runs its own poll loop (polling the fd without the handle's
/// lock) for commands in flight; another shuts the connection down. Every
/// command gets its reply first (nbdkit cuts its delays short and answers
/// ESHUTDOWN), so each callback is called once; the loop sees the close.
#[test]
fn shutdown_from_another_thread_while_one_polls() {
    let _serial = serial();
    with_deadline(|| {
        let h = Arc::new(common::nbdkit(&[
            "--log=null",
            "--filter=delay",
            "memory",
            "4M",
            "rdelay=1",
        ]));
        let counts = Arc::new(Counts::default());
        const N: usize = 16;
        for i in 0..N {
            let (buf, p) = owned(4096, 0);
            // SAFETY: the callback owns the buffer.
            unsafe {
                h.aio_pread(
                    p,
                    4096,
                    (i * 4096) as u64,
                    Some(counted(&counts, Some(buf))),
                    nbd::CmdFlag::empty(),
                )
            }
            .unwrap();
        }
        let poller = {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut rounds = 0;
                while let Ok(fd) = h.aio_get_fd() {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 20) };
                    if h.aio_notify_read().is_err() {
                        break;
                    }
                    rounds += 1;
                }
                rounds
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        h.shutdown(nbd::Shutdown::empty()).unwrap();
        assert!(h.aio_is_closed());
        poller.join().unwrap();
        assert_eq!(counts.calls.load(Ordering::SeqCst), N);
        assert_eq!(counts.frees.load(Ordering::SeqCst), N);
        assert_eq!(counts.twice.load(Ordering::SeqCst), 0);
        let pid = h.subprocess_pid().unwrap();
        Arc::try_unwrap(h).expect("the poller is done").close();
        assert!(reaped(pid));
    });
}

/// The fds a connect_command child starts with, as `fd -> link` pairs:
/// the child is a shell that lists its own fds into `out` (from a command
/// substitution, whose pipe is the one extra fd) and then execs
/// nbdkit on the same fds (nbdkit -s itself moves the socket off 0 and 1).
fn child_fds(h: &Handle, out: &std::path::Path) -> Vec<(String, String)> {
    let script = format!(
        "fds=$(ls -l /proc/$$/fd/) && printf '%s\\n' \"$fds\" > {0} && \\
         exec nbdkit -s --exit-with-parent memory 1M",
        out.display()
    );
    h.connect_command(&["sh", "-c", &script]).unwrap();
    let listing = std::fs::read_to_string(out).unwrap();
    listing
        .lines()
        .filter_map(|line| {
            let (left, link) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?;
            Some((fd.to_string(), link.to_string()))
        })
        .collect()
}

fn fd_link(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The child of connect_command has the socket as stdin and stdout, and
/// none of our close-on-exec fds: not our end of its own socket, not
/// another handle's socket, not a file we opened.
#[test]
fn connect_command_child_gets_the_socket_on_stdin_stdout() {
    use std::os::fd::AsRawFd;
    let _serial = serial();
    let dir = common::TempDir::new("close");
    let first = common::nbdkit(&["memory", "1M"]);
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let h = Handle::new().unwrap();
    let fds = child_fds(&h, &dir.path("fds"));
    let our_end = fd_link(h.aio_get_fd().unwrap());
    let first_sock = fd_link(first.aio_get_fd().unwrap());
    let exe = fd_link(file.as_raw_fd());

    let link = |n: &str| fds.iter().find(|(fd, _)| fd == n).map(|(_, l)| l.clone());
    let stdin = link("0").expect("child has fd 0");
    assert!(stdin.starts_with("socket:["), "fd 0 is {stdin}");
    assert_eq!(
        link("1").as_ref(),
        Some(&stdin),
        "fds 0 and 1 are the same socket"
    );
    assert_ne!(stdin, our_end, "the child has the other end of the pair");
    for (fd, link) in &fds {
        assert_ne!(link, &our_end, "our end of the socket leaked as fd {fd}");
        assert_ne!(
            link, &first_sock,
            "another handle's socket leaked as fd {fd}"
        );
        assert_ne!(link, &exe, "a close-on-exec file leaked as fd {fd}");
    }
    // nbdkit, exec'd on those fds, serves the handle.
    h.pwrite(&[1; 512], 0, nbd::CmdFlag::empty()).unwrap();
    let mut back = [0u8; 512];
    h.pread(&mut back, 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(back, [1; 512]);
    drop(file);
    drop(first);
}
