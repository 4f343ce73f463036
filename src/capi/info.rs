//! What the handle knows: export size and flags, and the handle's state.

use std::ffi::{c_int, CStr, CString};
use std::sync::Mutex;

use super::{entry, HandleArg, StaticStr};
use crate::Handle;

/// Returns the size of the export in bytes.
///
/// The server tells the size during the handshake.
///
/// # Return value
/// The size, or -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the size yet (while negotiating, before
///   `nbd_opt_info`).
/// - `EOVERFLOW`: the server claims a size that does not fit in an `int64_t`.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_size(h: HandleArg) -> i64 {
    entry!(h, |h| h.size().map(|s| s as i64))
}

/// Returns whether the export is read-only.
///
/// On a read-only export, writes, trims and zeroes fail.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_is_read_only(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::is_read_only(h).map(c_int::from))
}

/// Returns whether the server supports flush (`nbd_flush`).
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_flush(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_flush(h).map(c_int::from))
}

/// Returns whether the server supports forced unit access.
///
/// Forced unit access is the `LIBNBD_CMD_FLAG_FUA` flag of writes, trims and
/// zeroes: the command returns only once its data is durable.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_fua(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_fua(h).map(c_int::from))
}

/// Returns whether the server supports trim (`nbd_trim`).
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_trim(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_trim(h).map(c_int::from))
}

/// Returns whether the server supports writing zeroes (`nbd_zero`).
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_zero(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_zero(h).map(c_int::from))
}

/// Returns whether the server supports cache requests (`nbd_cache`).
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_cache(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_cache(h).map(c_int::from))
}

/// Returns whether several connections to the export are consistent.
///
/// When true, data written and flushed through one connection to the export is
/// seen by reads on the others, so a program may spread its commands over
/// several handles connected to the same export.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_multi_conn(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_multi_conn(h).map(c_int::from))
}

/// Returns whether the handle is newly created, not yet connecting.
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_created(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_created(h))))
}

/// Returns whether the handle is connecting.
///
/// Connecting covers opening the connection and the handshake, until the handle
/// is connected or negotiating.
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_connecting(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_connecting(h))))
}

/// Returns whether the handle is negotiating options.
///
/// With option mode on (`nbd_set_opt_mode`), connecting stops here and the
/// program chooses what to ask the server with the `nbd_opt_*` calls.
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_negotiating(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_negotiating(h))))
}

/// Returns whether the handle is connected and idle.
///
/// Connected and no command in flight: ready for a new command.
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_ready(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_ready(h))))
}

/// Returns whether the handle is connected and busy.
///
/// Connected, with commands being sent or replies awaited.
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_processing(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_processing(h))))
}

/// Returns whether the connection has failed.
///
/// A dead handle lost its connection or met an error it cannot recover from; it
/// can only be closed.
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_dead(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_dead(h))))
}

/// Returns whether the connection was shut down.
///
/// The handle is closed after a clean disconnect (`nbd_shutdown`,
/// `nbd_aio_disconnect`, `nbd_opt_abort`).
///
/// This only reads the handle's state, and works in every state.
///
/// # Return value
/// 1 if it is, 0 if it is not, -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_is_closed(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(c_int::from(Handle::aio_is_closed(h))))
}

/// Describes the state of the handle's connection.
///
/// The text names the state and says what it means, such as `"READY: Connection
/// is ready to process NBD commands"`. It is meant for people: programs should
/// test the state with the `nbd_aio_is_*` calls.
///
/// # Return value
/// A static string, which the caller must not free, or NULL on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_connection_state(h: HandleArg) -> StaticStr {
    entry!(h, |h| Ok(StaticStr::new(static_c_str(
        h.connection_state()
    ))))
}

/// `s` as a C string that lives as long as the program: each distinct
/// text is copied once (there are a few dozen states), then reused.
fn static_c_str(s: &'static str) -> &'static CStr {
    static CACHE: Mutex<Vec<(&'static str, &'static CStr)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, c)) = cache.iter().find(|(text, _)| *text == s) {
        return c;
    }
    // State descriptions hold no NUL; if one did, it would end there.
    let bytes = s.split('\0').next().unwrap_or_default();
    let c: &'static CStr = Box::leak(CString::new(bytes).unwrap_or_default().into_boxed_c_str());
    cache.push((s, c));
    c
}
