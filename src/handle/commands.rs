//! Synchronous commands: each issues one request and waits for its reply.

use super::{run_until, Handle, CONNECTED};
use crate::capi::types::{
    LIBNBD_CMD_FLAG_DF, LIBNBD_CMD_FLAG_FAST_ZERO, LIBNBD_CMD_FLAG_FUA, LIBNBD_CMD_FLAG_MASK,
    LIBNBD_CMD_FLAG_NO_HOLE, LIBNBD_SHUTDOWN_ABANDON_PENDING, LIBNBD_SHUTDOWN_MASK,
    LIBNBD_STRICT_ALIGN, LIBNBD_STRICT_BOUNDS, LIBNBD_STRICT_COMMANDS, LIBNBD_STRICT_FLAGS,
    LIBNBD_STRICT_ZERO_SIZE,
};
use crate::conn::{CommandId, Conn, MAX_REQUEST_SIZE};
use crate::proto;
use crate::{Error, Result};

impl Handle {
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
