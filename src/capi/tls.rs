//! TLS settings and `NBD_OPT_STARTTLS`.

use std::ffi::{c_char, c_int, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use super::aio::completion;
use super::types::nbd_completion_callback;
use super::{c_str_arg, malloc_c_string, nbd_handle, with_handle};
use crate::{Error, Result};

/// Borrows a C string argument as text.
///
/// # Safety
/// As [`c_str_arg`].
unsafe fn str_arg<'a>(ptr: *const c_char, param: &str) -> Result<&'a str> {
    // SAFETY: passed on from the caller.
    let s = unsafe { c_str_arg(ptr, param) }?;
    s.to_str()
        .map_err(|_| Error::new(libc::EINVAL, format!("{param}: not valid UTF-8")))
}

/// Sets whether TLS is disabled, allowed or required (a `LIBNBD_TLS_*` value).
#[no_mangle]
pub extern "C" fn nbd_set_tls(h: *mut nbd_handle, tls: c_int) -> c_int {
    with_handle("nbd_set_tls", h, -1, |h| h.set_tls(tls).map(|()| 0))
}

/// The TLS setting chosen with `nbd_set_tls`.
#[no_mangle]
pub extern "C" fn nbd_get_tls(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_tls", h, -1, |h| Ok(h.tls()))
}

/// Whether the connection ended up using TLS.
#[no_mangle]
pub extern "C" fn nbd_get_tls_negotiated(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_tls_negotiated", h, -1, |h| {
        h.tls_negotiated().map(c_int::from)
    })
}

/// Sets the directory holding the TLS certificates.
#[no_mangle]
pub extern "C" fn nbd_set_tls_certificates(h: *mut nbd_handle, dir: *const c_char) -> c_int {
    with_handle("nbd_set_tls_certificates", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let dir = unsafe { c_str_arg(dir, "dir") }?;
        h.set_tls_certificates(OsStr::from_bytes(dir.to_bytes()))
            .map(|()| 0)
    })
}

/// Chooses whether the server's TLS certificate is verified.
#[no_mangle]
pub extern "C" fn nbd_set_tls_verify_peer(h: *mut nbd_handle, verify: bool) -> c_int {
    with_handle("nbd_set_tls_verify_peer", h, -1, |h| {
        h.set_tls_verify_peer(verify).map(|()| 0)
    })
}

/// Whether the server's TLS certificate will be verified.
#[no_mangle]
pub extern "C" fn nbd_get_tls_verify_peer(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_tls_verify_peer", h, -1, |h| {
        Ok(c_int::from(h.tls_verify_peer()))
    })
}

/// Sets the user name for TLS with pre-shared keys.
#[no_mangle]
pub extern "C" fn nbd_set_tls_username(h: *mut nbd_handle, username: *const c_char) -> c_int {
    with_handle("nbd_set_tls_username", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let username = unsafe { str_arg(username, "username") }?;
        h.set_tls_username(username).map(|()| 0)
    })
}

/// The user name for TLS with pre-shared keys; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_tls_username(h: *mut nbd_handle) -> *mut c_char {
    with_handle("nbd_get_tls_username", h, ptr::null_mut(), |h| {
        malloc_c_string(h.tls_username()?.as_bytes())
    })
}

/// Sets the file of TLS pre-shared keys.
#[no_mangle]
pub extern "C" fn nbd_set_tls_psk_file(h: *mut nbd_handle, filename: *const c_char) -> c_int {
    with_handle("nbd_set_tls_psk_file", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let file = unsafe { c_str_arg(filename, "filename") }?;
        h.set_tls_psk_file(OsStr::from_bytes(file.to_bytes()))
            .map(|()| 0)
    })
}

/// Sets the host name the server's TLS certificate is checked against.
#[no_mangle]
pub extern "C" fn nbd_set_tls_hostname(h: *mut nbd_handle, hostname: *const c_char) -> c_int {
    with_handle("nbd_set_tls_hostname", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let hostname = unsafe { str_arg(hostname, "hostname") }?;
        h.set_tls_hostname(hostname).map(|()| 0)
    })
}

/// The host name used for TLS checks (`""` if none); the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_tls_hostname(h: *mut nbd_handle) -> *mut c_char {
    with_handle("nbd_get_tls_hostname", h, ptr::null_mut(), |h| {
        malloc_c_string(h.tls_hostname().as_bytes())
    })
}

/// Whether this library was built with TLS support: it always is.
#[no_mangle]
pub extern "C" fn nbd_supports_tls(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_supports_tls", h, -1, |h| {
        Ok(c_int::from(h.supports_tls()))
    })
}

/// Asks the server to switch the connection to TLS: 1 if it did, 0 if
/// the server refused.
#[no_mangle]
pub extern "C" fn nbd_opt_starttls(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_opt_starttls", h, -1, |h| {
        h.opt_starttls().map(c_int::from)
    })
}

/// Starts asking the server to switch the connection to TLS.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_starttls(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_opt_starttls", h, -1, |h| {
        h.aio_opt_starttls(completion).map(|()| 0)
    })
}
