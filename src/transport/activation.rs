//! systemd socket activation: the server is our child, handed a listening
//! Unix socket as fd 3 with `LISTEN_PID`, `LISTEN_FDS` (and, when named,
//! `LISTEN_FDNAMES`) set, and we connect to that socket.

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};

use super::addr::SockAddr;
use super::{exec_plan, ExecPlan, Subprocess};
use crate::{Error, Result};

/// The fd the systemd protocol passes the first socket on.
const FIRST_FD: RawFd = 3;
const PID_PREFIX: &[u8] = b"LISTEN_PID=";

/// The private directory holding the listening socket; removed on drop.
#[derive(Debug)]
pub(crate) struct SocketDir {
    dir: PathBuf,
    sock: PathBuf,
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Makes a fresh private directory under `/tmp` (short, so the socket
/// path fits in `sun_path`).
fn make_temp_dir() -> io::Result<PathBuf> {
    Ok(nix::unistd::mkdtemp("/tmp/libnbdXXXXXX")?)
}

/// The child's environment: ours without any `LISTEN_*` variables, plus
/// the three the protocol needs. The first entry is `LISTEN_PID=` with
/// room for the digits, which the child writes after fork.
struct ActivationEnv {
    _vars: Vec<Vec<u8>>,
    pid_var: Vec<u8>,
    ptrs: Vec<*const c_char>,
}

impl ActivationEnv {
    fn new(socket_name: &str) -> ActivationEnv {
        let mut pid_var = PID_PREFIX.to_vec();
        // Enough room for any pid's digits and the NUL.
        pid_var.resize(PID_PREFIX.len() + 24, 0);
        let mut vars: Vec<Vec<u8>> = vec![b"LISTEN_FDS=1\0".to_vec()];
        if !socket_name.is_empty() {
            let mut v = b"LISTEN_FDNAMES=".to_vec();
            v.extend_from_slice(socket_name.as_bytes());
            v.push(0);
            vars.push(v);
        }
        for (name, value) in std::env::vars_os() {
            let name = name.as_bytes();
            if matches!(name, b"LISTEN_PID" | b"LISTEN_FDS" | b"LISTEN_FDNAMES") {
                continue;
            }
            let mut entry = name.to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            entry.push(0);
            vars.push(entry);
        }
        let mut ptrs: Vec<*const c_char> = Vec::with_capacity(vars.len() + 2);
        ptrs.push(pid_var.as_ptr() as *const c_char);
        ptrs.extend(vars.iter().map(|v| v.as_ptr() as *const c_char));
        ptrs.push(std::ptr::null());
        ActivationEnv {
            _vars: vars,
            pid_var,
            ptrs,
        }
    }
}

/// Creates the listening socket, starts `argv` with it as fd 3, and
/// returns the child, the directory to clean up, and the address to
/// connect to.
pub(crate) fn spawn_socket_activation(
    argv: &[CString],
    socket_name: &str,
) -> Result<(Subprocess, SocketDir, SockAddr)> {
    if argv.is_empty() {
        return Err(Error::new(libc::EINVAL, "argv is empty"));
    }
    let dir = make_temp_dir().map_err(|e| Error::io("mkdtemp", &e))?;
    let sock_path = dir.join("sock");
    let guard = SocketDir {
        dir,
        sock: sock_path.clone(),
    };
    let path_bytes = sock_path.as_os_str().as_bytes();
    let addr = SockAddr::unix(path_bytes).map_err(|e| Error::io("socket path", &e))?;

    let listener = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socket", &e.into()))?;
    if let Err(err) = addr.bind(listener.as_raw_fd()) {
        return Err(Error::io(
            &format!("bind: {}", String::from_utf8_lossy(path_bytes)),
            &err,
        ));
    }
    let backlog = socket::Backlog::new(libc::SOMAXCONN).unwrap_or(socket::Backlog::MAXCONN);
    socket::listen(&listener, backlog).map_err(|e| Error::io("listen", &e.into()))?;

    let plan = ExecPlan::new(argv);
    let mut env = ActivationEnv::new(socket_name);
    let pid_digits = env.pid_var[PID_PREFIX.len()..].as_mut_ptr();
    let pid_room = env.pid_var.len() - PID_PREFIX.len();
    let envp = env.ptrs.as_ptr();

    // SAFETY: after fork the child (pid 0) only makes async-signal-safe
    // calls on memory prepared above (its own copy: pid_digits has
    // pid_room bytes, envp and the plan are NULL-terminated arrays of
    // NUL-terminated strings), and never returns.
    let pid = unsafe {
        let pid = libc::fork();
        if pid == 0 {
            activation_child(listener.as_raw_fd(), pid_digits, pid_room, envp, &plan)
        }
        pid
    };
    if pid < 0 {
        return Err(Error::io("fork", &io::Error::last_os_error()));
    }
    drop(listener);
    drop(env);
    let child = Subprocess::new(pid, argv[0].as_bytes(), true);
    Ok((child, guard, addr))
}

/// Writes `n` in decimal, NUL-terminated, into `buf`, without allocating
/// (for the child after fork); false if it does not fit.
fn write_decimal(mut n: u64, buf: &mut [u8]) -> bool {
    let mut digits = [0u8; 20];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let Some(out) = buf.get_mut(..=count) else {
        return false;
    };
    for (o, d) in out.iter_mut().zip(digits[..count].iter().rev()) {
        *o = *d;
    }
    out[count] = 0;
    true
}

/// The child side of [`spawn_socket_activation`]. Never returns.
unsafe fn activation_child(
    listener: RawFd,
    pid_digits: *mut u8,
    pid_room: usize,
    envp: *const *const c_char,
    plan: &ExecPlan,
) -> ! {
    // SAFETY: in the forked child, only async-signal-safe calls on fds and memory
    // the parent prepared before fork (our caller's contract).
    unsafe {
        if listener == FIRST_FD {
            // Already in place: only close-on-exec must go.
            let flags = libc::fcntl(listener, libc::F_GETFD);
            if flags < 0 || libc::fcntl(listener, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                libc::_exit(126);
            }
        } else {
            // dup2 leaves the new fd without close-on-exec.
            if libc::dup2(listener, FIRST_FD) < 0 {
                libc::_exit(126);
            }
            libc::close(listener);
        }
        let digits = std::slice::from_raw_parts_mut(pid_digits, pid_room);
        if !write_decimal(libc::getpid() as u64, digits) {
            libc::_exit(126);
        }
        exec_plan(plan, envp)
    }
}

#[cfg(test)]
mod tests {
    use super::write_decimal;

    #[test]
    fn decimal_digits_fit_or_fail() {
        let mut buf = [b'x'; 8];
        assert!(write_decimal(4_194_304, &mut buf));
        assert_eq!(&buf, b"4194304\0");
        assert!(write_decimal(0, &mut buf));
        assert_eq!(&buf[..2], b"0\0");
        assert!(!write_decimal(12_345_678, &mut buf));
    }
}
