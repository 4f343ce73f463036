//! The asynchronous API: commands that return a cookie, and the calls that
//! let a caller's event loop drive the handle.

use std::ffi::{c_int, c_uint, c_void};

use super::types::{nbd_chunk_callback, nbd_completion_callback};
use super::{check_nonnull, entry, nbd_handle, null_error};
use crate::{Chunk, CmdFlag, Completion, Result};

/// Takes ownership of a C completion callback (NULL callback and free: none).
pub(super) fn completion(cb: nbd_completion_callback) -> Option<Completion> {
    if cb.callback.is_none() && cb.free.is_none() {
        return None;
    }
    // SAFETY: the C caller provides a callback and free valid for user_data.
    Some(unsafe { Completion::from_c(cb.callback, cb.user_data, cb.free) })
}

/// Takes ownership of a C chunk callback, which must not be NULL: a
/// closure with only a free function is not (it is never called, and
/// freed once), as in libnbd.
fn chunk(cb: nbd_chunk_callback) -> Result<Chunk> {
    if cb.callback.is_none() && cb.free.is_none() {
        return Err(null_error("chunk"));
    }
    // SAFETY: as in `completion`; dropping it on error calls free once.
    Ok(unsafe { Chunk::from_c(cb.callback, cb.user_data, cb.free) })
}

/// A started command's cookie as the C API returns it.
pub(super) fn cookie(r: Result<u64>) -> Result<i64> {
    r.map(|c| c as i64)
}

/// Starts a read from the export.
///
/// As `nbd_pread`, but asynchronously. The command is only queued: the call
/// returns at once, and the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until the command completes. Then
/// `completion_callback`, unless it is `NBD_NULL_COMPLETION`, is called with
/// `*error` set to 0 or to the command's errno; if it returns 1, the command is
/// retired at once, else the program retires it with
/// `nbd_aio_command_completed`.
///
/// The buffer `buf` must stay valid until then.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_pread(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller keeps buf valid until the command retires.
        cookie(unsafe {
            h.aio_pread(
                buf.cast(),
                count,
                offset,
                completion,
                CmdFlag::from_bits_retain(flags),
            )
        })
    })
}

/// Starts a read, with a callback for each piece of the reply.
///
/// As `nbd_pread_structured`, but asynchronously. The command is only queued:
/// the call returns at once, and the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_aio_notify_write`, `nbd_poll`) until the
/// command completes. Then `completion_callback`, unless it is
/// `NBD_NULL_COMPLETION`, is called with `*error` set to 0 or to the command's
/// errno; if it returns 1, the command is retired at once, else the program
/// retires it with `nbd_aio_command_completed`.
///
/// The buffer `buf` must stay valid until then.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_pread_structured(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    chunk_callback: nbd_chunk_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    let chunk = chunk(chunk_callback);
    entry!(h, |h| {
        let chunk = chunk?;
        check_nonnull(buf, "buf")?;
        // SAFETY: as in nbd_aio_pread.
        cookie(unsafe {
            h.aio_pread_structured(
                buf.cast(),
                count,
                offset,
                chunk,
                completion,
                CmdFlag::from_bits_retain(flags),
            )
        })
    })
}

/// Reads from the export, calling back for each piece of the reply.
///
/// Reads `count` bytes at `offset` into `buf`, as `nbd_pread`, and calls
/// `chunk_callback` for each piece of the server's reply: with the part of
/// `buf` it fills (`subbuf`, its length and offset in the export) and a
/// `status` of `LIBNBD_READ_DATA`, `LIBNBD_READ_HOLE` or `LIBNBD_READ_ERROR`.
/// The callback returns 0 to go on, or -1 with `*error` set to fail the read.
/// `flags` may have `LIBNBD_CMD_FLAG_DF` (see `nbd_can_df`).
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
pub unsafe extern "C" fn nbd_pread_structured(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    chunk_callback: nbd_chunk_callback,
    flags: u32,
) -> c_int {
    let chunk = chunk(chunk_callback);
    entry!(h, |h| {
        let chunk = chunk?;
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller gives a buffer of `count` writable bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) };
        h.pread_structured(buf, offset, chunk, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Starts a write to the export.
///
/// As `nbd_pwrite`, but asynchronously. The command is only queued: the call
/// returns at once, and the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until the command completes. Then
/// `completion_callback`, unless it is `NBD_NULL_COMPLETION`, is called with
/// `*error` set to 0 or to the command's errno; if it returns 1, the command is
/// retired at once, else the program retires it with
/// `nbd_aio_command_completed`.
///
/// The buffer `buf` must stay valid until then.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_pwrite(
    h: *mut nbd_handle,
    buf: *const c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller keeps buf valid until the command retires.
        cookie(unsafe {
            h.aio_pwrite(
                buf.cast(),
                count,
                offset,
                completion,
                CmdFlag::from_bits_retain(flags),
            )
        })
    })
}

/// Starts a flush.
///
/// As `nbd_flush`, but asynchronously. The command is only queued: the call
/// returns at once, and the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until the command completes. Then
/// `completion_callback`, unless it is `NBD_NULL_COMPLETION`, is called with
/// `*error` set to 0 or to the command's errno; if it returns 1, the command is
/// retired at once, else the program retires it with
/// `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_flush(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        cookie(h.aio_flush(completion, CmdFlag::from_bits_retain(flags)))
    })
}

/// Starts a trim.
///
/// As `nbd_trim`, but asynchronously. The command is only queued: the call
/// returns at once, and the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until the command completes. Then
/// `completion_callback`, unless it is `NBD_NULL_COMPLETION`, is called with
/// `*error` set to 0 or to the command's errno; if it returns 1, the command is
/// retired at once, else the program retires it with
/// `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_trim(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        cookie(h.aio_trim(count, offset, completion, CmdFlag::from_bits_retain(flags)))
    })
}

/// Starts a cache request.
///
/// As `nbd_cache`, but asynchronously. The command is only queued: the call
/// returns at once, and the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until the command completes. Then
/// `completion_callback`, unless it is `NBD_NULL_COMPLETION`, is called with
/// `*error` set to 0 or to the command's errno; if it returns 1, the command is
/// retired at once, else the program retires it with
/// `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_cache(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        cookie(h.aio_cache(count, offset, completion, CmdFlag::from_bits_retain(flags)))
    })
}

/// Starts writing zeroes.
///
/// As `nbd_zero`, but asynchronously. The command is only queued: the call
/// returns at once, and the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until the command completes. Then
/// `completion_callback`, unless it is `NBD_NULL_COMPLETION`, is called with
/// `*error` set to 0 or to the command's errno; if it returns 1, the command is
/// retired at once, else the program retires it with
/// `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_zero(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        cookie(h.aio_zero(count, offset, completion, CmdFlag::from_bits_retain(flags)))
    })
}

/// Queues a disconnect request.
///
/// The server is asked to close the connection after the commands already
/// issued; no command may be issued after this. Unlike `nbd_shutdown`, the call
/// does not wait: the handle is closed (`nbd_aio_is_closed`) once the server
/// has closed the connection. No flags are defined: `flags` must be 0.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: a disconnect was already requested.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_disconnect(h: *mut nbd_handle, flags: u32) -> c_int {
    entry!(h, |h| {
        h.aio_disconnect(CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Returns the file descriptor of the connection.
///
/// A program with its own event loop polls this descriptor, for what
/// `nbd_aio_get_direction` says, and calls `nbd_aio_notify_read` or
/// `nbd_aio_notify_write` when it is ready. The handle owns the descriptor: do
/// not read, write or close it.
///
/// # Return value
/// The file descriptor, or -1 on error.
///
/// # Errors
/// - `EINVAL`: the handle has no connection.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_get_fd(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| h.aio_get_fd())
}

/// Returns what the handle waits for on its file descriptor.
///
/// A mask of `LIBNBD_AIO_DIRECTION_READ` (poll for reading) and
/// `LIBNBD_AIO_DIRECTION_WRITE` (poll for writing); 0 when the handle waits for
/// nothing, such as before connecting or after the connection ended. The answer
/// changes as the handle works: ask again before each poll.
///
/// # Return value
/// The mask. This call does not fail on a valid handle; with NULL `h`, it
/// returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_get_direction(h: *mut nbd_handle) -> c_uint {
    entry!(h, |h| Ok(h.aio_get_direction().bits()))
}

/// Tells the handle its file descriptor is readable.
///
/// The handle reads what it can and makes what progress it can without
/// blocking: handshake steps, replies, completion callbacks.
///
/// # Return value
/// 0 on success, -1 on error. The connection failing is an error: the handle is
/// then dead (`nbd_aio_is_dead`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_notify_read(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| { h.aio_notify_read().map(|()| 0) })
}

/// Tells the handle its file descriptor is writable.
///
/// The handle writes what it can and makes what progress it can without
/// blocking.
///
/// # Return value
/// 0 on success, -1 on error. The connection failing is an error: the handle is
/// then dead (`nbd_aio_is_dead`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_notify_write(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| { h.aio_notify_write().map(|()| 0) })
}

/// Waits for the connection, then makes progress.
///
/// A simple event loop of one step, for programs without their own: waits up to
/// `timeout` milliseconds (-1: without limit) until the file descriptor is
/// ready for what the handle waits for, then does what `nbd_aio_notify_read` or
/// `nbd_aio_notify_write` would.
///
/// # Return value
/// 1 if the handle made progress, 0 on timeout, -1 on error.
///
/// # Example
/// ```c
/// int64_t cookie = nbd_aio_flush (nbd, NBD_NULL_COMPLETION, 0);
/// if (cookie == -1) goto error;
/// int r;
/// while ((r = nbd_aio_command_completed (nbd, cookie)) == 0)
///   if (nbd_poll (nbd, -1) == -1) goto error;
/// if (r == -1) goto error;
/// ```
#[no_mangle]
pub unsafe extern "C" fn nbd_poll(h: *mut nbd_handle, timeout: c_int) -> c_int {
    entry!(h, |h| h.poll(timeout))
}

/// Waits for the connection or another descriptor, then makes progress.
///
/// As `nbd_poll`, but also returns when `fd` becomes readable, so that a
/// program can wake the wait from another thread (with a pipe or an eventfd).
/// `fd` may be -1 for none.
///
/// # Return value
/// 1 if the handle made progress or `fd` became readable, 0 on timeout, -1 on
/// error.
#[no_mangle]
pub unsafe extern "C" fn nbd_poll2(h: *mut nbd_handle, fd: c_int, timeout: c_int) -> c_int {
    entry!(h, |h| h.poll2(fd, timeout))
}

/// Retires a command if it has completed.
///
/// `cookie` is the value an `nbd_aio_*` command call returned. Once the command
/// has completed, this call retires it (its cookie is then no longer valid) and
/// tells whether it succeeded.
///
/// # Return value
/// 1 if the command completed and succeeded, 0 if it is still in flight, -1 if
/// it failed (with its errno and message) or on error.
///
/// # Errors
/// - `EINVAL`: `cookie` is less than 1, so no command's cookie.
/// - Any error the server reported for the command.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_command_completed(h: *mut nbd_handle, cookie: u64) -> c_int {
    entry!(h, |h| {
        h.aio_command_completed(cookie as i64).map(c_int::from)
    })
}

/// Returns the cookie of a completed command, without retiring it.
///
/// Finds a command that has completed but is not retired yet, so that the
/// program can pass its cookie to `nbd_aio_command_completed`.
///
/// # Return value
/// A cookie, 0 if commands are in flight but none has completed, or -1 on
/// error.
///
/// # Errors
/// - `EINVAL`: no command is in flight.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_peek_command_completed(h: *mut nbd_handle) -> i64 {
    entry!(h, |h| { h.aio_peek_command_completed() })
}

/// Returns how many commands are in flight.
///
/// Commands count from the call that issued them until their reply has arrived:
/// queued, or sent and awaiting the reply.
///
/// # Return value
/// The count, or -1 on error.
///
/// # Handle state
/// The handle must be connected with the server, shut down, or dead.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_in_flight(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| h.aio_in_flight())
}
