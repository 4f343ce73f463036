//! Connecting calls.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use super::{run_until, Handle, CONNECTED};
use crate::conn::Perm;
use crate::transport;
use crate::{Error, Result};

impl Handle {
    // ---- connecting ---------------------------------------------------------

    /// Runs `argv` as a subprocess serving NBD on its stdin/stdout, and
    /// connects to it (through the handshake, to transmission).
    pub fn connect_command<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        if argv.is_empty() {
            return Err(Error::new(
                libc::EINVAL,
                "argv parameter must have at least 1 element",
            ));
        }
        let args = argv
            .iter()
            .map(|a| CString::new(a.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| Error::new(libc::EINVAL, "argv contains a NUL byte"))?;
        let (socket, child) =
            transport::spawn_command(&args).map_err(|e| Error::io("connect_command", &e))?;
        c.subprocess = Some(child);
        c.start_handshake(Box::new(socket));
        run_until(&mut c, |c| !c.is_connecting())?;
        c.check_state(CONNECTED)?;
        Ok(())
    }

    /// Connects over `sock`, a socket already connected to a server; the
    /// handle owns it from now on.
    pub fn connect_socket(&self, sock: OwnedFd) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        let socket = transport::Socket::new(sock).map_err(|e| Error::io("fcntl", &e))?;
        c.start_handshake(Box::new(socket));
        run_until(&mut c, |c| !c.is_connecting())?;
        c.check_state(CONNECTED)?;
        Ok(())
    }

    /// The process id of the server started by [`Handle::connect_command`].
    pub fn subprocess_pid(&self) -> Result<i32> {
        let c = self.lock();
        match &c.subprocess {
            Some(child) => Ok(child.pid()),
            None => Err(Error::new(libc::ESRCH, "no subprocess exists")),
        }
    }

    /// Sends `signum` (SIGTERM when 0) to the server subprocess.
    pub fn kill_subprocess(&self, signum: i32) -> Result<()> {
        let c = self.lock();
        let Some(child) = &c.subprocess else {
            return Err(Error::new(libc::ESRCH, "no subprocess exists"));
        };
        if signum < 0 {
            return Err(Error::new(
                libc::EINVAL,
                format!("invalid signal number: {signum}"),
            ));
        }
        let signum = if signum == 0 { libc::SIGTERM } else { signum };
        child.kill(signum).map_err(|e| Error::io("kill", &e))
    }
}
