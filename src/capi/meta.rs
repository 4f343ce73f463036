//! Meta contexts and block status.

use std::ffi::{c_char, c_int};

use super::aio::{completion, cookie};
use super::opt::{as_strs, queries};
use super::types::{nbd_completion_callback, nbd_extent64_callback, nbd_extent_callback};
use super::{c_str_arg, malloc_c_string, nbd_handle, null_error, with_handle};
use crate::callback::{Extent, Extent64, Extent64Cb};
use crate::Result;

/// Takes ownership of a required extent callback; only a closure with
/// neither function nor free function is NULL (as in libnbd).
fn extent(cb: nbd_extent_callback) -> Result<Extent> {
    if cb.callback.is_none() && cb.free.is_none() {
        return Err(null_error("extent"));
    }
    // SAFETY: the C caller's callback and free are valid for user_data;
    // dropping the value on error calls free once.
    Ok(unsafe { Extent::from_c(cb.callback, cb.user_data, cb.free) })
}

// nbd_extent and Extent64 are the same C struct: two uint64_t.
const _: () = assert!(
    std::mem::size_of::<super::types::nbd_extent>() == std::mem::size_of::<Extent64>()
        && std::mem::align_of::<super::types::nbd_extent>() == std::mem::align_of::<Extent64>()
);

/// As [`extent`], with 64-bit extents.
fn extent64(cb: nbd_extent64_callback) -> Result<Extent64Cb> {
    if cb.callback.is_none() && cb.free.is_none() {
        return Err(null_error("extent64"));
    }
    // SAFETY: the function takes `nbd_extent *`, which has Extent64's
    // layout (checked above), so the pointer types are interchangeable.
    let callback: Option<crate::callback::Extent64FnPtr> =
        unsafe { std::mem::transmute(cb.callback) };
    // SAFETY: as in `extent`.
    Ok(unsafe { Extent64Cb::from_c(callback, cb.user_data, cb.free) })
}

/// Adds a meta context to request.
#[no_mangle]
pub extern "C" fn nbd_add_meta_context(h: *mut nbd_handle, name: *const c_char) -> c_int {
    with_handle("nbd_add_meta_context", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(name, "name") }?;
        h.add_meta_context(&name.to_string_lossy()).map(|()| 0)
    })
}

/// How many meta contexts are requested.
#[no_mangle]
pub extern "C" fn nbd_get_nr_meta_contexts(h: *mut nbd_handle) -> libc::ssize_t {
    with_handle("nbd_get_nr_meta_contexts", h, -1, |h| {
        Ok(h.nr_meta_contexts() as libc::ssize_t)
    })
}

/// The `i`th requested meta context, in memory the caller frees.
#[no_mangle]
pub extern "C" fn nbd_get_meta_context(h: *mut nbd_handle, i: usize) -> *mut c_char {
    with_handle("nbd_get_meta_context", h, std::ptr::null_mut(), |h| {
        let name = h.meta_context(i)?;
        malloc_c_string(name.as_bytes())
    })
}

/// Forgets the requested meta contexts.
#[no_mangle]
pub extern "C" fn nbd_clear_meta_contexts(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_clear_meta_contexts", h, -1, |h| {
        h.clear_meta_contexts().map(|()| 0)
    })
}

/// 1 if the server agreed to meta context `metacontext`.
#[no_mangle]
pub extern "C" fn nbd_can_meta_context(h: *mut nbd_handle, metacontext: *const c_char) -> c_int {
    with_handle("nbd_can_meta_context", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(metacontext, "metacontext") }?;
        h.can_meta_context(&name.to_string_lossy()).map(c_int::from)
    })
}

/// Whether GO/INFO ask for the requested meta contexts first.
#[no_mangle]
pub extern "C" fn nbd_set_request_meta_context(h: *mut nbd_handle, request: bool) -> c_int {
    with_handle("nbd_set_request_meta_context", h, -1, |h| {
        h.set_request_meta_context(request).map(|()| 0)
    })
}

/// Whether GO/INFO ask for the requested meta contexts first.
#[no_mangle]
pub extern "C" fn nbd_get_request_meta_context(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_request_meta_context", h, -1, |h| {
        Ok(h.request_meta_context() as c_int)
    })
}

/// Reads block status, waiting for the whole reply.
#[no_mangle]
pub extern "C" fn nbd_block_status(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent_callback: nbd_extent_callback,
    flags: u32,
) -> c_int {
    let extent = extent(extent_callback);
    with_handle("nbd_block_status", h, -1, |h| {
        h.block_status(count, offset, extent?, flags).map(|()| 0)
    })
}

/// Reads 64-bit block status, waiting for the whole reply.
#[no_mangle]
pub extern "C" fn nbd_block_status_64(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent64_callback: nbd_extent64_callback,
    flags: u32,
) -> c_int {
    let extent = extent64(extent64_callback);
    with_handle("nbd_block_status_64", h, -1, |h| {
        h.block_status_64(count, offset, extent?, flags).map(|()| 0)
    })
}

/// Starts a block status request; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_block_status(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent_callback: nbd_extent_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    let extent = extent(extent_callback);
    with_handle("nbd_aio_block_status", h, -1, |h| {
        cookie(h.aio_block_status(count, offset, extent?, completion, flags))
    })
}

/// Starts a 64-bit block status request; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_block_status_64(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent64_callback: nbd_extent64_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    let extent = extent64(extent64_callback);
    with_handle("nbd_aio_block_status_64", h, -1, |h| {
        cookie(h.aio_block_status_64(count, offset, extent?, completion, flags))
    })
}

/// Reads block status for only the named contexts, waiting for the reply.
#[no_mangle]
pub extern "C" fn nbd_block_status_filter(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    contexts: *mut *mut c_char,
    extent64_callback: nbd_extent64_callback,
    flags: u32,
) -> c_int {
    let extent = extent64(extent64_callback);
    with_handle("nbd_block_status_filter", h, -1, |h| {
        let extent = extent?;
        let names = context_list(contexts)?;
        h.block_status_filter(count, offset, &as_strs(&names), extent, flags)
            .map(|()| 0)
    })
}

/// Starts a block status request for only the named contexts.
#[no_mangle]
pub extern "C" fn nbd_aio_block_status_filter(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    contexts: *mut *mut c_char,
    extent64_callback: nbd_extent64_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    let extent = extent64(extent64_callback);
    with_handle("nbd_aio_block_status_filter", h, -1, |h| {
        let extent = extent?;
        let names = context_list(contexts)?;
        cookie(h.aio_block_status_filter(
            count,
            offset,
            &as_strs(&names),
            extent,
            completion,
            flags,
        ))
    })
}

fn context_list(contexts: *mut *mut c_char) -> Result<Vec<String>> {
    queries(contexts, "contexts")
}
