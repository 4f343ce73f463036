//! Synchronous commands: read, write, flush, trim, zero, cache, shutdown.

use std::ffi::{c_int, c_void};

use super::{check_nonnull, entry, nbd_handle};
use crate::{CmdFlag, Shutdown};

/// Reads from the export.
///
/// Reads `count` bytes at `offset` of the export into `buf`, and waits until
/// they are there. A read past the end of the export fails. No flags are
/// defined for this call: `flags` must be 0.
///
/// If the server fails the read, the contents of `buf` are unspecified, except
/// that they are zeroed when `nbd_set_pread_initialize` is on (the default), so
/// stale data never shows.
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has a flag the command does not take, or the server does
///   not support the command (see the strict mode, `nbd_set_strict_mode`).
/// - Any error the server reports for the command, such as `EIO`, or one of the
///   connection.
/// - `ERANGE`: `count` is too large for one request (see `LIBNBD_SIZE_PAYLOAD`
///   in `nbd_get_block_size`).
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
///
/// # Example
/// ```c
/// char buf[512];
/// if (nbd_pread (nbd, buf, sizeof buf, 0, 0) == -1) {
///   fprintf (stderr, "%s\n", nbd_get_error ());
///   exit (EXIT_FAILURE);
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn nbd_pread(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(h, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller gives a buffer of `count` writable bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) };
        h.pread(buf, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Writes to the export.
///
/// Writes `count` bytes from `buf` at `offset` of the export, and waits until
/// the server has replied. With `LIBNBD_CMD_FLAG_FUA` in `flags`, the server
/// only replies once the data is durable (see `nbd_can_fua`); otherwise use
/// `nbd_flush`. `flags` may also have `LIBNBD_CMD_FLAG_PAYLOAD_LEN`, which only
/// matters with extended headers; with `LIBNBD_STRICT_AUTO_FLAG` in the strict
/// mode, the client sets or clears it itself.
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has a flag the command does not take, or the server does
///   not support the command (see the strict mode, `nbd_set_strict_mode`).
/// - Any error the server reports for the command, such as `EIO`, or one of the
///   connection.
/// - `ERANGE`: `count` is too large for one request (see `LIBNBD_SIZE_PAYLOAD`
///   in `nbd_get_block_size`).
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_pwrite(
    h: *mut nbd_handle,
    buf: *const c_void,
    count: usize,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(h, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller gives a buffer of `count` readable bytes.
        let buf = unsafe { std::slice::from_raw_parts(buf as *const u8, count) };
        h.pwrite(buf, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Makes the data written so far durable.
///
/// The server commits every write it has completed to stable storage before
/// replying. Needs server support: see `nbd_can_flush`. No flags are defined:
/// `flags` must be 0.
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has a flag the command does not take, or the server does
///   not support the command (see the strict mode, `nbd_set_strict_mode`).
/// - Any error the server reports for the command, such as `EIO`, or one of the
///   connection.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_flush(h: *mut nbd_handle, flags: u32) -> c_int {
    entry!(h, |h| h.flush(CmdFlag::from_bits_retain(flags)).map(|()| 0))
}

/// Discards a range of the export.
///
/// Tells the server the `count` bytes at `offset` are no longer needed; what
/// reading them returns afterwards is up to the server. Needs server support:
/// see `nbd_can_trim`. `flags` may have `LIBNBD_CMD_FLAG_FUA`.
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has a flag the command does not take, or the server does
///   not support the command (see the strict mode, `nbd_set_strict_mode`).
/// - Any error the server reports for the command, such as `EIO`, or one of the
///   connection.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_trim(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(h, |h| {
        h.trim(count, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Asks the server to prefetch a range of the export.
///
/// The server may load the `count` bytes at `offset` into its cache, so later
/// reads are faster. Needs server support: see `nbd_can_cache`. No flags are
/// defined: `flags` must be 0.
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has a flag the command does not take, or the server does
///   not support the command (see the strict mode, `nbd_set_strict_mode`).
/// - Any error the server reports for the command, such as `EIO`, or one of the
///   connection.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_cache(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(h, |h| {
        h.cache(count, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Writes zeroes to a range of the export.
///
/// Sets the `count` bytes at `offset` to zero without sending them. Needs
/// server support: see `nbd_can_zero`. `flags` may have:
/// - `LIBNBD_CMD_FLAG_FUA`: reply once the zeroes are durable;
/// - `LIBNBD_CMD_FLAG_NO_HOLE`: allocate the range rather than leave a hole;
/// - `LIBNBD_CMD_FLAG_FAST_ZERO`: fail rather than zero slowly (see
///   `nbd_can_fast_zero`).
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has a flag the command does not take, or the server does
///   not support the command (see the strict mode, `nbd_set_strict_mode`).
/// - Any error the server reports for the command, such as `EIO`, or one of the
///   connection.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_zero(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(h, |h| {
        h.zero(count, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Disconnects from the server cleanly.
///
/// Connected, it sends the disconnect request after the commands already
/// issued; in option mode (negotiating) it ends the negotiation with
/// `NBD_OPT_ABORT`. Either way it waits until the server has closed the
/// connection; the handle is then closed (`nbd_aio_is_closed`) and must
/// still be freed with `nbd_close`. With `LIBNBD_SHUTDOWN_ABANDON_PENDING`
/// in `flags`, commands not yet sent are failed instead of sent.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has bits outside `LIBNBD_SHUTDOWN_MASK`.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`, option mode) or
/// connected with the server (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_shutdown(h: *mut nbd_handle, flags: u32) -> c_int {
    entry!(h, |h| h
        .shutdown(Shutdown::from_bits_retain(flags))
        .map(|()| 0))
}
