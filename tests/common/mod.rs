//! Helpers shared by the integration tests: private temp dirs, server
//! processes cleaned up on drop, and skipping when a server is missing.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nbd::Handle;

/// Whether `program` is on PATH; if not, says which test is skipped.
pub fn have(program: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        eprintln!("SKIP {test}: {program} is not installed");
    }
    found
}

/// A fresh private directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rust-libnbd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed and reaped on drop.
pub struct Server {
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `program args`, then waits until `ready` holds (20 s at most).
    pub fn start(program: &str, args: &[&str], ready: impl Fn() -> bool) -> Server {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{program}: exited early: {status}");
            }
            assert!(Instant::now() < deadline, "{program}: did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

/// Runs a command that must succeed (image preparation and the like).
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A handle connected to `nbdkit -s --exit-with-parent ARGS`.
pub fn nbdkit(args: &[&str]) -> Handle {
    let h = Handle::new().unwrap();
    nbdkit_on(&h, args);
    h
}

/// Connects `h` to `nbdkit -s --exit-with-parent ARGS`.
pub fn nbdkit_on(h: &Handle, args: &[&str]) {
    let mut argv = vec!["nbdkit", "-s", "--exit-with-parent"];
    argv.extend_from_slice(args);
    h.connect_command(&argv)
        .expect("nbdkit must be installed (make check installs it)");
}

/// A daemon known by its pid file, sent SIGTERM on drop.
pub struct Daemon(pub PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// Waits until `ready` holds, failing the test after 20 seconds.
pub fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nbdkit serving `args` on a Unix socket `nbd.sock` in `dir`, started in
/// the foreground and stopped (by pid) on drop. Ready once it accepts:
/// the socket file exists from bind, before listen.
pub fn nbdkit_unix(dir: &TempDir, args: &[&str]) -> (Server, PathBuf) {
    let sock = dir.path("nbd.sock");
    let s = sock.to_str().unwrap().to_string();
    let mut argv = vec!["-U", &s, "-f", "--exit-with-parent"];
    argv.extend_from_slice(args);
    let server = Server::start("nbdkit", &argv, || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    (server, sock)
}

/// `len` bytes that differ with their offset and with `seed`, so data
/// landing in the wrong place, or from the wrong write, shows.
pub fn seeded_pattern(len: usize, offset: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = offset + i as u64;
            (x ^ (x >> 8) ^ (x >> 16)) as u8 ^ seed
        })
        .collect()
}

/// A multi-threaded tokio runtime with two workers, timers and I/O on.
#[cfg(feature = "tokio")]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
