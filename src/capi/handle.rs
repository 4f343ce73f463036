//! Creating and closing handles, errors, and the handle's own settings.

use std::ffi::{c_char, c_int};

use super::{c_str_arg, ffi_call, malloc_c_string, nbd_handle, with_handle};
use crate::handle::{PACKAGE_NAME, VERSION};
use crate::Handle;

/// Creates a handle; NULL on failure.
#[no_mangle]
pub extern "C" fn nbd_create() -> *mut nbd_handle {
    ffi_call("nbd_create", std::ptr::null_mut(), || {
        let inner = Handle::new()?;
        Ok(Box::into_raw(Box::new(nbd_handle { inner })))
    })
}

/// Closes the connection, kills and reaps any subprocess, frees the handle.
/// NULL is harmless.
#[no_mangle]
pub extern "C" fn nbd_close(h: *mut nbd_handle) {
    if h.is_null() {
        return;
    }
    ffi_call("nbd_close", (), || {
        // SAFETY: h came from nbd_create and the caller gives up its use.
        drop(unsafe { Box::from_raw(h) });
        Ok(())
    })
}

/// The library's version string.
#[no_mangle]
pub extern "C" fn nbd_get_version(h: *mut nbd_handle) -> *const c_char {
    static VERSION_NUL: &str = concat!("1.22.2", "\0");
    debug_assert_eq!(&VERSION_NUL[..VERSION_NUL.len() - 1], VERSION);
    with_handle("nbd_get_version", h, std::ptr::null(), |_| {
        Ok(VERSION_NUL.as_ptr().cast())
    })
}

/// The library's package name.
#[no_mangle]
pub extern "C" fn nbd_get_package_name(h: *mut nbd_handle) -> *const c_char {
    static NAME_NUL: &str = concat!("libnbd", "\0");
    debug_assert_eq!(&NAME_NUL[..NAME_NUL.len() - 1], PACKAGE_NAME);
    with_handle("nbd_get_package_name", h, std::ptr::null(), |_| {
        Ok(NAME_NUL.as_ptr().cast())
    })
}

/// Sets the name used for this handle in debug messages.
#[no_mangle]
pub extern "C" fn nbd_set_handle_name(h: *mut nbd_handle, handle_name: *const c_char) -> c_int {
    with_handle("nbd_set_handle_name", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(handle_name, "handle_name") }?;
        h.set_handle_name(&name.to_string_lossy())?;
        Ok(0)
    })
}

/// The handle's name, in memory the caller frees.
#[no_mangle]
pub extern "C" fn nbd_get_handle_name(h: *mut nbd_handle) -> *mut c_char {
    with_handle("nbd_get_handle_name", h, std::ptr::null_mut(), |h| {
        malloc_c_string(h.handle_name().as_bytes())
    })
}

/// Stores a value for the caller; returns the previous one.
#[no_mangle]
pub extern "C" fn nbd_set_private_data(h: *mut nbd_handle, private_data: usize) -> usize {
    with_handle("nbd_set_private_data", h, 0, |h| {
        Ok(h.set_private_data(private_data))
    })
}

/// The value last stored with nbd_set_private_data.
#[no_mangle]
pub extern "C" fn nbd_get_private_data(h: *mut nbd_handle) -> usize {
    with_handle("nbd_get_private_data", h, 0, |h| Ok(h.private_data()))
}

/// Turns debug messages on or off.
#[no_mangle]
pub extern "C" fn nbd_set_debug(h: *mut nbd_handle, debug: bool) -> c_int {
    with_handle("nbd_set_debug", h, -1, |h| h.set_debug(debug).map(|()| 0))
}

/// Whether debug messages are on.
#[no_mangle]
pub extern "C" fn nbd_get_debug(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_debug", h, -1, |h| Ok(h.debug() as c_int))
}

/// Sets the export name to ask the server for.
#[no_mangle]
pub extern "C" fn nbd_set_export_name(h: *mut nbd_handle, export_name: *const c_char) -> c_int {
    with_handle("nbd_set_export_name", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(export_name, "export_name") }?;
        h.set_export_name(name.to_bytes()).map(|()| 0)
    })
}

/// The export name, in memory the caller frees.
#[no_mangle]
pub extern "C" fn nbd_get_export_name(h: *mut nbd_handle) -> *mut c_char {
    with_handle("nbd_get_export_name", h, std::ptr::null_mut(), |h| {
        malloc_c_string(&h.export_name()?)
    })
}

/// Whether to ask for structured replies during the handshake.
#[no_mangle]
pub extern "C" fn nbd_set_request_structured_replies(h: *mut nbd_handle, request: bool) -> c_int {
    with_handle("nbd_set_request_structured_replies", h, -1, |h| {
        h.set_request_structured_replies(request).map(|()| 0)
    })
}

/// Whether structured replies will be asked for.
#[no_mangle]
pub extern "C" fn nbd_get_request_structured_replies(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_request_structured_replies", h, -1, |h| {
        Ok(h.request_structured_replies() as c_int)
    })
}

/// Whether the server agreed to structured replies.
#[no_mangle]
pub extern "C" fn nbd_get_structured_replies_negotiated(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_structured_replies_negotiated", h, -1, |h| {
        h.structured_replies_negotiated().map(c_int::from)
    })
}

/// The handshake style that was used.
#[no_mangle]
pub extern "C" fn nbd_get_protocol(h: *mut nbd_handle) -> *const c_char {
    with_handle("nbd_get_protocol", h, std::ptr::null(), |h| {
        Ok(match h.protocol()? {
            "newstyle-fixed" => c"newstyle-fixed".as_ptr(),
            "newstyle" => c"newstyle".as_ptr(),
            _ => c"oldstyle".as_ptr(),
        })
    })
}
