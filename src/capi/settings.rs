//! Handshake and strictness settings, export introspection and traffic
//! statistics.

use std::ffi::{c_char, c_int};

use super::{malloc_c_string, nbd_handle, with_handle};
use crate::{Handle, Result};

fn bool_call(api: &str, h: *mut nbd_handle, f: fn(&Handle) -> Result<bool>) -> c_int {
    with_handle(api, h, -1, |h| f(h).map(c_int::from))
}

fn string_result(s: Result<Vec<u8>>) -> Result<*mut c_char> {
    malloc_c_string(&s?)
}

/// Limits the handshake flags the client will use.
#[no_mangle]
pub extern "C" fn nbd_set_handshake_flags(h: *mut nbd_handle, flags: u32) -> c_int {
    with_handle("nbd_set_handshake_flags", h, -1, |h| {
        h.set_handshake_flags(flags).map(|()| 0)
    })
}

/// The handshake flags offered (before connecting) or agreed (after).
#[no_mangle]
pub extern "C" fn nbd_get_handshake_flags(h: *mut nbd_handle) -> u32 {
    with_handle("nbd_get_handshake_flags", h, 0, |h| Ok(h.handshake_flags()))
}

/// Chooses which checks are done client-side.
#[no_mangle]
pub extern "C" fn nbd_set_strict_mode(h: *mut nbd_handle, flags: u32) -> c_int {
    with_handle("nbd_set_strict_mode", h, -1, |h| {
        h.set_strict_mode(flags).map(|()| 0)
    })
}

/// The client-side checks in force.
#[no_mangle]
pub extern "C" fn nbd_get_strict_mode(h: *mut nbd_handle) -> u32 {
    with_handle("nbd_get_strict_mode", h, 0, |h| Ok(h.strict_mode()))
}

/// Whether read buffers are zeroed before each read.
#[no_mangle]
pub extern "C" fn nbd_set_pread_initialize(h: *mut nbd_handle, request: bool) -> c_int {
    with_handle("nbd_set_pread_initialize", h, -1, |h| {
        h.set_pread_initialize(request).map(|()| 0)
    })
}

/// 1 if read buffers are zeroed before each read.
#[no_mangle]
pub extern "C" fn nbd_get_pread_initialize(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_pread_initialize", h, -1, |h| {
        Ok(c_int::from(h.pread_initialize()))
    })
}

/// Whether NBD_OPT_GO asks for block sizes.
#[no_mangle]
pub extern "C" fn nbd_set_request_block_size(h: *mut nbd_handle, request: bool) -> c_int {
    with_handle("nbd_set_request_block_size", h, -1, |h| {
        h.set_request_block_size(request).map(|()| 0)
    })
}

/// 1 if NBD_OPT_GO will ask for block sizes.
#[no_mangle]
pub extern "C" fn nbd_get_request_block_size(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_request_block_size", h, -1, |h| {
        Ok(c_int::from(h.request_block_size()))
    })
}

/// Whether NBD_OPT_GO asks for the canonical name and description.
#[no_mangle]
pub extern "C" fn nbd_set_full_info(h: *mut nbd_handle, request: bool) -> c_int {
    with_handle("nbd_set_full_info", h, -1, |h| {
        h.set_full_info(request).map(|()| 0)
    })
}

/// 1 if NBD_OPT_GO will ask for the canonical name and description.
#[no_mangle]
pub extern "C" fn nbd_get_full_info(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_full_info", h, -1, |h| {
        Ok(c_int::from(h.full_info()))
    })
}

/// A block size constraint (LIBNBD_SIZE_*); 0 if the server gave none.
#[no_mangle]
pub extern "C" fn nbd_get_block_size(h: *mut nbd_handle, size_type: c_int) -> i64 {
    with_handle("nbd_get_block_size", h, -1, |h| h.block_size_c(size_type))
}

/// The export's canonical name, in memory the caller frees.
#[no_mangle]
pub extern "C" fn nbd_get_canonical_export_name(h: *mut nbd_handle) -> *mut c_char {
    with_handle(
        "nbd_get_canonical_export_name",
        h,
        std::ptr::null_mut(),
        |h| string_result(h.canonical_export_name()),
    )
}

/// The export's description, in memory the caller frees.
#[no_mangle]
pub extern "C" fn nbd_get_export_description(h: *mut nbd_handle) -> *mut c_char {
    with_handle("nbd_get_export_description", h, std::ptr::null_mut(), |h| {
        string_result(h.export_description())
    })
}

/// 1 if the export is on a rotational medium.
#[no_mangle]
pub extern "C" fn nbd_is_rotational(h: *mut nbd_handle) -> c_int {
    bool_call("nbd_is_rotational", h, Handle::is_rotational)
}

/// 1 if the server supports the don't-fragment flag on reads.
#[no_mangle]
pub extern "C" fn nbd_can_df(h: *mut nbd_handle) -> c_int {
    bool_call("nbd_can_df", h, Handle::can_df)
}

/// 1 if the server supports the fast-zero flag.
#[no_mangle]
pub extern "C" fn nbd_can_fast_zero(h: *mut nbd_handle) -> c_int {
    bool_call("nbd_can_fast_zero", h, Handle::can_fast_zero)
}

/// 1 if the server supports the payload-length flag on block status.
#[no_mangle]
pub extern "C" fn nbd_can_block_status_payload(h: *mut nbd_handle) -> c_int {
    bool_call(
        "nbd_can_block_status_payload",
        h,
        Handle::can_block_status_payload,
    )
}

/// Bytes sent to the server so far.
#[no_mangle]
pub extern "C" fn nbd_stats_bytes_sent(h: *mut nbd_handle) -> u64 {
    with_handle("nbd_stats_bytes_sent", h, 0, |h| Ok(h.stats_bytes_sent()))
}

/// Chunks (options, requests) sent to the server so far.
#[no_mangle]
pub extern "C" fn nbd_stats_chunks_sent(h: *mut nbd_handle) -> u64 {
    with_handle("nbd_stats_chunks_sent", h, 0, |h| Ok(h.stats_chunks_sent()))
}

/// Bytes received from the server so far.
#[no_mangle]
pub extern "C" fn nbd_stats_bytes_received(h: *mut nbd_handle) -> u64 {
    with_handle("nbd_stats_bytes_received", h, 0, |h| {
        Ok(h.stats_bytes_received())
    })
}

/// Chunks (greeting, option replies, replies) received so far.
#[no_mangle]
pub extern "C" fn nbd_stats_chunks_received(h: *mut nbd_handle) -> u64 {
    with_handle("nbd_stats_chunks_received", h, 0, |h| {
        Ok(h.stats_chunks_received())
    })
}
