//! Commands. Each has one checked start function; the synchronous call
//! starts it and waits, the `aio_` call starts it and returns its cookie.

use super::{run_until, Handle, CONNECTED};
use crate::callback::{Chunk, Completion, Extent, Extent64Cb};
use crate::conn::{
    invalid_flags, CommandCallbacks, CommandId, Conn, ExtentCallback, Perm, UserOption,
    MAX_REQUEST_SIZE,
};
use crate::flags::raw::{
    LIBNBD_CMD_FLAG_DF, LIBNBD_CMD_FLAG_FAST_ZERO, LIBNBD_CMD_FLAG_FUA, LIBNBD_CMD_FLAG_NO_HOLE,
    LIBNBD_SHUTDOWN_ABANDON_PENDING, LIBNBD_SHUTDOWN_MASK, LIBNBD_STRICT_ALIGN,
    LIBNBD_STRICT_BOUNDS, LIBNBD_STRICT_COMMANDS, LIBNBD_STRICT_FLAGS, LIBNBD_STRICT_ZERO_SIZE,
};
use crate::flags::raw::{
    LIBNBD_CMD_FLAG_PAYLOAD_LEN, LIBNBD_CMD_FLAG_REQ_ONE, LIBNBD_STRICT_AUTO_FLAG,
    LIBNBD_STRICT_PAYLOAD,
};
use crate::proto;
use crate::{CmdFlag, Error, Result, Shutdown};
use std::sync::MutexGuard;

impl Handle {
    /// Reads `buf.len()` bytes at `offset`. No flags are defined (0).
    ///
    /// libnbd: `nbd_pread`.
    pub fn pread(&self, buf: &mut [u8], offset: u64, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        // SAFETY: buf outlives the command: we wait for it below.
        let id = unsafe {
            start_read(
                &mut c,
                buf.as_mut_ptr(),
                buf.len(),
                offset,
                flags.bits(),
                None,
                None,
            )
        }?;
        self.wait_for_command(c, id)
    }

    /// Reads `buf.len()` bytes at `offset`, calling `chunk` for each piece
    /// of the server's reply. Flags: `LIBNBD_CMD_FLAG_DF`.
    ///
    /// libnbd: `nbd_pread_structured`.
    pub fn pread_structured(
        &self,
        buf: &mut [u8],
        offset: u64,
        chunk: Chunk,
        flags: CmdFlag,
    ) -> Result<()> {
        let mut c = self.lock();
        // SAFETY: as in pread.
        let id = unsafe {
            start_read(
                &mut c,
                buf.as_mut_ptr(),
                buf.len(),
                offset,
                flags.bits(),
                Some(chunk),
                None,
            )
        }?;
        self.wait_for_command(c, id)
    }

    /// Starts reading `count` bytes at `offset` into `buf`; returns the cookie.
    ///
    /// # Safety
    /// `buf` must stay valid for writes of `count` bytes until the command
    /// is retired (completion callback returning 1, or
    /// [`Handle::aio_command_completed`]), or the handle is closed.
    ///
    /// libnbd: `nbd_aio_pread`.
    pub unsafe fn aio_pread(
        &self,
        buf: *mut u8,
        count: usize,
        offset: u64,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        // SAFETY: the caller keeps buf valid until the command retires.
        let id = unsafe { start_read(&mut c, buf, count, offset, flags.bits(), None, completion) }?;
        Ok(c.cookie(id))
    }

    /// As [`Handle::aio_pread`], calling `chunk` for each piece of the reply.
    ///
    /// # Safety
    /// As for [`Handle::aio_pread`].
    ///
    /// libnbd: `nbd_aio_pread_structured`.
    pub unsafe fn aio_pread_structured(
        &self,
        buf: *mut u8,
        count: usize,
        offset: u64,
        chunk: Chunk,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        // SAFETY: the caller keeps buf valid until the command retires.
        let id = unsafe {
            start_read(
                &mut c,
                buf,
                count,
                offset,
                flags.bits(),
                Some(chunk),
                completion,
            )
        }?;
        Ok(c.cookie(id))
    }

    /// Writes `buf` at `offset`. Flags: `LIBNBD_CMD_FLAG_FUA`,
    /// `LIBNBD_CMD_FLAG_PAYLOAD_LEN` (under `LIBNBD_STRICT_AUTO_FLAG` it is
    /// sent exactly when extended headers are in use, whatever is passed).
    ///
    /// libnbd: `nbd_pwrite`.
    pub fn pwrite(&self, buf: &[u8], offset: u64, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        let len = buf.len() as u64;
        // SAFETY: buf outlives the command: we wait for it below.
        let id = unsafe {
            start(
                &mut c,
                &WRITE,
                len,
                offset,
                flags.bits(),
                buf.as_ptr(),
                None,
            )
        }?;
        self.wait_for_command(c, id)
    }

    /// Starts writing `count` bytes from `buf` at `offset`; returns the cookie.
    ///
    /// # Safety
    /// `buf` must stay valid for reads of `count` bytes until the command
    /// is retired or the handle is closed.
    ///
    /// libnbd: `nbd_aio_pwrite`.
    pub unsafe fn aio_pwrite(
        &self,
        buf: *const u8,
        count: usize,
        offset: u64,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        // SAFETY: the caller keeps buf valid until the command retires.
        let id = unsafe {
            start(
                &mut c,
                &WRITE,
                count as u64,
                offset,
                flags.bits(),
                buf,
                completion,
            )
        }?;
        Ok(c.cookie(id))
    }

    /// Asks the server to make written data durable.
    ///
    /// libnbd: `nbd_flush`.
    pub fn flush(&self, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &FLUSH, 0, 0, flags.bits(), None)?;
        self.wait_for_command(c, id)
    }

    /// Starts a flush; returns the cookie.
    ///
    /// libnbd: `nbd_aio_flush`.
    pub fn aio_flush(&self, completion: Option<Completion>, flags: CmdFlag) -> Result<u64> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &FLUSH, 0, 0, flags.bits(), completion)?;
        Ok(c.cookie(id))
    }

    /// Tells the server `count` bytes at `offset` are no longer needed.
    /// Flags: `LIBNBD_CMD_FLAG_FUA`.
    ///
    /// libnbd: `nbd_trim`.
    pub fn trim(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &TRIM, count, offset, flags.bits(), None)?;
        self.wait_for_command(c, id)
    }

    /// Starts a trim; returns the cookie.
    ///
    /// libnbd: `nbd_aio_trim`.
    pub fn aio_trim(
        &self,
        count: u64,
        offset: u64,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &TRIM, count, offset, flags.bits(), completion)?;
        Ok(c.cookie(id))
    }

    /// Asks the server to prefetch `count` bytes at `offset`.
    ///
    /// libnbd: `nbd_cache`.
    pub fn cache(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &CACHE, count, offset, flags.bits(), None)?;
        self.wait_for_command(c, id)
    }

    /// Starts a cache (prefetch) request; returns the cookie.
    ///
    /// libnbd: `nbd_aio_cache`.
    pub fn aio_cache(
        &self,
        count: u64,
        offset: u64,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &CACHE, count, offset, flags.bits(), completion)?;
        Ok(c.cookie(id))
    }

    /// Writes `count` zero bytes at `offset`. Flags: `LIBNBD_CMD_FLAG_FUA`,
    /// `LIBNBD_CMD_FLAG_NO_HOLE`, `LIBNBD_CMD_FLAG_FAST_ZERO`.
    ///
    /// libnbd: `nbd_zero`.
    pub fn zero(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &ZERO, count, offset, flags.bits(), None)?;
        self.wait_for_command(c, id)
    }

    /// Starts a write-zeroes request; returns the cookie.
    ///
    /// libnbd: `nbd_aio_zero`.
    pub fn aio_zero(
        &self,
        count: u64,
        offset: u64,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        let id = start_no_data(&mut c, &ZERO, count, offset, flags.bits(), completion)?;
        Ok(c.cookie(id))
    }

    /// Asks for the status (allocation, dirtiness...) of `count` bytes at
    /// `offset` in each negotiated meta context; `extent` gets each
    /// context's extents as (length, flags) pairs.
    /// Flags: `LIBNBD_CMD_FLAG_REQ_ONE`.
    ///
    /// libnbd: `nbd_block_status`.
    pub fn block_status(
        &self,
        count: u64,
        offset: u64,
        extent: Extent,
        flags: CmdFlag,
    ) -> Result<()> {
        let mut c = self.lock();
        let extent = ExtentCallback::Narrow(extent);
        let id = start_block_status(&mut c, count, offset, flags.bits(), extent, None)?;
        self.wait_for_command(c, id)
    }

    /// As [`Handle::block_status`], with 64-bit extents.
    ///
    /// libnbd: `nbd_block_status_64`.
    pub fn block_status_64(
        &self,
        count: u64,
        offset: u64,
        extent: Extent64Cb,
        flags: CmdFlag,
    ) -> Result<()> {
        let mut c = self.lock();
        let extent = ExtentCallback::Wide(extent);
        let id = start_block_status(&mut c, count, offset, flags.bits(), extent, None)?;
        self.wait_for_command(c, id)
    }

    /// Starts a block status request; returns the cookie.
    ///
    /// libnbd: `nbd_aio_block_status`.
    pub fn aio_block_status(
        &self,
        count: u64,
        offset: u64,
        extent: Extent,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let extent = ExtentCallback::Narrow(extent);
        let mut c = self.lock();
        let id = start_block_status(&mut c, count, offset, flags.bits(), extent, completion)?;
        Ok(c.cookie(id))
    }

    /// Starts a 64-bit block status request; returns the cookie.
    ///
    /// libnbd: `nbd_aio_block_status_64`.
    pub fn aio_block_status_64(
        &self,
        count: u64,
        offset: u64,
        extent: Extent64Cb,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let extent = ExtentCallback::Wide(extent);
        let mut c = self.lock();
        let id = start_block_status(&mut c, count, offset, flags.bits(), extent, completion)?;
        Ok(c.cookie(id))
    }

    /// As [`Handle::block_status_64`], asking only about the negotiated
    /// meta contexts named in `contexts` (needs extended headers and a
    /// server that accepts a block status payload).
    /// Flags: `LIBNBD_CMD_FLAG_REQ_ONE`, `LIBNBD_CMD_FLAG_PAYLOAD_LEN`.
    ///
    /// libnbd: `nbd_block_status_filter`.
    pub fn block_status_filter(
        &self,
        count: u64,
        offset: u64,
        contexts: &[&str],
        extent: Extent64Cb,
        flags: CmdFlag,
    ) -> Result<()> {
        let mut c = self.lock();
        let id =
            start_block_status_filter(&mut c, count, offset, contexts, extent, None, flags.bits())?;
        self.wait_for_command(c, id)
    }

    /// Starts a filtered block status request; returns the cookie.
    ///
    /// libnbd: `nbd_aio_block_status_filter`.
    pub fn aio_block_status_filter(
        &self,
        count: u64,
        offset: u64,
        contexts: &[&str],
        extent: Extent64Cb,
        completion: Option<Completion>,
        flags: CmdFlag,
    ) -> Result<u64> {
        let mut c = self.lock();
        let id = start_block_status_filter(
            &mut c,
            count,
            offset,
            contexts,
            extent,
            completion,
            flags.bits(),
        )?;
        Ok(c.cookie(id))
    }

    /// Queues `NBD_CMD_DISC`; no further commands may be issued. The server
    /// then closes the connection ([`Handle::aio_is_closed`]).
    ///
    /// libnbd: `nbd_aio_disconnect`.
    pub fn aio_disconnect(&self, flags: CmdFlag) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CONNECTED)?;
        check_flags(&c, flags.bits(), 0)?;
        if c.disconnect_requested() {
            return Err(Error::new(
                libc::EINVAL,
                "cannot request more commands after NBD_CMD_DISC",
            ));
        }
        c.issue(
            proto::NBD_CMD_DISC,
            0,
            0,
            0,
            std::ptr::null_mut(),
            Default::default(),
        )?;
        Ok(())
    }

    /// Disconnects cleanly: sends `NBD_CMD_DISC` after the commands already
    /// issued (or, with `LIBNBD_SHUTDOWN_ABANDON_PENDING`, failing those not
    /// yet sent), and waits until the server has closed the connection.
    /// In option mode it ends negotiation with `NBD_OPT_ABORT` instead.
    ///
    /// libnbd: `nbd_shutdown`.
    pub fn shutdown(&self, flags: Shutdown) -> Result<()> {
        let flags = flags.bits();
        let mut c = self.lock();
        let limits = self.limits();
        c.check_state(&[Perm::Negotiating, Perm::Connected])?;
        if flags & !LIBNBD_SHUTDOWN_MASK != 0 {
            return Err(invalid_flags("flags", flags));
        }
        if c.is_negotiating() {
            c.start_user_option(UserOption::Abort, None, None, None)?;
            return run_until(&mut c, limits, |c| c.is_closed() || c.is_dead());
        }
        if flags & LIBNBD_SHUTDOWN_ABANDON_PENDING != 0 {
            c.abandon_unsent();
        }
        if !c.disconnect_requested() {
            c.issue(
                proto::NBD_CMD_DISC,
                0,
                0,
                0,
                std::ptr::null_mut(),
                Default::default(),
            )?;
        }
        run_until(&mut c, limits, |c| c.is_closed() || c.is_dead())
    }
}

/// libnbd's flag check: bits outside `allowed` are refused in strict-flags
/// mode, and bits that cannot go on the wire are always refused.
fn check_flags(c: &Conn, flags: u32, allowed: u32) -> Result<()> {
    if flags & !allowed != 0 && (c.strict(LIBNBD_STRICT_FLAGS) || flags > u16::MAX as u32) {
        return Err(invalid_flags("flags", flags));
    }
    Ok(())
}

fn unsupported(what: &str) -> Error {
    Error::new(
        libc::EINVAL,
        format!("server does not support {what} operations"),
    )
}

fn check_writable(c: &Conn) -> Result<()> {
    if c.can(proto::NBD_FLAG_READ_ONLY) {
        return Err(Error::new(
            libc::EPERM,
            "server does not support write operations",
        ));
    }
    Ok(())
}

fn check_fua(c: &Conn, flags: u32) -> Result<()> {
    if flags & LIBNBD_CMD_FLAG_FUA != 0 && !c.can(proto::NBD_FLAG_SEND_FUA) {
        return Err(Error::new(
            libc::EINVAL,
            "server does not support the FUA flag",
        ));
    }
    Ok(())
}

/// The checks every command gets before it is queued, in libnbd's order.
/// `bounds_errno` is what an out-of-range request reports (ENOSPC for
/// commands that write, EINVAL for the others).
fn check_command(c: &Conn, kind: u16, offset: u64, count: u64, bounds_errno: i32) -> Result<()> {
    if c.disconnect_requested() {
        return Err(Error::new(
            libc::EINVAL,
            "cannot request more commands after NBD_CMD_DISC",
        ));
    }
    if kind != proto::NBD_CMD_FLUSH {
        if c.strict(LIBNBD_STRICT_ZERO_SIZE) && count == 0 {
            return Err(Error::new(libc::EINVAL, "count cannot be 0"));
        }
        let size = c.export_size();
        if c.strict(LIBNBD_STRICT_BOUNDS) && (offset > size || count > size - offset) {
            return Err(Error::new(bounds_errno, "request out of bounds"));
        }
        let min = c.block_minimum() as u64;
        if min > 1 && c.strict(LIBNBD_STRICT_ALIGN) && (offset | count) & (min - 1) != 0 {
            return Err(Error::new(libc::EINVAL, "request is unaligned"));
        }
    }
    if kind == proto::NBD_CMD_WRITE
        && c.strict(LIBNBD_STRICT_PAYLOAD)
        && count > c.payload_maximum()
    {
        return Err(Error::new(
            libc::ERANGE,
            format!(
                "request too large: maximum payload size is {}",
                c.payload_maximum()
            ),
        ));
    }
    match kind {
        proto::NBD_CMD_READ | proto::NBD_CMD_WRITE if count > MAX_REQUEST_SIZE => Err(Error::new(
            libc::ERANGE,
            format!("request too large: maximum request size is {MAX_REQUEST_SIZE}"),
        )),
        // Other commands fit the 32-bit length field, unless the
        // headers are extended.
        _ if count > u32::MAX as u64 && !c.extended_headers() => Err(Error::new(
            libc::ERANGE,
            format!("request too large: maximum request size is {}", u32::MAX),
        )),
        _ => Ok(()),
    }
}

/// Reads up to this size have their buffer zeroed up front (libnbd's way)
/// under `pread_initialize`; larger ones lazily. Measured: eager wins for
/// 64 KiB aio reads, lazy for nbdcopy's 256 KiB reads and for 1 MiB.
pub(crate) const EAGER_ZERO_MAX: usize = 128 * 1024;

/// Checks and issues a read. With `pread_initialize`, a structured read
/// (whose chunk callback may look at the whole buffer), a read of at most
/// [`EAGER_ZERO_MAX`] bytes, or a read that fails its checks has its
/// buffer zeroed at once, as libnbd does; a larger read has what the
/// server leaves unfilled zeroed by the time it finishes, which saves
/// writing every byte twice (for 1 MiB reads, 5-10% of the client's CPU).
///
/// # Safety
/// `buf` must be valid for writes of `count` bytes until the command retires.
unsafe fn start_read(
    c: &mut Conn,
    buf: *mut u8,
    count: usize,
    offset: u64,
    flags: u32,
    chunk: Option<Chunk>,
    completion: Option<Completion>,
) -> Result<CommandId> {
    // A chunk callback may look at the whole buffer: zero it up front then.
    // So too a buffer small enough to stay in cache: the memset is cheap
    // and leaves it warm for the kernel's copy (64 KiB aio reads were
    // about 8% faster with it against nbdkit memory; nbdcopy's 256 KiB
    // reads used about 14% more CPU with it).
    let eager = c.pread_initialize() && (chunk.is_some() || count <= EAGER_ZERO_MAX);
    let zero_unfilled = c.pread_initialize() && !eager;
    // SAFETY: buf is valid for writes of count bytes until the command
    // retires (our contract): we may zero it before and after issuing,
    // and the command may write into it.
    unsafe {
        if eager && count > 0 {
            std::ptr::write_bytes(buf, 0, count);
        }
        let issued = issue_read(
            c,
            buf,
            count,
            offset,
            flags,
            chunk,
            completion,
            zero_unfilled,
        );
        if issued.is_err() && zero_unfilled && count > 0 {
            std::ptr::write_bytes(buf, 0, count);
        }
        issued
    }
}

/// [`start_read`] without the zeroing of a buffer whose read is refused.
///
/// # Safety
/// As for [`start_read`].
#[allow(clippy::too_many_arguments)]
unsafe fn issue_read(
    c: &mut Conn,
    buf: *mut u8,
    count: usize,
    offset: u64,
    flags: u32,
    chunk: Option<Chunk>,
    completion: Option<Completion>,
    zero_unfilled: bool,
) -> Result<CommandId> {
    c.check_state(CONNECTED)?;
    // Only the structured read may ask for a single data chunk.
    let allowed = if chunk.is_some() {
        LIBNBD_CMD_FLAG_DF
    } else {
        0
    };
    check_flags(c, flags, allowed)?;
    if flags & LIBNBD_CMD_FLAG_DF != 0
        && c.strict(LIBNBD_STRICT_COMMANDS)
        && (!c.can(proto::NBD_FLAG_SEND_DF) || !c.structured_replies())
    {
        return Err(Error::new(
            libc::EINVAL,
            "server does not support the DF flag",
        ));
    }
    let count = count as u64;
    check_command(c, proto::NBD_CMD_READ, offset, count, libc::EINVAL)?;
    let callbacks = CommandCallbacks {
        chunk,
        completion,
        zero_unfilled,
        ..Default::default()
    };
    c.issue(
        proto::NBD_CMD_READ,
        flags as u16,
        offset,
        count,
        buf,
        callbacks,
    )
}

/// How a command without read data is checked before it is sent.
struct Spec {
    kind: u16,
    /// Flags the call accepts.
    allowed: u32,
    /// The export flag the server must advertise, and the word for it in
    /// "server does not support ... operations".
    needs: Option<(u16, &'static str)>,
    /// It changes the disk: refused on a read-only export, FUA checked,
    /// and out-of-range requests report ENOSPC.
    writes: bool,
}

const WRITE: Spec = Spec {
    kind: proto::NBD_CMD_WRITE,
    allowed: LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_PAYLOAD_LEN,
    needs: None,
    writes: true,
};
const FLUSH: Spec = Spec {
    kind: proto::NBD_CMD_FLUSH,
    allowed: 0,
    needs: Some((proto::NBD_FLAG_SEND_FLUSH, "flush")),
    writes: false,
};
const TRIM: Spec = Spec {
    kind: proto::NBD_CMD_TRIM,
    allowed: LIBNBD_CMD_FLAG_FUA,
    needs: Some((proto::NBD_FLAG_SEND_TRIM, "trim")),
    writes: true,
};
const CACHE: Spec = Spec {
    kind: proto::NBD_CMD_CACHE,
    allowed: 0,
    needs: Some((proto::NBD_FLAG_SEND_CACHE, "cache")),
    writes: false,
};
const ZERO: Spec = Spec {
    kind: proto::NBD_CMD_WRITE_ZEROES,
    allowed: LIBNBD_CMD_FLAG_FUA | LIBNBD_CMD_FLAG_NO_HOLE | LIBNBD_CMD_FLAG_FAST_ZERO,
    needs: Some((proto::NBD_FLAG_SEND_WRITE_ZEROES, "zero")),
    writes: true,
};

/// Checks a command as libnbd does (state, flags, what the server
/// supports, then range) and issues it. `buf` is a write's data, else NULL.
///
/// # Safety
/// A non-NULL `buf` must be valid for reads of `count` bytes until the
/// command retires.
unsafe fn start(
    c: &mut Conn,
    spec: &Spec,
    count: u64,
    offset: u64,
    flags: u32,
    buf: *const u8,
    completion: Option<Completion>,
) -> Result<CommandId> {
    let flags = check(c, spec, count, offset, flags)?;
    // The machine only ever reads through `buf`, and only for a write.
    let buf = buf as *mut u8;
    c.issue(
        spec.kind,
        flags as u16,
        offset,
        count,
        buf,
        with_completion(completion),
    )
}

/// The checks of [`start`]; returns the flags to send.
fn check(c: &Conn, spec: &Spec, count: u64, offset: u64, flags: u32) -> Result<u32> {
    c.check_state(CONNECTED)?;
    check_flags(c, flags, spec.allowed)?;
    let mut flags = flags;
    let extended = c.extended_headers();
    if spec.kind == proto::NBD_CMD_WRITE && c.strict(LIBNBD_STRICT_AUTO_FLAG) {
        // The flag follows the headers in use, whatever the caller said.
        if extended {
            flags |= LIBNBD_CMD_FLAG_PAYLOAD_LEN;
        } else {
            flags &= !LIBNBD_CMD_FLAG_PAYLOAD_LEN;
        }
    }
    if c.strict(LIBNBD_STRICT_COMMANDS) {
        if let Some((flag, what)) = spec.needs {
            if !c.can(flag) {
                return Err(unsupported(what));
            }
        }
        if spec.writes {
            check_writable(c)?;
            check_fua(c, flags)?;
        }
        if spec.kind == proto::NBD_CMD_WRITE
            && (flags & LIBNBD_CMD_FLAG_PAYLOAD_LEN != 0) != extended
        {
            return Err(Error::new(
                libc::EINVAL,
                "incorrect setting for PAYLOAD_LEN flag",
            ));
        }
        if flags & LIBNBD_CMD_FLAG_FAST_ZERO != 0 && !c.can(proto::NBD_FLAG_SEND_FAST_ZERO) {
            return Err(Error::new(
                libc::EINVAL,
                "server does not support the fast zero flag",
            ));
        }
    }
    let bounds_errno = if spec.writes {
        libc::ENOSPC
    } else {
        libc::EINVAL
    };
    check_command(c, spec.kind, offset, count, bounds_errno)?;
    Ok(flags)
}

/// Checks and issues a command that carries no data.
fn start_no_data(
    c: &mut Conn,
    spec: &Spec,
    count: u64,
    offset: u64,
    flags: u32,
    completion: Option<Completion>,
) -> Result<CommandId> {
    let flags = check(c, spec, count, offset, flags)?;
    c.issue(
        spec.kind,
        flags as u16,
        offset,
        count,
        std::ptr::null_mut(),
        with_completion(completion),
    )
}

/// Checks and issues a block status request limited to `contexts`: the
/// payload is the effect length then the contexts' ids.
fn start_block_status_filter(
    c: &mut Conn,
    count: u64,
    offset: u64,
    contexts: &[&str],
    extent: Extent64Cb,
    completion: Option<Completion>,
    flags: u32,
) -> Result<CommandId> {
    c.check_state(CONNECTED)?;
    check_flags(
        c,
        flags,
        LIBNBD_CMD_FLAG_REQ_ONE | LIBNBD_CMD_FLAG_PAYLOAD_LEN,
    )?;
    let extended = c.extended_headers();
    let mut flags = flags;
    if c.strict(LIBNBD_STRICT_AUTO_FLAG) {
        if !extended {
            return Err(Error::new(
                libc::ENOTSUP,
                "server does not support extended headers",
            ));
        }
        flags |= LIBNBD_CMD_FLAG_PAYLOAD_LEN;
    }
    if c.strict(LIBNBD_STRICT_COMMANDS) {
        if !extended || !c.can(proto::NBD_FLAG_BLOCK_STAT_PAYLOAD) {
            return Err(Error::new(
                libc::EINVAL,
                "server does not support the block status payload flag",
            ));
        }
        if flags & LIBNBD_CMD_FLAG_PAYLOAD_LEN == 0 {
            return Err(Error::new(
                libc::EINVAL,
                "incorrect setting for PAYLOAD_LEN flag",
            ));
        }
    }
    // The payload cannot be framed without extended headers.
    if !extended {
        return Err(Error::new(
            libc::ENOTSUP,
            "server does not support extended headers",
        ));
    }
    let mut payload = Vec::with_capacity(8 + 4 * contexts.len());
    payload.extend_from_slice(&count.to_be_bytes());
    for name in contexts {
        let id = c
            .meta_context_id(name)
            .ok_or_else(|| Error::new(libc::EINVAL, format!("context {name} not negotiated")))?;
        payload.extend_from_slice(&id.to_be_bytes());
    }
    let flags = flags | LIBNBD_CMD_FLAG_PAYLOAD_LEN;
    start_block_status_with(
        c,
        count,
        offset,
        flags,
        ExtentCallback::Wide(extent),
        completion,
        payload,
    )
}

fn start_block_status(
    c: &mut Conn,
    count: u64,
    offset: u64,
    flags: u32,
    extent: ExtentCallback,
    completion: Option<Completion>,
) -> Result<CommandId> {
    c.check_state(CONNECTED)?;
    check_flags(c, flags, LIBNBD_CMD_FLAG_REQ_ONE)?;
    start_block_status_with(c, count, offset, flags, extent, completion, Vec::new())
}

fn start_block_status_with(
    c: &mut Conn,
    count: u64,
    offset: u64,
    flags: u32,
    extent: ExtentCallback,
    completion: Option<Completion>,
    payload: Vec<u8>,
) -> Result<CommandId> {
    if c.strict(LIBNBD_STRICT_COMMANDS) {
        if !c.structured_replies() {
            return Err(Error::new(
                libc::ENOTSUP,
                "server does not support structured replies",
            ));
        }
        if !c.has_meta_contexts() {
            return Err(Error::new(
                libc::ENOTSUP,
                "did not negotiate any metadata contexts, either you did not call \
                 nbd_add_meta_context before connecting or the server does not support it",
            ));
        }
    }
    check_command(c, proto::NBD_CMD_BLOCK_STATUS, offset, count, libc::EINVAL)?;
    let callbacks = CommandCallbacks {
        extent: Some(extent),
        completion,
        payload,
        ..Default::default()
    };
    let null = std::ptr::null_mut();
    c.issue(
        proto::NBD_CMD_BLOCK_STATUS,
        flags as u16,
        offset,
        count,
        null,
        callbacks,
    )
}

fn with_completion(completion: Option<Completion>) -> CommandCallbacks {
    CommandCallbacks {
        completion,
        ..Default::default()
    }
}

/// libnbd's name for a command in error messages.
pub(super) fn command_name(kind: u16) -> &'static str {
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

/// The error a finished command reports.
pub(super) fn command_result(kind: u16, errno: i32) -> Result<()> {
    match errno {
        0 => Ok(()),
        e => Err(Error::new(
            e,
            format!("{}: command failed", command_name(kind)),
        )),
    }
}

impl Handle {
    /// Drives the machine until command `id` is done, then retires it.
    fn wait_for_command(&self, c: MutexGuard<'_, Conn>, id: CommandId) -> Result<()> {
        let (mut c, driven) = self.drive_until(c, |c| c.command_result(id).is_some());
        if let (Err(e), None) = (&driven, c.command_result(id)) {
            // Waiting failed with the command still out: its buffer goes
            // back to the caller now, so no reply may land in it later.
            // A caller who gave up (timeout, cancel) abandons the command
            // and keeps the connection; any other failure kills it.
            if !(super::gave_up(e) && c.abandon(id)) {
                c.kill(e.clone());
            }
        }
        let retired = c.retire(id);
        let result = driven.and_then(|()| match retired {
            Some((kind, errno)) => command_result(kind, errno),
            None => Err(Error::new(libc::EIO, "command did not complete")),
        });
        result.map_err(|e| c.mark_if_dead(e))
    }
}
