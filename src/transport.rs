//! Transports: how bytes reach the server.
//!
//! Every transport is a non-blocking [`Transport`]; the state machine only
//! ever calls `recv`/`send` when poll says the fd is ready, and treats
//! `WouldBlock` as "wait for readiness".

use std::ffi::{c_char, CString};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, Signal};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

mod activation;
mod addr;
mod stderr;
mod tls;
mod waker;

pub(crate) use activation::{spawn_socket_activation, SocketDir};
pub(crate) use addr::{connect_result, resolve, start_connect, SockAddr, Stage, Started};
pub(crate) use stderr::StderrTail;
pub use tls::TlsCredentials;
pub(crate) use tls::{PskSource, TlsConfig, TlsTransport};
pub(crate) use waker::Waker;

/// A connected, non-blocking byte stream to the server.
pub(crate) trait Transport: Send {
    /// The fd to poll for readiness.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Receives into `buf`; `Ok(0)` means the server closed the connection.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Receives into `first` and, once it is full, on into `then`: the
    /// rest of a payload and the header after it in one call. Returns the
    /// bytes received in all. Transports that cannot do both fill `first`.
    fn recv_pair(&mut self, first: &mut [u8], then: &mut [u8]) -> io::Result<usize> {
        let _ = then;
        self.recv(first)
    }
    /// Sends as much of `bufs`, in order, as the socket takes now.
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Tells the server no more data follows.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Shuts the socket down both ways; a poll on its fd returns at once.
    fn shutdown_both(&mut self) -> io::Result<()> {
        Ok(socket::shutdown(self.fd().as_raw_fd(), Shutdown::Both)?)
    }

    /// Drives a TLS handshake in progress; true once it is complete.
    /// Transports without one are always complete.
    fn handshake(&mut self) -> crate::Result<bool> {
        Ok(true)
    }
    /// Whether the transport needs the fd to become writable: it holds
    /// accepted bytes not yet on the wire, or its protocol must write.
    fn wants_write(&self) -> bool {
        false
    }
    /// Pushes out what `wants_write` reported; true if any bytes moved.
    fn flush(&mut self) -> io::Result<bool> {
        Ok(false)
    }
    /// Received bytes wait inside the transport, so `recv` returns data
    /// even though the fd may not poll readable.
    fn pending(&self) -> bool {
        false
    }
    /// The TLS session in use, for debug messages; `None` for plain sockets.
    fn tls_description(&self) -> Option<String> {
        None
    }
}

/// A plain stream socket (unix, TCP, or one end of a socketpair).
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Wraps a connected socket and makes it non-blocking.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Socket> {
        set_nonblocking(&fd)?;
        Ok(Socket { fd })
    }

    /// Wraps a connected socket that was created with `SOCK_NONBLOCK`.
    pub(crate) fn from_nonblocking(fd: OwnedFd) -> Socket {
        Socket { fd }
    }
}

/// Send buffer asked for on the Unix sockets we create; the kernel doubles
/// it and caps it at twice `net.core.wmem_max`.
const UNIX_SNDBUF: usize = 1 << 20;

/// Raises the send buffer of a Unix stream socket to [`UNIX_SNDBUF`].
/// On such a socket only the sender's buffer limits the bytes in flight,
/// so with the default (about 208 KiB) a 1 MiB write stops several times
/// to wait for the peer. Failure is harmless and ignored.
pub(crate) fn enlarge_unix_send_buffer(fd: impl AsFd) {
    let _ = socket::setsockopt(&fd, sockopt::SndBuf, &UNIX_SNDBUF);
}

/// Runs `call` again while it fails with EINTR.
fn retry<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}

impl Transport for Socket {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        retry(|| socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::empty()))
    }

    fn recv_pair(&mut self, first: &mut [u8], then: &mut [u8]) -> io::Result<usize> {
        let mut iov = [IoSliceMut::new(first), IoSliceMut::new(then)];
        retry(|| nix::sys::uio::readv(&self.fd, &mut iov))
    }

    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let bufs = &bufs[..bufs.len().min(libc::UIO_MAXIOV as usize)];
        // MSG_NOSIGNAL turns SIGPIPE into EPIPE.
        retry(|| {
            socket::sendmsg::<()>(self.fd.as_raw_fd(), bufs, &[], MsgFlags::MSG_NOSIGNAL, None)
        })
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(socket::shutdown(self.fd.as_raw_fd(), Shutdown::Write)?)
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A server started as our child process.
#[derive(Debug)]
pub(crate) struct Subprocess {
    pid: libc::pid_t,
    reaped: bool,
    /// Send SIGTERM at once when reaping: a socket-activated server keeps
    /// listening after our connection closes, so it would never exit.
    term_on_close: bool,
    /// What the child prints on stderr, when it is captured.
    stderr: Option<StderrTail>,
    /// The program's name, for messages.
    name: String,
    /// How the child ended, once it has been waited for.
    status: Option<WaitStatus>,
}

impl Subprocess {
    /// Our child `pid`, running `program`.
    pub(crate) fn new(pid: libc::pid_t, program: &[u8], term_on_close: bool) -> Subprocess {
        let name = program.rsplit(|&b| b == b'/').next().unwrap_or(program);
        Subprocess {
            pid,
            reaped: false,
            term_on_close,
            stderr: None,
            name: String::from_utf8_lossy(name).into_owned(),
            status: None,
        }
    }

    /// How the child ended, waiting up to `wait` for it to: "nbdkit exited
    /// with status 1", "ssh was killed by signal 9"; `None` if it is still
    /// running.
    pub(crate) fn exit_description(&mut self, wait: Duration) -> Option<String> {
        if !self.reaped {
            self.wait_timeout(wait);
        }
        match self.status? {
            WaitStatus::Exited(_, code) => Some(format!("{} exited with status {code}", self.name)),
            WaitStatus::Signaled(_, signal, _) => Some(format!(
                "{} was killed by signal {} ({})",
                self.name, signal as i32, signal
            )),
            _ => None,
        }
    }

    /// Reaps the child as [`Subprocess::reap`] does, on a thread of its
    /// own, so the caller never waits.
    pub(crate) fn reap_in_background(mut self) {
        if self.reaped {
            return;
        }
        // If no thread can be started, the closure is dropped with the
        // child in it, and Drop reaps it here after all.
        let _ = std::thread::Builder::new()
            .name("nbd-reaper".into())
            .spawn(move || self.reap());
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The end of the child's stderr, when [`spawn_command`] captured it.
    pub(crate) fn stderr(&self) -> Option<&StderrTail> {
        self.stderr.as_ref()
    }

    /// Sends `signum` to the child (0 only checks that it exists).
    pub(crate) fn kill(&self, signum: i32) -> io::Result<()> {
        if self.reaped {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let signal = match signum {
            0 => None,
            n => Some(Signal::try_from(n)?),
        };
        Ok(signal::kill(Pid::from_raw(self.pid), signal)?)
    }

    /// Waits for the child to exit: it should on its own once its socket is
    /// closed; if it has not within a grace period it gets SIGTERM, then SIGKILL.
    pub(crate) fn reap(&mut self) {
        if self.reaped {
            return;
        }
        if self.term_on_close {
            let _ = self.kill(libc::SIGTERM);
        }
        let grace = Duration::from_secs(2);
        if !self.wait_timeout(grace) {
            let _ = self.kill(libc::SIGTERM);
            if !self.wait_timeout(grace) {
                let _ = self.kill(libc::SIGKILL);
                self.wait_blocking();
            }
        }
    }

    fn try_wait(&mut self) -> bool {
        match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => {
                self.status = Some(status);
                self.reaped = true;
            }
            // No longer our child to wait for.
            Err(_) => self.reaped = true,
        }
        self.reaped
    }

    fn wait_blocking(&mut self) {
        if let Ok(status) = retry(|| waitpid(Pid::from_raw(self.pid), None)) {
            self.status = Some(status);
        }
        self.reaped = true;
    }

    /// Waits up to `timeout` for the child to exit, with a pidfd when the
    /// kernel has them, else by blocking in waitpid as libnbd does.
    fn wait_timeout(&mut self, timeout: Duration) -> bool {
        if self.try_wait() {
            return true;
        }
        // SAFETY: pidfd_open (which nix does not have) takes a pid and
        // flags, touches no memory, and returns a new fd, ours to own, or -1.
        let pidfd = unsafe {
            match libc::syscall(libc::SYS_pidfd_open, self.pid, 0) {
                fd if fd >= 0 => Some(OwnedFd::from_raw_fd(fd as RawFd)),
                _ => None,
            }
        };
        let Some(pidfd) = pidfd else {
            self.wait_blocking();
            return true;
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut pfd = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if let Err(Errno::EINTR) = nix::poll::poll(&mut pfd, left) {
                continue;
            }
            return self.try_wait();
        }
    }
}

impl Drop for Subprocess {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Everything the child needs, built before fork so the child only makes
/// async-signal-safe system calls (no allocation, no locks).
struct ExecPlan {
    /// Paths to try with execve, in order (PATH search done here).
    paths: Vec<CString>,
    /// NULL-terminated argv pointers into the caller's strings.
    argv: Vec<*const c_char>,
    /// Messages to print if every exec fails, by errno.
    enoent_msg: Vec<u8>,
    eacces_msg: Vec<u8>,
    other_msg: Vec<u8>,
}

impl ExecPlan {
    fn new(argv: &[CString]) -> ExecPlan {
        let program = argv[0].as_bytes();
        let mut paths = Vec::new();
        if program.contains(&b'/') {
            paths.push(argv[0].clone());
        } else {
            let path_var = std::env::var_os("PATH")
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .unwrap_or_else(|| b"/bin:/usr/bin".to_vec());
            for dir in path_var.split(|&b| b == b':') {
                let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                let mut full = dir.to_vec();
                full.push(b'/');
                full.extend_from_slice(program);
                if let Ok(c) = CString::new(full) {
                    paths.push(c);
                }
            }
        }
        let mut ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        let msg = |errno: i32| {
            let mut m = program.to_vec();
            m.extend_from_slice(b": ");
            m.extend_from_slice(crate::strerror(errno).as_bytes());
            m.push(b'\n');
            m
        };
        ExecPlan {
            paths,
            argv: ptrs,
            enoent_msg: msg(libc::ENOENT),
            eacces_msg: msg(libc::EACCES),
            other_msg: msg(libc::ENOEXEC),
        }
    }
}

extern "C" {
    static environ: *const *const c_char;
}

/// Runs `argv` as a child whose stdin and stdout are one end of a socketpair;
/// returns our end (non-blocking) and the child. With `capture_stderr` the
/// child's stderr is a pipe read by a [`StderrTail`] (which passes it on to
/// ours); otherwise the child inherits our stderr.
pub(crate) fn spawn_command(
    argv: &[CString],
    env: Option<&[CString]>,
    capture_stderr: bool,
) -> io::Result<(Socket, Subprocess)> {
    if argv.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let plan = ExecPlan::new(argv);
    // The child's environment: ours, or exactly `env`.
    let envp: Option<Vec<*const c_char>> = env.map(|vars| {
        vars.iter()
            .map(|v| v.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    });
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    // Both directions: our writes, and the server's replies to our reads.
    enlarge_unix_send_buffer(&ours);
    enlarge_unix_send_buffer(&theirs);
    let stderr_pipe = if capture_stderr {
        Some(StderrTail::pipe()?)
    } else {
        None
    };
    let child_stderr = stderr_pipe.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());

    // SAFETY: after fork the child (pid 0) calls only async-signal-safe
    // functions (fcntl, dup2, close, sigprocmask, signal, execve, write,
    // _exit) on data prepared above, and never returns; envp (ours, or
    // the caller's) is a NULL-terminated array of pointers to
    // NUL-terminated strings that outlive the exec.
    let pid = unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let envp = envp.as_ref().map_or(environ, |e| e.as_ptr());
            exec_child(theirs.as_raw_fd(), child_stderr, &plan, envp)
        }
        pid
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(theirs);
    let stderr = stderr_pipe.and_then(|(read, write)| {
        drop(write);
        StderrTail::start(read)
    });
    let socket = Socket::new(ours)?;
    let mut child = Subprocess::new(pid, argv[0].as_bytes(), false);
    child.stderr = stderr;
    Ok((socket, child))
}

/// Runs a command the caller configured (program, arguments, environment,
/// working directory, ...) with its stdin and stdout one end of a
/// socketpair, as [`spawn_command`] does; `capture_stderr` replaces its
/// stderr with a [`StderrTail`].
pub(crate) fn spawn_process(
    cmd: &mut std::process::Command,
    capture_stderr: bool,
) -> io::Result<(Socket, Subprocess)> {
    use std::os::unix::ffi::OsStrExt;
    use std::process::Stdio;
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    enlarge_unix_send_buffer(&ours);
    enlarge_unix_send_buffer(&theirs);
    cmd.stdin(Stdio::from(theirs.try_clone()?))
        .stdout(Stdio::from(theirs));
    if capture_stderr {
        cmd.stderr(Stdio::piped());
    }
    // std's spawn is fork-safe, and reports an exec failure as an error.
    let spawned = cmd.spawn();
    if spawned.is_err() {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
    }
    let mut child = spawned?;
    let stderr = child
        .stderr
        .take()
        .and_then(|pipe| StderrTail::start(OwnedFd::from(pipe)));
    // The Command keeps what it was given for stdin and stdout: our
    // socket's other end, which must close now, or the server's exit
    // would never reach us as end of file.
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // Our Subprocess waits for it from now on (dropping std's Child
    // neither waits nor kills).
    let pid = child.id() as libc::pid_t;
    drop(child);
    let mut sub = Subprocess::new(pid, cmd.get_program().as_bytes(), false);
    sub.stderr = stderr;
    Ok((Socket::new(ours)?, sub))
}
/// The child side of [`spawn_command`]: `sock` becomes stdin and stdout,
/// and `stderr`, unless -1, stderr. Never returns.
unsafe fn exec_child(sock: RawFd, stderr: RawFd, plan: &ExecPlan, envp: *const *const c_char) -> ! {
    // SAFETY: in the forked child, only async-signal-safe calls on fds and memory
    // the parent prepared before fork (our caller's contract).
    unsafe {
        // Move both above stdio first (either may be 0-2 if the caller had
        // closed those), so each dup2 below makes a new fd without
        // close-on-exec and none overwrites the other.
        let fd = libc::fcntl(sock, libc::F_DUPFD, 3);
        let err = if stderr >= 0 {
            libc::fcntl(stderr, libc::F_DUPFD, 3)
        } else {
            -1
        };
        if fd < 0 || (stderr >= 0 && err < 0) {
            libc::_exit(126);
        }
        if libc::dup2(fd, 0) < 0 || libc::dup2(fd, 1) < 0 || (err >= 0 && libc::dup2(err, 2) < 0) {
            libc::_exit(126);
        }
        libc::close(fd);
        if err >= 0 {
            libc::close(err);
        }
        exec_plan(plan, envp)
    }
}

/// Runs the plan's program with environment `envp`, in a forked child.
/// Never returns: if every exec fails, prints why and exits 127.
unsafe fn exec_plan(plan: &ExecPlan, envp: *const *const c_char) -> ! {
    // SAFETY: in the forked child, only async-signal-safe calls on fds and memory
    // the parent prepared before fork (our caller's contract).
    unsafe {
        // Give the server default signal handling whatever the parent set.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);

        let mut errno = libc::ENOENT;
        for path in &plan.paths {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), envp);
            let e = *libc::__errno_location();
            // Keep the most telling error, as execvp does.
            if e != libc::ENOENT && e != libc::ENOTDIR {
                errno = e;
            }
        }
        let msg = match errno {
            libc::ENOENT => &plan.enoent_msg,
            libc::EACCES => &plan.eacces_msg,
            _ => &plan.other_msg,
        };
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127);
    }
}
