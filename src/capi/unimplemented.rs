//! The calls of libnbd 1.22 that this library does not implement yet.
//!
//! Each has libnbd's exact prototype and fails the way a libnbd call fails:
//! it returns the call's error value (-1, or NULL for strings), and
//! `nbd_get_error` then reads "nbd_xxx: not implemented yet: Operation not
//! supported" with errno `ENOTSUP`.  Calls that cannot fail in libnbd (those
//! returning unsigned values) return 0 and still record the error; so do the
//! `nbd_supports_*` queries, which cannot fail in libnbd and whose truthful
//! answer here is "no" (a -1 would read as true in C).  As in
//! libnbd, a failing call still frees each callback it was given, exactly once.
#![allow(unused_variables)]

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use crate::capi::nbd_handle;
use crate::capi::types::{
    nbd_chunk_callback, nbd_completion_callback, nbd_context_callback, nbd_debug_callback,
    nbd_extent64_callback, nbd_extent_callback, nbd_list_callback,
};

/// Records the "not implemented yet" error for `api` and returns `err_value`.
fn not_implemented<T>(api: &str, err_value: T) -> T {
    crate::capi::set_error(
        api,
        &crate::Error::new(libc::ENOTSUP, "not implemented yet"),
    );
    err_value
}

/// A callback struct passed by value, which the call owns and must free.
trait Callback {
    /// The `free` function and the `user_data` to pass it.
    fn parts(&self) -> (Option<unsafe extern "C" fn(*mut c_void)>, *mut c_void);
}

macro_rules! callback_types {
    ($($ty:ident),* $(,)?) => {
        $(impl Callback for $ty {
            fn parts(&self) -> (Option<unsafe extern "C" fn(*mut c_void)>, *mut c_void) {
                (self.free, self.user_data)
            }
        })*
    };
}

callback_types!(
    nbd_chunk_callback,
    nbd_completion_callback,
    nbd_context_callback,
    nbd_debug_callback,
    nbd_extent_callback,
    nbd_extent64_callback,
    nbd_list_callback,
);

/// Gives up a callback the call will never use: calls its `free`, if set.
fn release(cb: impl Callback) {
    let (free, user_data) = cb.parts();
    if let Some(free) = free {
        // SAFETY: the caller handed us this callback with its user_data, and
        // libnbd's contract is that free is called on it exactly once.
        unsafe { free(user_data) };
    }
}

/// Sets whether TLS is disabled, allowed or required (a `LIBNBD_TLS_*` value).
#[no_mangle]
pub extern "C" fn nbd_set_tls(h: *mut nbd_handle, tls: c_int) -> c_int {
    not_implemented("nbd_set_tls", -1)
}

/// The TLS setting chosen with `nbd_set_tls`.
#[no_mangle]
pub extern "C" fn nbd_get_tls(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_tls", -1)
}

/// Whether the connection ended up using TLS.
#[no_mangle]
pub extern "C" fn nbd_get_tls_negotiated(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_tls_negotiated", -1)
}

/// Sets the directory holding the TLS certificates.
#[no_mangle]
pub extern "C" fn nbd_set_tls_certificates(h: *mut nbd_handle, dir: *const c_char) -> c_int {
    not_implemented("nbd_set_tls_certificates", -1)
}

/// Chooses whether the server's TLS certificate is verified.
#[no_mangle]
pub extern "C" fn nbd_set_tls_verify_peer(h: *mut nbd_handle, verify: bool) -> c_int {
    not_implemented("nbd_set_tls_verify_peer", -1)
}

/// Whether the server's TLS certificate will be verified.
#[no_mangle]
pub extern "C" fn nbd_get_tls_verify_peer(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_tls_verify_peer", -1)
}

/// Sets the user name for TLS with pre-shared keys.
#[no_mangle]
pub extern "C" fn nbd_set_tls_username(h: *mut nbd_handle, username: *const c_char) -> c_int {
    not_implemented("nbd_set_tls_username", -1)
}

/// The user name for TLS with pre-shared keys; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_tls_username(h: *mut nbd_handle) -> *mut c_char {
    not_implemented("nbd_get_tls_username", ptr::null_mut())
}

/// Sets the file of TLS pre-shared keys.
#[no_mangle]
pub extern "C" fn nbd_set_tls_psk_file(h: *mut nbd_handle, filename: *const c_char) -> c_int {
    not_implemented("nbd_set_tls_psk_file", -1)
}

/// Whether this library was built with TLS support.
#[no_mangle]
pub extern "C" fn nbd_supports_tls(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_supports_tls", 0)
}

/// Asks the server to switch the connection to TLS.
#[no_mangle]
pub extern "C" fn nbd_opt_starttls(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_starttls", -1)
}

/// Starts asking the server to switch the connection to TLS.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_starttls(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(completion_callback);
    not_implemented("nbd_aio_opt_starttls", -1)
}

/// Sets the host name the server's TLS certificate is checked against.
#[no_mangle]
pub extern "C" fn nbd_set_tls_hostname(h: *mut nbd_handle, hostname: *const c_char) -> c_int {
    not_implemented("nbd_set_tls_hostname", -1)
}

/// The host name used for TLS checks; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_tls_hostname(h: *mut nbd_handle) -> *mut c_char {
    not_implemented("nbd_get_tls_hostname", ptr::null_mut())
}
