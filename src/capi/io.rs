//! Synchronous commands: read, write, flush, trim, zero, cache, shutdown.

use std::ffi::{c_int, c_void};

use super::{check_nonnull, nbd_handle, with_handle};

/// Reads `count` bytes at `offset` into `buf`.
#[no_mangle]
pub extern "C" fn nbd_pread(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    flags: u32,
) -> c_int {
    with_handle("nbd_pread", h, -1, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller gives a buffer of `count` writable bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) };
        h.pread(buf, offset, flags).map(|()| 0)
    })
}

/// Writes `count` bytes from `buf` at `offset`.
#[no_mangle]
pub extern "C" fn nbd_pwrite(
    h: *mut nbd_handle,
    buf: *const c_void,
    count: usize,
    offset: u64,
    flags: u32,
) -> c_int {
    with_handle("nbd_pwrite", h, -1, |h| {
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller gives a buffer of `count` readable bytes.
        let buf = unsafe { std::slice::from_raw_parts(buf as *const u8, count) };
        h.pwrite(buf, offset, flags).map(|()| 0)
    })
}

/// Makes written data durable on the server.
#[no_mangle]
pub extern "C" fn nbd_flush(h: *mut nbd_handle, flags: u32) -> c_int {
    with_handle("nbd_flush", h, -1, |h| h.flush(flags).map(|()| 0))
}

/// Discards `count` bytes at `offset`.
#[no_mangle]
pub extern "C" fn nbd_trim(h: *mut nbd_handle, count: u64, offset: u64, flags: u32) -> c_int {
    with_handle("nbd_trim", h, -1, |h| {
        h.trim(count, offset, flags).map(|()| 0)
    })
}

/// Asks the server to prefetch `count` bytes at `offset`.
#[no_mangle]
pub extern "C" fn nbd_cache(h: *mut nbd_handle, count: u64, offset: u64, flags: u32) -> c_int {
    with_handle("nbd_cache", h, -1, |h| {
        h.cache(count, offset, flags).map(|()| 0)
    })
}

/// Writes `count` zero bytes at `offset`.
#[no_mangle]
pub extern "C" fn nbd_zero(h: *mut nbd_handle, count: u64, offset: u64, flags: u32) -> c_int {
    with_handle("nbd_zero", h, -1, |h| {
        h.zero(count, offset, flags).map(|()| 0)
    })
}

/// Disconnects from the server cleanly.
#[no_mangle]
pub extern "C" fn nbd_shutdown(h: *mut nbd_handle, flags: u32) -> c_int {
    with_handle("nbd_shutdown", h, -1, |h| h.shutdown(flags).map(|()| 0))
}
