//! Calls beyond libnbd, declared in `include/libnbd-ext.h` (prefix
//! `rnbd_`, constants `RNBD_*`, version node `RNBD_1.0`), so that no name
//! can collide with a call a future libnbd adds.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::aio::completion;
use super::types::nbd_completion_callback;
use super::{c_str_arg, c_str_list_arg, check_nonnull, entry, malloc_c_string, nbd_handle};
use crate::{Error, IpFamily, Result};

/// `rnbd_set_ip_family`: IPv4 and IPv6 (the default).
pub const RNBD_IP_FAMILY_ANY: c_int = 0;
/// `rnbd_set_ip_family`: IPv4 only.
pub const RNBD_IP_FAMILY_V4: c_int = 4;
/// `rnbd_set_ip_family`: IPv6 only.
pub const RNBD_IP_FAMILY_V6: c_int = 6;

/// Borrows `len` bytes at `ptr`, failing with EFAULT naming `param` when
/// `ptr` is NULL.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes that outlive `'a`.
unsafe fn bytes_arg<'a>(ptr: *const c_void, len: usize, param: &str) -> Result<&'a [u8]> {
    check_nonnull(ptr, param)?;
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

/// Borrows a NULL-terminated array of C strings as byte strings.
///
/// # Safety
/// `list` must be NULL or a NULL-terminated array of C strings.
unsafe fn list_arg<'a>(list: *mut *mut c_char, param: &str) -> Result<Vec<&'a [u8]>> {
    // SAFETY: our caller's promise, the same as c_str_list_arg's.
    let items = unsafe { c_str_list_arg(list, param) }?;
    Ok(items.into_iter().map(CStr::to_bytes).collect())
}

/// Sets the CA certificate(s) the server's certificate must lead to, from
/// memory: `len` bytes of PEM at `pem` (what a certificates directory's
/// `ca-cert.pem` holds), copied.
///
/// This and `rnbd_set_tls_crl_pem` and `rnbd_set_tls_client_pem` together
/// replace the files of `nbd_set_tls_certificates`, with the same checks.
/// Without a CA the system's CAs are trusted.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_tls_ca_pem(
    h: *mut nbd_handle,
    pem: *const c_void,
    len: usize,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes `len` readable bytes at `pem`.
        let pem = unsafe { bytes_arg(pem, len, "pem") }?;
        h.update_tls_credentials(|c| c.ca_pem(pem)).map(|()| 0)
    })
}

/// Sets a certificate revocation list, from memory: `len` bytes of PEM at
/// `pem` (what `ca-crl.pem` holds), copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_tls_crl_pem(
    h: *mut nbd_handle,
    pem: *const c_void,
    len: usize,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes `len` readable bytes at `pem`.
        let pem = unsafe { bytes_arg(pem, len, "pem") }?;
        h.update_tls_credentials(|c| c.crl_pem(pem)).map(|()| 0)
    })
}

/// Sets the client certificate and its private key, from memory, as PEM,
/// for servers that ask for one: `certlen` bytes at `cert` (the
/// certificate, then any intermediate certificates) and `keylen` bytes at
/// `key`, both copied. An encrypted key needs `rnbd_set_tls_key_password`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_tls_client_pem(
    h: *mut nbd_handle,
    cert: *const c_void,
    certlen: usize,
    key: *const c_void,
    keylen: usize,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes `certlen` bytes at `cert`, `keylen` at `key`.
        let (cert, key) = unsafe {
            (
                bytes_arg(cert, certlen, "cert")?,
                bytes_arg(key, keylen, "key")?,
            )
        };
        h.update_tls_credentials(|c| c.client_pem(cert, key))
            .map(|()| 0)
    })
}

/// Sets a pre-shared key from memory, instead of the file of
/// `nbd_set_tls_psk_file`: the key of `username` is the `keylen` bytes at
/// `key` (the raw key, not its hex spelling), copied and wiped from memory
/// when the handle is closed. `username` also becomes the TLS username.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `keylen` is 0.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_tls_psk(
    h: *mut nbd_handle,
    username: *const c_char,
    key: *const c_void,
    keylen: usize,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes a C string and `keylen` bytes at `key`.
        let (user, key) = unsafe {
            (
                c_str_arg(username, "username")?,
                bytes_arg(key, keylen, "key")?,
            )
        };
        let user = user
            .to_str()
            .map_err(|_| Error::new(libc::EINVAL, "username: not valid UTF-8"))?;
        h.set_tls_psk(user, key).map(|()| 0)
    })
}

/// Sets the password of an encrypted client key (from a certificates
/// directory's `client-key.pem` or from `rnbd_set_tls_client_pem`). The
/// string is copied and wiped from memory when the handle is closed.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_tls_key_password(
    h: *mut nbd_handle,
    password: *const c_char,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes a C string.
        let password = unsafe { c_str_arg(password, "password") }?;
        h.set_tls_key_password(password.to_bytes()).map(|()| 0)
    })
}

/// Runs a command as `nbd_connect_command` does, with `envp` (a
/// NULL-terminated list of `NAME=VALUE` strings) as its whole environment,
/// and waits until the connection is ready.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_connect_command_env(
    h: *mut nbd_handle,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes NULL-terminated arrays of C strings.
        let (args, env) = unsafe { (list_arg(argv, "argv")?, list_arg(envp, "envp")?) };
        h.connect_command_env(&args, &env).map(|()| 0)
    })
}

/// Starts a command as `nbd_aio_connect_command` does, with `envp` (a
/// NULL-terminated list of `NAME=VALUE` strings) as its whole environment;
/// the connection proceeds with `nbd_aio_notify_*` or `rnbd_aio_run`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_aio_connect_command_env(
    h: *mut nbd_handle,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes NULL-terminated arrays of C strings.
        let (args, env) = unsafe { (list_arg(argv, "argv")?, list_arg(envp, "envp")?) };
        h.aio_connect_command_env(&args, &env).map(|()| 0)
    })
}

/// Sets whether the standard error of a command started by
/// `nbd_connect_command` (or `rnbd_connect_command_env`) is captured
/// instead of inherited. When captured and the connection fails, the error
/// message ends with the command's last lines of error output; the text is
/// also available from `rnbd_get_subprocess_stderr`. Default: false.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_capture_stderr(h: *mut nbd_handle, capture: bool) -> c_int {
    entry!(h, |h| h.set_capture_stderr(capture).map(|()| 0))
}

/// Returns whether a command's standard error is captured.
///
/// # Return value
/// 1 if it is, 0 if not, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_get_capture_stderr(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| Ok(c_int::from(h.capture_stderr())))
}

/// Returns the last lines the command's standard error captured so far
/// (see `rnbd_set_capture_stderr`), as a string the caller must `free`.
///
/// # Return value
/// The text (possibly empty), or NULL on error.
///
/// # Errors
/// - `ENOENT`: no command was started, or its standard error is not
///   captured.
#[no_mangle]
pub unsafe extern "C" fn rnbd_get_subprocess_stderr(h: *mut nbd_handle) -> *mut c_char {
    entry!(h, |h| {
        let text = h.subprocess_stderr().ok_or_else(|| {
            Error::new(libc::ENOENT, "no captured standard error of a subprocess")
        })?;
        malloc_c_string(text.replace('\0', " ").as_bytes())
    })
}

/// Sets whether `nbd_close` waits for the command started by
/// `nbd_connect_command` to exit (true, the default, as libnbd does) or
/// returns at once, leaving the exited command to be reaped in the
/// background (false), so that closing never blocks on the subprocess.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_close_waits_for_subprocess(
    h: *mut nbd_handle,
    wait: bool,
) -> c_int {
    entry!(h, |h| {
        h.set_close_waits_for_subprocess(wait);
        Ok(0)
    })
}

/// Returns whether `nbd_close` waits for the command to exit (see
/// `rnbd_set_close_waits_for_subprocess`).
///
/// # Return value
/// 1 if it waits, 0 if not, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_get_close_waits_for_subprocess(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| Ok(c_int::from(h.close_waits_for_subprocess())))
}

/// Sets which addresses a TCP connect (`nbd_connect_tcp`, `nbd://` URIs)
/// tries: `RNBD_IP_FAMILY_ANY` (IPv4 and IPv6, in the order the resolver
/// gives, the default), `RNBD_IP_FAMILY_V4` or `RNBD_IP_FAMILY_V6`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `family` is not an `RNBD_IP_FAMILY_*` value.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_ip_family(h: *mut nbd_handle, family: c_int) -> c_int {
    entry!(h, |h| {
        let family = match family {
            RNBD_IP_FAMILY_ANY => IpFamily::Any,
            RNBD_IP_FAMILY_V4 => IpFamily::V4,
            RNBD_IP_FAMILY_V6 => IpFamily::V6,
            _ => {
                return Err(Error::new(
                    libc::EINVAL,
                    format!("family: invalid IP family {family}"),
                ))
            }
        };
        h.set_ip_family(family).map(|()| 0)
    })
}

/// Returns the `RNBD_IP_FAMILY_*` value set with `rnbd_set_ip_family`.
///
/// # Return value
/// The family, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_get_ip_family(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| Ok(h.ip_family() as c_int))
}

/// Sets a callback called once when the connection reaches the ready
/// state (after `nbd_opt_go` in option mode), with `*error` 0, or once
/// with the errno of the failure (EIO when it has none) when the
/// connection dies first. Its `free` function, if any, is called exactly
/// once: after the callback, when it is replaced, or when the handle is
/// closed. The callback runs with the handle locked and must not call
/// libnbd on this handle.
///
/// # Return value
/// 0 on success, -1 on error (`free` has then been called).
///
/// # Errors
/// - `EFAULT`: `cb` has neither a callback nor a free function
///   (`NBD_NULL_COMPLETION`).
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`).
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_ready_callback(
    h: *mut nbd_handle,
    cb: nbd_completion_callback,
) -> c_int {
    entry!(h, |h| {
        let cb = completion(cb).ok_or_else(|| super::null_error("cb"))?;
        h.set_ready_callback(cb).map(|()| 0)
    })
}

/// Makes whatever progress the connection can without blocking, whichever
/// way the socket is ready, handling every reply already there: for
/// programs driving handles from their own event loop, where another
/// thread may have moved the connection on since `nbd_aio_get_direction`.
/// Unlike the `nbd_aio_notify_*` calls it never fails for being called at
/// the wrong moment.
///
/// # Return value
/// 0 on success, -1 on error (once the connection has died, its error).
#[no_mangle]
pub unsafe extern "C" fn rnbd_aio_run(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| h.aio_run().map(|()| 0))
}
