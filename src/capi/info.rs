//! What the handle knows: export size and flags, and the handle's state.

use std::ffi::{c_char, c_int};

use super::{nbd_handle, with_handle};
use crate::{Handle, Result};

/// The export's size in bytes.
#[no_mangle]
pub extern "C" fn nbd_get_size(h: *mut nbd_handle) -> i64 {
    with_handle("nbd_get_size", h, -1, |h| h.size().map(|s| s as i64))
}

fn flag_call(api: &str, h: *mut nbd_handle, f: fn(&Handle) -> Result<bool>) -> c_int {
    with_handle(api, h, -1, |h| f(h).map(c_int::from))
}

/// 1 if the export is read-only.
#[no_mangle]
pub extern "C" fn nbd_is_read_only(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_is_read_only", h, Handle::is_read_only)
}

/// 1 if the server supports flush.
#[no_mangle]
pub extern "C" fn nbd_can_flush(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_can_flush", h, Handle::can_flush)
}

/// 1 if the server supports the FUA flag.
#[no_mangle]
pub extern "C" fn nbd_can_fua(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_can_fua", h, Handle::can_fua)
}

/// 1 if the server supports trim.
#[no_mangle]
pub extern "C" fn nbd_can_trim(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_can_trim", h, Handle::can_trim)
}

/// 1 if the server supports write-zeroes.
#[no_mangle]
pub extern "C" fn nbd_can_zero(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_can_zero", h, Handle::can_zero)
}

/// 1 if the server supports cache.
#[no_mangle]
pub extern "C" fn nbd_can_cache(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_can_cache", h, Handle::can_cache)
}

/// 1 if several connections to the export see consistent data.
#[no_mangle]
pub extern "C" fn nbd_can_multi_conn(h: *mut nbd_handle) -> c_int {
    flag_call("nbd_can_multi_conn", h, Handle::can_multi_conn)
}

fn state_call(api: &str, h: *mut nbd_handle, f: fn(&Handle) -> bool) -> c_int {
    with_handle(api, h, -1, |h| Ok(f(h) as c_int))
}

/// 1 if the handle is newly created.
#[no_mangle]
pub extern "C" fn nbd_aio_is_created(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_created", h, Handle::aio_is_created)
}

/// 1 if the handle is connecting or in the handshake.
#[no_mangle]
pub extern "C" fn nbd_aio_is_connecting(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_connecting", h, Handle::aio_is_connecting)
}

/// 1 if the handle waits for the caller to negotiate options.
#[no_mangle]
pub extern "C" fn nbd_aio_is_negotiating(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_negotiating", h, Handle::aio_is_negotiating)
}

/// 1 if the handle is connected and idle.
#[no_mangle]
pub extern "C" fn nbd_aio_is_ready(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_ready", h, Handle::aio_is_ready)
}

/// 1 if the handle is mid-request or mid-reply.
#[no_mangle]
pub extern "C" fn nbd_aio_is_processing(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_processing", h, Handle::aio_is_processing)
}

/// 1 if the connection is dead.
#[no_mangle]
pub extern "C" fn nbd_aio_is_dead(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_dead", h, Handle::aio_is_dead)
}

/// 1 if the connection is closed.
#[no_mangle]
pub extern "C" fn nbd_aio_is_closed(h: *mut nbd_handle) -> c_int {
    state_call("nbd_aio_is_closed", h, Handle::aio_is_closed)
}

/// The state's name and description (a static string).
#[no_mangle]
pub extern "C" fn nbd_connection_state(h: *mut nbd_handle) -> *const c_char {
    with_handle("nbd_connection_state", h, std::ptr::null(), |h| {
        Ok(h.connection_state_nul().as_ptr().cast())
    })
}
