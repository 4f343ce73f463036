//! The safe Rust API: [`Handle`].
//!
//! Every call locks the handle, checks the handle's state as libnbd
//! documents it, and for commands issues the request and drives the state
//! machine until it completes. Errors carry libnbd's errno and message.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::capi::types::{
    LIBNBD_CMD_FLAG_DF, LIBNBD_CMD_FLAG_FAST_ZERO, LIBNBD_CMD_FLAG_FUA, LIBNBD_CMD_FLAG_MASK,
    LIBNBD_CMD_FLAG_NO_HOLE, LIBNBD_SHUTDOWN_ABANDON_PENDING, LIBNBD_SHUTDOWN_MASK,
    LIBNBD_STRICT_ALIGN, LIBNBD_STRICT_BOUNDS, LIBNBD_STRICT_COMMANDS, LIBNBD_STRICT_FLAGS,
    LIBNBD_STRICT_ZERO_SIZE,
};
use crate::conn::{CommandId, Conn, Perm, DIRECTION_READ, DIRECTION_WRITE, MAX_REQUEST_SIZE};
use crate::proto;
use crate::transport;
use crate::{Error, Result};

/// The version of the libnbd API this library implements.
pub const VERSION: &str = "1.22.0";
/// The name `nbd_get_package_name` reports.
pub const PACKAGE_NAME: &str = "rust-libnbd";

const CONNECTED: &[Perm] = &[Perm::Connected];
const INFO_STATES: &[Perm] = &[Perm::Negotiating, Perm::Connected, Perm::Closed];

/// An NBD client handle: one connection to one export.
///
/// A handle may be shared between threads; calls on it are serialized.
pub struct Handle {
    conn: Mutex<Conn>,
    name: Mutex<String>,
    debug: AtomicBool,
    private_data: AtomicUsize,
}

static HANDLE_NUMBER: AtomicU64 = AtomicU64::new(1);

impl Handle {
    /// Creates a handle, not yet connected. `LIBNBD_DEBUG=1` in the
    /// environment turns debugging on.
    pub fn new() -> Result<Handle> {
        let n = HANDLE_NUMBER.fetch_add(1, Ordering::Relaxed);
        let debug = std::env::var_os("LIBNBD_DEBUG").is_some_and(|v| v == "1");
        Ok(Handle {
            conn: Mutex::new(Conn::new()),
            name: Mutex::new(format!("nbd{n}")),
            debug: AtomicBool::new(debug),
            private_data: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- settings -----------------------------------------------------------

    /// Sets the handle's name, used in debug messages.
    pub fn set_handle_name(&self, name: &str) -> Result<()> {
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name.to_string();
        Ok(())
    }

    /// The handle's name (`nbd1`, `nbd2`, ... unless set).
    pub fn handle_name(&self) -> String {
        self.name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Turns debug messages on or off.
    pub fn set_debug(&self, debug: bool) -> Result<()> {
        self.debug.store(debug, Ordering::Relaxed);
        Ok(())
    }

    /// Whether debug messages are on.
    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// Stores a value for the caller; returns the previous one.
    pub fn set_private_data(&self, data: usize) -> usize {
        self.private_data.swap(data, Ordering::Relaxed)
    }

    /// The value stored with [`Handle::set_private_data`] (0 by default).
    pub fn private_data(&self) -> usize {
        self.private_data.load(Ordering::Relaxed)
    }

    /// Sets the export name to ask the server for (default `""`).
    pub fn set_export_name(&self, name: &[u8]) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created, Perm::Negotiating])?;
        if name.len() > proto::MAX_STRING_LEN {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                "export name too long for NBD protocol",
            ));
        }
        c.settings.export_name = name.to_vec();
        Ok(())
    }

    /// The export name that will be (or was) asked for.
    pub fn export_name(&self) -> Result<Vec<u8>> {
        Ok(self.lock().settings.export_name.clone())
    }

    /// Whether to ask the server for structured replies (default true).
    pub fn set_request_structured_replies(&self, request: bool) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        c.settings.request_structured_replies = request;
        Ok(())
    }

    /// Whether structured replies will be asked for.
    pub fn request_structured_replies(&self) -> bool {
        self.lock().settings.request_structured_replies
    }

    /// Whether the server agreed to structured replies.
    pub fn structured_replies_negotiated(&self) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.negotiated.structured_replies)
    }

    /// The handshake style used: `"newstyle-fixed"`, `"newstyle"` or `"oldstyle"`.
    pub fn protocol(&self) -> Result<&'static str> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.negotiated.protocol)
    }

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

    // ---- state ----------------------------------------------------------------

    /// The handle is newly created, not yet connecting.
    pub fn aio_is_created(&self) -> bool {
        self.lock().is_created()
    }
    /// The handle is connecting or doing the handshake.
    pub fn aio_is_connecting(&self) -> bool {
        self.lock().is_connecting()
    }
    /// The handle is waiting for the caller to negotiate options.
    pub fn aio_is_negotiating(&self) -> bool {
        self.lock().is_negotiating()
    }
    /// The handle is connected and idle, ready for commands.
    pub fn aio_is_ready(&self) -> bool {
        self.lock().is_ready()
    }
    /// The handle is in the middle of sending a request or receiving a reply.
    pub fn aio_is_processing(&self) -> bool {
        self.lock().is_processing()
    }
    /// The connection failed; the handle can only be closed.
    pub fn aio_is_dead(&self) -> bool {
        self.lock().is_dead()
    }
    /// The connection was shut down.
    pub fn aio_is_closed(&self) -> bool {
        self.lock().is_closed()
    }

    /// The state's name and description, e.g. `"READY: Connection is ready ..."`.
    pub fn connection_state(&self) -> &'static str {
        self.lock().state_description()
    }

    /// As [`Handle::connection_state`], NUL-terminated (for the C API).
    pub(crate) fn connection_state_nul(&self) -> &'static str {
        self.lock().state_description_nul()
    }

    // ---- export information -------------------------------------------------------

    /// The export's size in bytes.
    pub fn size(&self) -> Result<u64> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.negotiated.export.size)
    }

    fn export_flag(&self, flag: u16) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.negotiated.export.flags & flag != 0)
    }

    /// The export is read-only.
    pub fn is_read_only(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_READ_ONLY)
    }
    /// The server supports flush.
    pub fn can_flush(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_FLUSH)
    }
    /// The server supports the FUA flag.
    pub fn can_fua(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_FUA)
    }
    /// The server supports trim.
    pub fn can_trim(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_TRIM)
    }
    /// The server supports write-zeroes.
    pub fn can_zero(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_WRITE_ZEROES)
    }
    /// The server supports cache (prefetch).
    pub fn can_cache(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_CACHE)
    }
    /// Several connections to this export see consistent data.
    pub fn can_multi_conn(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_CAN_MULTI_CONN)
    }

    // ---- commands -------------------------------------------------------------

    /// Reads `buf.len()` bytes at `offset`. Flags: `LIBNBD_CMD_FLAG_DF`.
    pub fn pread(&self, buf: &mut [u8], offset: u64, flags: u32) -> Result<()> {
        let mut c = self.lock();
        if c.settings.pread_initialize {
            buf.fill(0);
        }
        c.check_state(CONNECTED)?;
        check_flags(&c, flags, LIBNBD_CMD_FLAG_DF)?;
        if flags & LIBNBD_CMD_FLAG_DF != 0 && strict(&c, LIBNBD_STRICT_COMMANDS) {
            let can_df = c.negotiated.export.flags & proto::NBD_FLAG_SEND_DF != 0;
            if !can_df || !c.negotiated.structured_replies {
                return Err(Error::new(
                    libc::EINVAL,
                    "server does not support the DF flag",
                ));
            }
        }
        let len = buf.len() as u64;
        run_command(
            &mut c,
            proto::NBD_CMD_READ,
            flags,
            offset,
            len,
            buf.as_mut_ptr(),
        )
    }

    /// Writes `buf` at `offset`. Flags: `LIBNBD_CMD_FLAG_FUA`.
    pub fn pwrite(&self, buf: &[u8], offset: u64, flags: u32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        check_flags(&c, flags, LIBNBD_CMD_FLAG_FUA)?;
        if strict(&c, LIBNBD_STRICT_COMMANDS) {
            check_writable(&c)?;
            check_fua(&c, flags)?;
        }
        let len = buf.len() as u64;
        // The machine only reads through this pointer for a write.
        run_command(
            &mut c,
            proto::NBD_CMD_WRITE,
            flags,
            offset,
            len,
            buf.as_ptr() as *mut u8,
        )
    }

    /// Asks the server to make written data durable.
    pub fn flush(&self, flags: u32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        check_flags(&c, flags, 0)?;
        if strict(&c, LIBNBD_STRICT_COMMANDS)
            && c.negotiated.export.flags & proto::NBD_FLAG_SEND_FLUSH == 0
        {
            return Err(Error::new(
                libc::EINVAL,
                "server does not support flush operations",
            ));
        }
        run_command(
            &mut c,
            proto::NBD_CMD_FLUSH,
            flags,
            0,
            0,
            std::ptr::null_mut(),
        )
    }

    /// Tells the server `count` bytes at `offset` are no longer needed.
    /// Flags: `LIBNBD_CMD_FLAG_FUA`.
    pub fn trim(&self, count: u64, offset: u64, flags: u32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        check_flags(&c, flags, LIBNBD_CMD_FLAG_FUA)?;
        if strict(&c, LIBNBD_STRICT_COMMANDS) {
            if c.negotiated.export.flags & proto::NBD_FLAG_SEND_TRIM == 0 {
                return Err(Error::new(
                    libc::EINVAL,
                    "server does not support trim operations",
                ));
            }
            check_writable(&c)?;
            check_fua(&c, flags)?;
        }
        run_command(
            &mut c,
            proto::NBD_CMD_TRIM,
            flags,
            offset,
            count,
            std::ptr::null_mut(),
        )
    }

    /// Asks the server to prefetch `count` bytes at `offset`.
    pub fn cache(&self, count: u64, offset: u64, flags: u32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        check_flags(&c, flags, 0)?;
        if strict(&c, LIBNBD_STRICT_COMMANDS)
            && c.negotiated.export.flags & proto::NBD_FLAG_SEND_CACHE == 0
        {
            return Err(Error::new(
                libc::EINVAL,
                "server does not support cache operations",
            ));
        }
        run_command(
            &mut c,
            proto::NBD_CMD_CACHE,
            flags,
            offset,
            count,
            std::ptr::null_mut(),
        )
    }

    /// Writes `count` zero bytes at `offset`. Flags: `LIBNBD_CMD_FLAG_FUA`,
    /// `LIBNBD_CMD_FLAG_NO_HOLE`, `LIBNBD_CMD_FLAG_FAST_ZERO`.
    pub fn zero(&self, count: u64, offset: u64, flags: u32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        check_flags(
            &c,
            flags,
            LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_NO_HOLE | LIBNBD_CMD_FLAG_FAST_ZERO,
        )?;
        if strict(&c, LIBNBD_STRICT_COMMANDS) {
            if c.negotiated.export.flags & proto::NBD_FLAG_SEND_WRITE_ZEROES == 0 {
                return Err(Error::new(
                    libc::EINVAL,
                    "server does not support zero operations",
                ));
            }
            check_writable(&c)?;
            check_fua(&c, flags)?;
            if flags & LIBNBD_CMD_FLAG_FAST_ZERO != 0
                && c.negotiated.export.flags & proto::NBD_FLAG_SEND_FAST_ZERO == 0
            {
                return Err(Error::new(
                    libc::EINVAL,
                    "server does not support the fast zero flag",
                ));
            }
        }
        run_command(
            &mut c,
            proto::NBD_CMD_WRITE_ZEROES,
            flags,
            offset,
            count,
            std::ptr::null_mut(),
        )
    }

    /// Disconnects cleanly: sends `NBD_CMD_DISC` after the commands already
    /// issued (unless `LIBNBD_SHUTDOWN_ABANDON_PENDING`), and waits until the
    /// server has closed the connection.
    pub fn shutdown(&self, flags: u32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        if flags & !LIBNBD_SHUTDOWN_MASK != 0 {
            return Err(invalid_flags("flags", flags));
        }
        let _abandon = flags & LIBNBD_SHUTDOWN_ABANDON_PENDING != 0;
        if !c.disconnect_requested {
            c.issue(proto::NBD_CMD_DISC, 0, 0, 0, std::ptr::null_mut())?;
        }
        run_until(&mut c, |c| c.is_closed() || c.is_dead())
    }

    /// Closes the connection and reaps the subprocess, if any. Dropping the
    /// handle does the same.
    pub fn close(self) {}
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.lock().close();
    }
}

fn strict(c: &Conn, bit: u32) -> bool {
    c.settings.strict & bit != 0
}

fn invalid_flags(name: &str, flags: u32) -> Error {
    Error::new(
        libc::EINVAL,
        format!("{name}: invalid value for flag: 0x{flags:x}"),
    )
}

/// libnbd's flag check: bits outside `allowed` are refused in strict-flags
/// mode, and bits that cannot go on the wire are always refused.
fn check_flags(c: &Conn, flags: u32, allowed: u32) -> Result<()> {
    if flags & !allowed != 0 && (strict(c, LIBNBD_STRICT_FLAGS) || flags > u16::MAX as u32) {
        return Err(invalid_flags("flags", flags));
    }
    debug_assert!(allowed & !LIBNBD_CMD_FLAG_MASK == 0);
    Ok(())
}

fn check_writable(c: &Conn) -> Result<()> {
    if c.negotiated.export.flags & proto::NBD_FLAG_READ_ONLY != 0 {
        return Err(Error::new(
            libc::EPERM,
            "server does not support write operations",
        ));
    }
    Ok(())
}

fn check_fua(c: &Conn, flags: u32) -> Result<()> {
    if flags & LIBNBD_CMD_FLAG_FUA != 0 && c.negotiated.export.flags & proto::NBD_FLAG_SEND_FUA == 0
    {
        return Err(Error::new(
            libc::EINVAL,
            "server does not support the FUA flag",
        ));
    }
    Ok(())
}

/// The checks every command gets before it is queued (libnbd's order).
fn check_command(c: &Conn, kind: u16, offset: u64, count: u64) -> Result<()> {
    if c.disconnect_requested {
        return Err(Error::new(
            libc::EINVAL,
            "cannot request more commands after NBD_CMD_DISC",
        ));
    }
    let ranged = kind != proto::NBD_CMD_FLUSH;
    if ranged {
        if strict(c, LIBNBD_STRICT_ZERO_SIZE) && count == 0 {
            return Err(Error::new(libc::EINVAL, "count cannot be 0"));
        }
        let size = c.negotiated.export.size;
        if strict(c, LIBNBD_STRICT_BOUNDS) && (offset > size || count > size - offset) {
            return Err(Error::new(libc::EINVAL, "request out of bounds"));
        }
        let min = c.negotiated.block_minimum as u64;
        if min > 1 && strict(c, LIBNBD_STRICT_ALIGN) && (offset | count) & (min - 1) != 0 {
            return Err(Error::new(libc::EINVAL, "request is unaligned"));
        }
    }
    match kind {
        proto::NBD_CMD_READ | proto::NBD_CMD_WRITE if count > MAX_REQUEST_SIZE => Err(Error::new(
            libc::ERANGE,
            format!("request too large: maximum request size is {MAX_REQUEST_SIZE}"),
        )),
        _ if count > u32::MAX as u64 => Err(Error::new(
            libc::ERANGE,
            format!("request too large: maximum request size is {}", u32::MAX),
        )),
        _ => Ok(()),
    }
}

fn command_name(kind: u16) -> &'static str {
    match kind {
        proto::NBD_CMD_READ => "read",
        proto::NBD_CMD_WRITE => "write",
        proto::NBD_CMD_DISC => "disconnect",
        proto::NBD_CMD_FLUSH => "flush",
        proto::NBD_CMD_TRIM => "trim",
        proto::NBD_CMD_CACHE => "cache",
        proto::NBD_CMD_WRITE_ZEROES => "write-zeroes",
        proto::NBD_CMD_BLOCK_STATUS => "block-status",
        _ => "UNKNOWN!",
    }
}

/// Issues one command and drives the machine until it completes.
fn run_command(
    c: &mut Conn,
    kind: u16,
    flags: u32,
    offset: u64,
    count: u64,
    buf: *mut u8,
) -> Result<()> {
    check_command(c, kind, offset, count)?;
    let id = c.issue(kind, flags as u16, offset, count, buf)?;
    wait_for_command(c, id, kind)
}

/// Drives the machine until command `id` is done, then retires it.
fn wait_for_command(c: &mut Conn, id: CommandId, kind: u16) -> Result<()> {
    let driven = run_until(c, |c| c.command_result(id).is_some());
    let result = c.command_result(id);
    c.retire(id);
    driven?;
    match result {
        Some(0) => Ok(()),
        Some(errno) => Err(Error::new(
            errno,
            format!("{}: command failed", command_name(kind)),
        )),
        None => Err(Error::new(libc::EIO, "command did not complete")),
    }
}

/// Alternates `progress` and `poll` until `done` holds.
fn run_until(c: &mut Conn, done: impl Fn(&Conn) -> bool) -> Result<()> {
    loop {
        c.progress()?;
        if done(c) {
            return Ok(());
        }
        poll_once(c)?;
    }
}

/// Blocks until the connection's fd is ready in the direction the machine wants.
fn poll_once(c: &Conn) -> Result<()> {
    let dir = c.direction();
    let Some(fd) = c.fd() else {
        return Err(Error::new(
            libc::EINVAL,
            format!("nothing to poll for in state {}", c.state_name()),
        ));
    };
    let mut events = 0;
    if dir & DIRECTION_READ != 0 {
        events |= libc::POLLIN;
    }
    if dir & DIRECTION_WRITE != 0 {
        events |= libc::POLLOUT;
    }
    if events == 0 {
        return Err(Error::new(
            libc::EINVAL,
            format!("nothing to poll for in state {}", c.state_name()),
        ));
    }
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: pfd is one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, -1) };
        if rc >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("poll", &err));
        }
    }
}
