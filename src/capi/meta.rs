//! Meta contexts and block status.

use std::ffi::{c_char, c_int};

use super::aio::{completion, cookie};
use super::opt::{as_strs, queries};
use super::types::{nbd_completion_callback, nbd_extent64_callback, nbd_extent_callback};
use super::{c_str_arg, entry, malloc_c_string, nbd_handle, null_error};
use crate::callback::{Extent, Extent64, Extent64Cb};
use crate::{CmdFlag, Result};

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

/// Adds a meta context to ask the server for.
///
/// A meta context is a kind of block status information, named as in
/// `"base:allocation"` (`LIBNBD_CONTEXT_BASE_ALLOCATION`: which parts of the
/// export are holes or read as zeroes). The handshake asks the server for every
/// context added; those it agrees to can then be queried with
/// `nbd_block_status_64`, and `nbd_can_meta_context` tells which. The string
/// `name` is copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created, or negotiating (`nbd_aio_is_negotiating`)
/// in option mode.
#[no_mangle]
pub unsafe extern "C" fn nbd_add_meta_context(h: *mut nbd_handle, name: *const c_char) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(name, "name") }?;
        h.add_meta_context(&name.to_string_lossy()).map(|()| 0)
    })
}

/// Returns how many meta contexts are to be asked for.
///
/// These are the contexts added with `nbd_add_meta_context`.
///
/// # Return value
/// The count, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_nr_meta_contexts(h: *mut nbd_handle) -> libc::ssize_t {
    entry!(h, |h| { Ok(h.nr_meta_contexts() as libc::ssize_t) })
}

/// Returns one of the meta contexts to be asked for.
///
/// `i` counts from 0, in the order of `nbd_add_meta_context`, up to
/// `nbd_get_nr_meta_contexts` excluded.
///
/// # Errors
/// - `EINVAL`: `i` is out of range.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_meta_context(h: *mut nbd_handle, i: usize) -> *mut c_char {
    entry!(h, |h| {
        let name = h.meta_context(i)?;
        malloc_c_string(name.as_bytes())
    })
}

/// Forgets the meta contexts to be asked for.
///
/// Removes every context added with `nbd_add_meta_context`, for example to ask
/// for others in a new negotiation round in option mode.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created, or negotiating (`nbd_aio_is_negotiating`)
/// in option mode.
#[no_mangle]
pub unsafe extern "C" fn nbd_clear_meta_contexts(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| { h.clear_meta_contexts().map(|()| 0) })
}

/// Returns whether the server agreed to a meta context.
///
/// `metacontext` is a context name, as passed to `nbd_add_meta_context`.
///
/// # Return value
/// 1 if the server agreed to it, 0 if not, -1 on error.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_meta_context(
    h: *mut nbd_handle,
    metacontext: *const c_char,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(metacontext, "metacontext") }?;
        h.can_meta_context(&name.to_string_lossy()).map(c_int::from)
    })
}

/// Sets whether the handshake asks for the meta contexts.
///
/// When true (the default), connecting, `nbd_opt_go` and `nbd_opt_info` first
/// ask the server for the contexts added with `nbd_add_meta_context`. Set it
/// false to choose them by hand in option mode with `nbd_opt_set_meta_context`.
///
/// The setting is read back with `nbd_get_request_meta_context`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created, or negotiating (`nbd_aio_is_negotiating`)
/// in option mode.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_request_meta_context(h: *mut nbd_handle, request: bool) -> c_int {
    entry!(h, |h| { h.set_request_meta_context(request).map(|()| 0) })
}

/// Returns whether the handshake asks for the meta contexts.
///
/// This is the value set with `nbd_set_request_meta_context`, or the default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_request_meta_context(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| { Ok(h.request_meta_context() as c_int) })
}

/// Reads the block status of a range of the export, in 32 bit extents.
///
/// Asks the server about the `count` bytes at `offset`, for each meta context
/// the server agreed to, and waits for the reply. `extent_callback` is called
/// once per context with the context name and an array of `nr_entries` 32 bit
/// numbers: pairs of the length of an extent and its status flags (for
/// `"base:allocation"`, `LIBNBD_STATE_HOLE` and `LIBNBD_STATE_ZERO`). With
/// `LIBNBD_CMD_FLAG_REQ_ONE` in `flags`, the server answers with one extent.
/// The callback returns 0 to go on, or -1 with `*error` set to fail the
/// command. `nbd_block_status_64` is the same with 64 bit extents.
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
pub unsafe extern "C" fn nbd_block_status(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent_callback: nbd_extent_callback,
    flags: u32,
) -> c_int {
    let extent = extent(extent_callback);
    entry!(h, |h| {
        h.block_status(count, offset, extent?, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Reads the block status of a range of the export.
///
/// As `nbd_block_status`, but `extent64_callback` receives an array of
/// `nr_entries` `nbd_extent` structs, each the 64 bit `length` of an extent and
/// its `flags`.
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
pub unsafe extern "C" fn nbd_block_status_64(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent64_callback: nbd_extent64_callback,
    flags: u32,
) -> c_int {
    let extent = extent64(extent64_callback);
    entry!(h, |h| {
        h.block_status_64(count, offset, extent?, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Starts reading block status, in 32 bit extents.
///
/// As `nbd_block_status`, but asynchronously. The command is only queued: the
/// call returns at once, and the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_aio_notify_write`, `nbd_poll`) until the
/// command completes. Then `completion_callback`, unless it is
/// `NBD_NULL_COMPLETION`, is called with `*error` set to 0 or to the command's
/// errno; if it returns 1, the command is retired at once, else the program
/// retires it with `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_block_status(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent_callback: nbd_extent_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    let extent = extent(extent_callback);
    entry!(h, |h| {
        cookie(h.aio_block_status(
            count,
            offset,
            extent?,
            completion,
            CmdFlag::from_bits_retain(flags),
        ))
    })
}

/// Starts reading block status.
///
/// As `nbd_block_status_64`, but asynchronously. The command is only queued:
/// the call returns at once, and the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_aio_notify_write`, `nbd_poll`) until the
/// command completes. Then `completion_callback`, unless it is
/// `NBD_NULL_COMPLETION`, is called with `*error` set to 0 or to the command's
/// errno; if it returns 1, the command is retired at once, else the program
/// retires it with `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_block_status_64(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent64_callback: nbd_extent64_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    let extent = extent64(extent64_callback);
    entry!(h, |h| {
        cookie(h.aio_block_status_64(
            count,
            offset,
            extent?,
            completion,
            CmdFlag::from_bits_retain(flags),
        ))
    })
}

/// Reads the block status of a range for some meta contexts only.
///
/// As `nbd_block_status_64`, but the server only reports the contexts named in
/// `contexts`, a NULL-terminated list of names, each one the server agreed to.
/// This needs extended headers (see `nbd_opt_extended_headers`) and server
/// support (`nbd_can_block_status_payload`). `flags` may have
/// `LIBNBD_CMD_FLAG_REQ_ONE` and `LIBNBD_CMD_FLAG_PAYLOAD_LEN`.
///
/// # Return value
/// 0 when the server has done it, -1 on error.
///
/// # Errors
/// - `ENOTSUP`: extended headers are not in use.
/// - `EINVAL`: a flag the command does not take, or the server does not support
///   filtered block status.
/// - Any error the server reports for the command, or one of the connection.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_block_status_filter(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    contexts: *mut *mut c_char,
    extent64_callback: nbd_extent64_callback,
    flags: u32,
) -> c_int {
    let extent = extent64(extent64_callback);
    entry!(h, |h| {
        let extent = extent?;
        let names = context_list(contexts)?;
        h.block_status_filter(
            count,
            offset,
            &as_strs(&names),
            extent,
            CmdFlag::from_bits_retain(flags),
        )
        .map(|()| 0)
    })
}

/// Starts reading block status for some meta contexts only.
///
/// As `nbd_block_status_filter`, but asynchronously. The command is only
/// queued: the call returns at once, and the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_aio_notify_write`, `nbd_poll`) until the
/// command completes. Then `completion_callback`, unless it is
/// `NBD_NULL_COMPLETION`, is called with `*error` set to 0 or to the command's
/// errno; if it returns 1, the command is retired at once, else the program
/// retires it with `nbd_aio_command_completed`.
///
/// # Return value
/// The command's cookie, a positive number that names it to
/// `nbd_aio_command_completed`, or -1 if the command could not be started.
///
/// # Handle state
/// The handle must be connected with the server: the handshake is over and the
/// connection is up (`nbd_aio_is_ready` or `nbd_aio_is_processing`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_block_status_filter(
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
    entry!(h, |h| {
        let extent = extent?;
        let names = context_list(contexts)?;
        cookie(h.aio_block_status_filter(
            count,
            offset,
            &as_strs(&names),
            extent,
            completion,
            CmdFlag::from_bits_retain(flags),
        ))
    })
}

fn context_list(contexts: *mut *mut c_char) -> Result<Vec<String>> {
    queries(contexts, "contexts")
}
