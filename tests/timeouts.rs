//! Timeouts and cancellation of synchronous calls (beyond libnbd): a
//! call that runs out fails with ETIMEDOUT, one cancelled from another
//! thread with ECANCELED; the command's late reply is discarded without
//! touching the caller's buffer and the connection goes on working.

mod common;

use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{have, nbdkit, Server, TempDir};
use nbd::{CmdFlag, Handle};

const SHORT: Duration = Duration::from_millis(200);

/// The byte at `offset` of nbdkit's pattern plugin: each 8-byte block
/// holds its own offset, big-endian.
fn pattern_byte(offset: u64) -> u8 {
    let block = offset & !7;
    (block >> (8 * (7 - (offset & 7)))) as u8
}

fn check_pattern(buf: &[u8], offset: u64) {
    for (i, &b) in buf.iter().enumerate() {
        assert_eq!(
            b,
            pattern_byte(offset + i as u64),
            "byte {i} of read at {offset}"
        );
    }
}

/// nbdkit in the foreground on a Unix socket, so its pid is known; it is
/// sent SIGCONT (in case a test stopped it) before being killed on drop.
struct StoppableServer {
    server: Server,
    _dir: TempDir,
    sock: std::path::PathBuf,
}

impl StoppableServer {
    fn start(args: &[&str]) -> StoppableServer {
        let dir = TempDir::new("timeouts");
        let sock = dir.path("sock");
        let mut argv = vec!["-f", "--exit-with-parent", "-U", sock.to_str().unwrap()];
        argv.extend_from_slice(args);
        let s = sock.clone();
        let server = Server::start("nbdkit", &argv, move || s.exists());
        StoppableServer {
            server,
            _dir: dir,
            sock,
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.server.child.id() as i32;
        // SAFETY: plain syscall on the pid of our own child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0);
        if sig == libc::SIGSTOP {
            // Delivery is asynchronous: wait until it has stopped.
            common::wait_until("SIGSTOP", || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('T')
                })
            });
        }
    }
}

impl Drop for StoppableServer {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
    }
}

#[test]
fn timed_out_read_is_abandoned_and_connection_reused() {
    if !have(
        "nbdkit",
        "timed_out_read_is_abandoned_and_connection_reused",
    ) {
        return;
    }
    let h = nbdkit(&["--filter=delay", "pattern", "size=1M", "rdelay=3"]);
    assert_eq!(h.timeout(), None);
    // The buffer stays alive after the timeout: the late reply must not
    // land in it.
    let mut sentinel = vec![0xa5u8; 65536];
    let start = Instant::now();
    let err = h
        .with_timeout(SHORT, |h| h.pread(&mut sentinel, 0, nbd::CmdFlag::empty()))
        .unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(h.aio_is_ready());
    // As after any failed read (pread_initialize), no old contents are left.
    assert!(sentinel.iter().all(|&b| b == 0));
    sentinel.fill(0xa5);
    // A new read (no timeout) waits behind the late reply and is right.
    let mut buf = vec![0u8; 4096];
    h.pread(&mut buf, 8192, nbd::CmdFlag::empty()).unwrap();
    check_pattern(&buf, 8192);
    // The first reply has come and gone by now (sent before the second).
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sentinel.iter().all(|&b| b == 0xa5),
        "late reply wrote to buffer"
    );
    h.pread(&mut sentinel, 0, nbd::CmdFlag::empty()).unwrap();
    check_pattern(&sentinel, 0);
}

#[test]
fn default_timeout_applies_to_writes() {
    if !have("nbdkit", "default_timeout_applies_to_writes") {
        return;
    }
    let h = nbdkit(&["--filter=delay", "memory", "size=1M", "wdelay=2"]);
    h.set_timeout(Some(SHORT));
    assert_eq!(h.timeout(), Some(SHORT));
    let data = vec![0x5au8; 4096];
    let start = Instant::now();
    let err = h.pwrite(&data, 4096, nbd::CmdFlag::empty()).unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert!(start.elapsed() < Duration::from_secs(1));
    // Reads are not delayed and still work; the write went out whole, so
    // the server applies it late.
    std::thread::sleep(Duration::from_millis(2500));
    let mut buf = vec![0u8; 4096];
    h.pread(&mut buf, 4096, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(buf, data);
    h.set_timeout(None);
    assert_eq!(h.timeout(), None);
    h.pwrite(&[1; 512], 0, nbd::CmdFlag::empty()).unwrap();
}

#[test]
fn stopped_server_times_out_then_resumes() {
    if !have("nbdkit", "stopped_server_times_out_then_resumes") {
        return;
    }
    let srv = StoppableServer::start(&["memory", "size=1M"]);
    let h = Handle::new().unwrap();
    h.connect_unix(&srv.sock).unwrap();
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    h.pwrite(&data, 0, nbd::CmdFlag::empty()).unwrap();
    srv.signal(libc::SIGSTOP);
    h.set_timeout(Some(SHORT));
    let mut a = vec![0xeeu8; 65536];
    let mut b = vec![0xeeu8; 4096];
    for buf in [&mut a[..], &mut b[..]] {
        let err = h.pread(buf, 0, nbd::CmdFlag::empty()).unwrap_err();
        assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
        assert!(buf.iter().all(|&x| x == 0));
        buf.fill(0xee);
    }
    srv.signal(libc::SIGCONT);
    h.set_timeout(Some(Duration::from_secs(10)));
    let mut c = vec![0u8; 65536];
    h.pread(&mut c, 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(c, data);
    assert!(a.iter().chain(&b).all(|&x| x == 0xee));
    h.flush(nbd::CmdFlag::empty()).unwrap();
}

fn cancel_threads(n: usize) {
    let srv = StoppableServer::start(&["pattern", "size=1M"]);
    let h = Arc::new(Handle::new().unwrap());
    h.connect_unix(&srv.sock).unwrap();
    srv.signal(libc::SIGSTOP);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0x11u8; 4096];
                let r = h.pread(&mut buf, 4096 * i as u64, nbd::CmdFlag::empty());
                (r, buf)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    h.cancel_waits();
    for t in threads {
        let (r, buf) = t.join().unwrap();
        let err = r.unwrap_err();
        assert_eq!(err.errno(), libc::ECANCELED, "{err}");
        assert!(buf.iter().all(|&x| x == 0));
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    srv.signal(libc::SIGCONT);
    // A call after the cancellation is not cancelled.
    let mut buf = vec![0u8; 4096];
    h.pread(&mut buf, 12288, nbd::CmdFlag::empty()).unwrap();
    check_pattern(&buf, 12288);
}

#[test]
fn cancel_one_waiting_thread() {
    if have("nbdkit", "cancel_one_waiting_thread") {
        cancel_threads(1);
    }
}

#[test]
fn cancel_several_waiting_threads() {
    if have("nbdkit", "cancel_several_waiting_threads") {
        cancel_threads(4);
    }
}

/// A server that accepts and never speaks: the handshake times out and
/// the handle is dead.
#[test]
fn handshake_timeout_kills_the_handle() {
    let dir = TempDir::new("timeouts-mute");
    let sock = dir.path("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let h = Handle::new().unwrap();
    h.set_timeout(Some(SHORT));
    let start = Instant::now();
    let err = h.connect_unix(&sock).unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(h.aio_is_dead());
    let mut buf = [0u8; 512];
    assert!(h.pread(&mut buf, 0, nbd::CmdFlag::empty()).is_err());
    let (_conn, _) = listener.accept().unwrap();
}

/// An abandoned command's callbacks are freed when it is abandoned and
/// never called, even when its late reply comes.
#[test]
fn timed_out_chunk_callback_never_runs() {
    if !have("nbdkit", "timed_out_chunk_callback_never_runs") {
        return;
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let h = nbdkit(&["--filter=delay", "pattern", "size=1M", "rdelay=1"]);
    let calls = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let (c, guard) = (calls.clone(), Dropped(drops.clone()));
    let chunk = nbd::Chunk::new(move |_, _, _, _| {
        let _keep = &guard;
        c.fetch_add(1, Ordering::SeqCst);
        0
    });
    let mut buf = vec![0u8; 8192];
    let err = h
        .with_timeout(SHORT, |h| {
            h.pread_structured(&mut buf, 0, chunk, nbd::CmdFlag::empty())
        })
        .unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // The next read waits behind the late reply.
    h.pread(&mut buf, 4096, nbd::CmdFlag::empty()).unwrap();
    check_pattern(&buf, 4096);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A server that stops (SIGSTOP'd nbdkit: the kernel still accepts
/// connections): a connect, and an option call in option mode, time out
/// and leave their handles dead; an established connection is unharmed.
#[test]
fn stopped_server_handshake_and_option_call_time_out() {
    if !have(
        "nbdkit",
        "stopped_server_handshake_and_option_call_time_out",
    ) {
        return;
    }
    let srv = StoppableServer::start(&["memory", "size=1M"]);
    let live = Handle::new().unwrap();
    live.connect_unix(&srv.sock).unwrap();
    let opt = Handle::new().unwrap();
    opt.set_opt_mode(true).unwrap();
    opt.connect_unix(&srv.sock).unwrap();
    assert!(opt.aio_is_negotiating());
    srv.signal(libc::SIGSTOP);

    let h = Handle::new().unwrap();
    h.set_timeout(Some(SHORT));
    let start = Instant::now();
    let err = h.connect_unix(&srv.sock).unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(h.aio_is_dead());

    let uri = format!("nbd+unix:///?socket={}", srv.sock.display());
    let h = Handle::new().unwrap();
    let err = h.with_timeout(SHORT, |h| h.connect_uri(&uri)).unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert!(h.aio_is_dead());

    let start = Instant::now();
    let err = opt.with_timeout(SHORT, |h| h.opt_info()).unwrap_err();
    assert_eq!(err.errno(), libc::ETIMEDOUT, "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(opt.aio_is_dead());

    srv.signal(libc::SIGCONT);
    let mut buf = [1u8; 512];
    live.pread(&mut buf, 0, CmdFlag::empty()).unwrap();
    assert_eq!(buf, [0u8; 512]);
}

/// Runs `call` on `h` in another thread and cancels it from this one
/// until it returns (a cancellation that comes before the call waits does
/// not count, and `cancel_waits` never waits for the handle): the call
/// fails with ECANCELED within a second of the first cancellation that
/// reaches it, and leaves the handle dead.
fn cancel_locked_wait(
    h: Arc<Handle>,
    call: impl FnOnce(&Handle) -> nbd::Result<()> + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || {
            let r = call(&h);
            tx.send(()).unwrap();
            r
        })
    };
    // Let the call start waiting, then cancel.
    std::thread::sleep(SHORT);
    let start = Instant::now();
    loop {
        h.cancel_waits();
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the call was not cancelled"
        );
    }
    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(err.errno(), libc::ECANCELED, "{err}");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(h.aio_is_dead());
}

/// A connect, an option call and a shutdown wait for a stopped server with
/// the handle locked; `cancel_waits` from another thread still reaches
/// them: each fails with ECANCELED and leaves its handle dead, while an
/// established connection is unharmed.
#[test]
fn cancel_reaches_connect_option_call_and_shutdown() {
    if !have("nbdkit", "cancel_reaches_connect_option_call_and_shutdown") {
        return;
    }
    let srv = StoppableServer::start(&["memory", "size=1M"]);
    let live = Handle::new().unwrap();
    live.connect_unix(&srv.sock).unwrap();
    let opt = Arc::new(Handle::new().unwrap());
    opt.set_opt_mode(true).unwrap();
    opt.connect_unix(&srv.sock).unwrap();
    let closing = Arc::new(Handle::new().unwrap());
    closing.connect_unix(&srv.sock).unwrap();
    srv.signal(libc::SIGSTOP);

    let sock = srv.sock.clone();
    cancel_locked_wait(Arc::new(Handle::new().unwrap()), move |h| {
        h.connect_unix(&sock)
    });
    let uri = format!("nbd+unix:///?socket={}", srv.sock.display());
    cancel_locked_wait(Arc::new(Handle::new().unwrap()), move |h| {
        h.connect_uri(&uri)
    });
    cancel_locked_wait(opt, |h| h.opt_info());
    cancel_locked_wait(closing, |h| h.shutdown(nbd::Shutdown::empty()));

    srv.signal(libc::SIGCONT);
    let mut buf = [1u8; 512];
    live.pread(&mut buf, 0, CmdFlag::empty()).unwrap();
    assert_eq!(buf, [0u8; 512]);
}
