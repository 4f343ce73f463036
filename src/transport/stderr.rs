//! What a subprocess prints on its standard error, kept for error messages.
//!
//! The child's stderr is a pipe; a small thread copies everything it reads
//! on to our own stderr, as if the child had inherited it, and keeps the
//! last few lines. When the connection to the child fails, the state
//! machine adds them to its message (`ssh: connect to host ...: Connection
//! refused`), which is what the user can act on.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

/// The most bytes of the child's output kept.
const KEEP: usize = 4096;
/// The most lines of it put in a message.
const LINES: usize = 3;

#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    /// The child (and everything it started) has closed the pipe.
    closed: bool,
}

/// The end of a subprocess's standard error, filled by a reader thread.
#[derive(Clone)]
pub(crate) struct StderrTail(Arc<(Mutex<Tail>, Condvar)>);

impl std::fmt::Debug for StderrTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StderrTail")
    }
}

impl StderrTail {
    /// A pipe for the child's stderr: the write end goes to the child, the
    /// read end to [`StderrTail::start`]. Both are close-on-exec.
    pub(crate) fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
        Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
    }

    /// Starts the thread that reads `read_end` until every writer has
    /// closed it. `None` if no thread could be started: the child's
    /// output is then read by nobody, so the caller should not use the pipe.
    pub(crate) fn start(read_end: OwnedFd) -> Option<StderrTail> {
        let tail = StderrTail(Arc::default());
        let shared = tail.clone();
        std::thread::Builder::new()
            .name("nbd-stderr".into())
            .spawn(move || shared.copy(std::fs::File::from(read_end)))
            .ok()?;
        Some(tail)
    }

    fn copy(&self, mut pipe: std::fs::File) {
        let mut buf = [0u8; 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // Where the child's output would have gone had it inherited
            // our stderr.
            let _ = std::io::stderr().write_all(&buf[..n]);
            let (lock, _) = &*self.0;
            let mut t = lock.lock().unwrap_or_else(|p| p.into_inner());
            t.bytes.extend_from_slice(&buf[..n]);
            if t.bytes.len() > KEEP {
                let cut = t.bytes.len() - KEEP;
                t.bytes.drain(..cut);
            }
        }
        let (lock, cond) = &*self.0;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        cond.notify_all();
    }

    /// The last lines the child printed, joined with "; ", once it has
    /// closed its stderr or `wait` has passed; `None` if it printed nothing.
    pub(crate) fn last_lines(&self, wait: Duration) -> Option<String> {
        let (lock, cond) = &*self.0;
        let deadline = Instant::now() + wait;
        let mut t = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !t.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            t = cond
                .wait_timeout(t, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let text = String::from_utf8_lossy(&t.bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let first = lines.len().saturating_sub(LINES);
        (!lines.is_empty()).then(|| lines[first..].join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let (read, write) = StderrTail::pipe().unwrap();
        let tail = StderrTail::start(read).unwrap();
        let mut w = std::fs::File::from(write);
        w.write_all(b"one\n\ntwo\nthree\r\nfour\n").unwrap();
        drop(w);
        assert_eq!(
            tail.last_lines(Duration::from_secs(5)).as_deref(),
            Some("two; three; four")
        );
    }

    #[test]
    fn nothing_printed() {
        let (read, write) = StderrTail::pipe().unwrap();
        let tail = StderrTail::start(read).unwrap();
        drop(write);
        assert_eq!(tail.last_lines(Duration::from_secs(5)), None);
    }

    #[test]
    fn gives_up_waiting() {
        let (read, _write) = StderrTail::pipe().unwrap();
        let tail = StderrTail::start(read).unwrap();
        let start = Instant::now();
        assert_eq!(tail.last_lines(Duration::from_millis(50)), None);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
