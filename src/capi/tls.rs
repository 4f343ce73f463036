//! TLS settings and `NBD_OPT_STARTTLS`.

use std::ffi::{c_int, OsStr};
use std::os::unix::ffi::OsStrExt;

use super::aio::completion;
use super::types::nbd_completion_callback;
use super::{entry, malloc_c_string, CStrArg, HandleArg, MallocStr};
use crate::{Error, Handle, Result, Tls};

/// A C `LIBNBD_TLS_*` value as [`Tls`], for the calls that set one on a
/// newly created handle. libnbd checks the state before the value, so a
/// handle in another state gets the state error whatever the value.
pub(super) fn tls_arg(h: &Handle, tls: c_int) -> Result<Tls> {
    Tls::from_raw(tls).ok_or_else(|| {
        h.check_created().err().unwrap_or_else(|| {
            Error::new(
                libc::EINVAL,
                format!("tls: invalid value for parameter: {tls}"),
            )
        })
    })
}
/// A C string argument as text.
fn str_arg<'a>(arg: &'a CStrArg, param: &str) -> Result<&'a str> {
    arg.get(param)?
        .to_str()
        .map_err(|_| Error::new(libc::EINVAL, format!("{param}: not valid UTF-8")))
}

/// Sets whether the connection uses TLS.
///
/// `tls` is one of:
/// - `LIBNBD_TLS_DISABLE`: no TLS (the default);
/// - `LIBNBD_TLS_ALLOW`: TLS if the server offers it, else in clear;
/// - `LIBNBD_TLS_REQUIRE`: TLS, or no connection.
///
/// With TLS, the server is authenticated by its X.509 certificate (see
/// `nbd_set_tls_certificates`, `nbd_set_tls_verify_peer`) or by a pre-shared
/// key (see `nbd_set_tls_psk_file`). Whether TLS was used is told by
/// `nbd_get_tls_negotiated`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `tls` is not a `LIBNBD_TLS_*` value.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_tls(h: HandleArg, tls: c_int) -> c_int {
    entry!(h, |h| { h.set_tls(tls_arg(h, tls)?).map(|()| 0) })
}

/// Returns the TLS setting.
///
/// # Return value
/// The `LIBNBD_TLS_*` value set with `nbd_set_tls`, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_tls(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(h.tls() as c_int))
}

/// Returns whether the connection uses TLS.
///
/// # Return value
/// 1 if the connection is encrypted with TLS, 0 if not, -1 on error.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_tls_negotiated(h: HandleArg) -> c_int {
    entry!(h, |h| { h.tls_negotiated().map(c_int::from) })
}

/// Sets the directory of the X.509 files used for TLS.
///
/// The directory holds the CA certificate the server's certificate is checked
/// against (`ca-cert.pem`) and, for servers that ask for one, the client's
/// certificate and key (`client-cert.pem`, `client-key.pem`). Without this
/// setting, a few default directories are searched for these files, and if none
/// has a CA certificate the system's CA certificates are trusted. The string
/// `dir` is copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_tls_certificates(h: HandleArg, dir: CStrArg) -> c_int {
    entry!(h, |h| {
        let dir = dir.get("dir")?;
        h.set_tls_certificates(OsStr::from_bytes(dir.to_bytes()))
            .map(|()| 0)
    })
}

/// Sets whether the server's TLS certificate is verified.
///
/// On by default: the connection fails unless the server's certificate is
/// signed by a trusted CA and names the server. Turning it off makes TLS open
/// to impersonation.
///
/// The setting is read back with `nbd_get_tls_verify_peer`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_tls_verify_peer(h: HandleArg, verify: bool) -> c_int {
    entry!(h, |h| { h.set_tls_verify_peer(verify).map(|()| 0) })
}

/// Returns whether the server's TLS certificate is verified.
///
/// This is the value set with `nbd_set_tls_verify_peer`, or the default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_tls_verify_peer(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.tls_verify_peer())) })
}

/// Sets the user name for TLS.
///
/// With pre-shared keys (`nbd_set_tls_psk_file`), it picks the key to use.
/// Without this setting, the name of the user running the program is used. The
/// string `username` is copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_tls_username(h: HandleArg, username: CStrArg) -> c_int {
    entry!(h, |h| {
        let username = str_arg(&username, "username")?;
        h.set_tls_username(username).map(|()| 0)
    })
}

/// Returns the user name for TLS.
///
/// This is the name set with `nbd_set_tls_username`, else the name of the user
/// running the program.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_tls_username(h: HandleArg) -> MallocStr {
    entry!(h, |h| { malloc_c_string(h.tls_username()?.as_bytes()) })
}

/// Sets the file of pre-shared keys for TLS.
///
/// Each line of the file is `username:key`, the key in hexadecimal. With this
/// setting, TLS authenticates both ends with the key of the user (see
/// `nbd_set_tls_username`) instead of certificates. The string `filename` is
/// copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_tls_psk_file(h: HandleArg, filename: CStrArg) -> c_int {
    entry!(h, |h| {
        let file = filename.get("filename")?;
        h.set_tls_psk_file(OsStr::from_bytes(file.to_bytes()))
            .map(|()| 0)
    })
}

/// Sets the host name the server's TLS certificate must name.
///
/// By default the certificate is checked against the host name the connection
/// was made to (`nbd_connect_tcp`, `nbd_connect_uri`). This setting replaces
/// it, for example when connecting through a tunnel. The string `hostname` is
/// copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_tls_hostname(h: HandleArg, hostname: CStrArg) -> c_int {
    entry!(h, |h| {
        let hostname = str_arg(&hostname, "hostname")?;
        h.set_tls_hostname(hostname).map(|()| 0)
    })
}

/// Returns the host name the server's TLS certificate must name.
///
/// This is the name set with `nbd_set_tls_hostname`, else the host name of the
/// connection, else the empty string.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_tls_hostname(h: HandleArg) -> MallocStr {
    entry!(h, |h| {
        malloc_c_string(h.tls_hostname().unwrap_or_default().as_bytes())
    })
}

/// Returns whether the library supports TLS.
///
/// This library always does.
///
/// # Return value
/// 1, or -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_supports_tls(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.supports_tls())) })
}

/// Asks the server to switch the connection to TLS.
///
/// In option mode, this runs `NBD_OPT_STARTTLS` and, if the server agrees, the
/// TLS handshake, with the TLS settings of the handle. Usually not needed:
/// connecting with `nbd_set_tls` does it.
///
/// # Return value
/// 1 if the connection now uses TLS, 0 if the server refused, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_starttls(h: HandleArg) -> c_int {
    entry!(h, |h| { h.opt_starttls().map(c_int::from) })
}

/// Starts asking the server to switch the connection to TLS.
///
/// As `nbd_opt_starttls`, without waiting: the handle runs the option as the
/// program drives it (`nbd_aio_notify_read`, `nbd_poll`), then calls
/// `completion_callback`, whose `error` is 0 on success.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_starttls(
    h: HandleArg,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    entry!(h, |h| { h.aio_opt_starttls(completion).map(|()| 0) })
}
