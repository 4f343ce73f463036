//! The asynchronous API: commands that return a cookie, and the calls that
//! let a caller's event loop drive the handle.

use std::ffi::{c_int, c_uint, c_void};

use super::types::{nbd_chunk_callback, nbd_completion_callback};
use super::{check_nonnull, nbd_handle, null_error, with_handle};
use crate::{Chunk, Completion, Result};

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

/// Starts a read; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_pread(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_pread", h, -1, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller keeps buf valid until the command retires.
        cookie(unsafe { h.aio_pread(buf.cast(), count, offset, completion, flags) })
    })
}

/// Starts a read with a callback per reply chunk; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_pread_structured(
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
    with_handle("nbd_aio_pread_structured", h, -1, |h| {
        let chunk = chunk?;
        check_nonnull(buf, "buf")?;
        // SAFETY: as in nbd_aio_pread.
        cookie(unsafe {
            h.aio_pread_structured(buf.cast(), count, offset, chunk, completion, flags)
        })
    })
}

/// Reads with a callback per reply chunk, waiting for the whole reply.
#[no_mangle]
pub extern "C" fn nbd_pread_structured(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    chunk_callback: nbd_chunk_callback,
    flags: u32,
) -> c_int {
    let chunk = chunk(chunk_callback);
    with_handle("nbd_pread_structured", h, -1, |h| {
        let chunk = chunk?;
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller gives a buffer of `count` writable bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) };
        h.pread_structured(buf, offset, chunk, flags).map(|()| 0)
    })
}

/// Starts a write; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_pwrite(
    h: *mut nbd_handle,
    buf: *const c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_pwrite", h, -1, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller keeps buf valid until the command retires.
        cookie(unsafe { h.aio_pwrite(buf.cast(), count, offset, completion, flags) })
    })
}

/// Starts a flush; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_flush(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_flush", h, -1, |h| {
        cookie(h.aio_flush(completion, flags))
    })
}

/// Starts a trim; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_trim(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_trim", h, -1, |h| {
        cookie(h.aio_trim(count, offset, completion, flags))
    })
}

/// Starts a cache (prefetch) request; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_cache(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_cache", h, -1, |h| {
        cookie(h.aio_cache(count, offset, completion, flags))
    })
}

/// Starts a write-zeroes request; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_zero(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_zero", h, -1, |h| {
        cookie(h.aio_zero(count, offset, completion, flags))
    })
}

/// Queues a disconnect; no more commands may follow.
#[no_mangle]
pub extern "C" fn nbd_aio_disconnect(h: *mut nbd_handle, flags: u32) -> c_int {
    with_handle("nbd_aio_disconnect", h, -1, |h| {
        h.aio_disconnect(flags).map(|()| 0)
    })
}

/// The socket to poll.
#[no_mangle]
pub extern "C" fn nbd_aio_get_fd(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_aio_get_fd", h, -1, |h| h.aio_get_fd())
}

/// What to poll the socket for: LIBNBD_AIO_DIRECTION_* bits.
#[no_mangle]
pub extern "C" fn nbd_aio_get_direction(h: *mut nbd_handle) -> c_uint {
    with_handle("nbd_aio_get_direction", h, 0, |h| Ok(h.aio_get_direction()))
}

/// The socket is readable: run the state machine.
#[no_mangle]
pub extern "C" fn nbd_aio_notify_read(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_aio_notify_read", h, -1, |h| {
        h.aio_notify_read().map(|()| 0)
    })
}

/// The socket is writable: run the state machine.
#[no_mangle]
pub extern "C" fn nbd_aio_notify_write(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_aio_notify_write", h, -1, |h| {
        h.aio_notify_write().map(|()| 0)
    })
}

/// Polls the socket once and runs the machine; 0 on timeout.
#[no_mangle]
pub extern "C" fn nbd_poll(h: *mut nbd_handle, timeout: c_int) -> c_int {
    with_handle("nbd_poll", h, -1, |h| h.poll(timeout))
}

/// As nbd_poll, also waking when `fd` is readable.
#[no_mangle]
pub extern "C" fn nbd_poll2(h: *mut nbd_handle, fd: c_int, timeout: c_int) -> c_int {
    with_handle("nbd_poll2", h, -1, |h| h.poll2(fd, timeout))
}

/// Retires a finished command: 1 on success, 0 if still running, -1 if it failed.
#[no_mangle]
pub extern "C" fn nbd_aio_command_completed(h: *mut nbd_handle, cookie: u64) -> c_int {
    with_handle("nbd_aio_command_completed", h, -1, |h| {
        h.aio_command_completed(cookie as i64).map(c_int::from)
    })
}

/// The cookie of a finished, unretired command; 0 if none has finished yet.
#[no_mangle]
pub extern "C" fn nbd_aio_peek_command_completed(h: *mut nbd_handle) -> i64 {
    with_handle("nbd_aio_peek_command_completed", h, -1, |h| {
        h.aio_peek_command_completed()
    })
}

/// How many commands are queued or in flight.
#[no_mangle]
pub extern "C" fn nbd_aio_in_flight(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_aio_in_flight", h, -1, |h| h.aio_in_flight())
}
