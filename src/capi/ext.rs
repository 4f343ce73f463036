//! Calls beyond libnbd, declared in `include/libnbd-ext.h` (prefix
//! `rnbd_`, constants `RNBD_*`, version node `RNBD_1.0`), so that no name
//! can collide with a call a future libnbd adds.

use std::ffi::{c_int, CStr};
use std::time::{Duration, Instant};

pub mod multi;

use super::aio::completion;
use super::types::nbd_completion_callback;
use super::{entry, malloc_c_string, BufIn, CStrArg, CStrList, HandleArg, MallocStr};
use crate::{Error, IpFamily, Result};

/// `rnbd_set_ip_family`: IPv4 and IPv6 (the default).
pub const RNBD_IP_FAMILY_ANY: c_int = 0;
/// `rnbd_set_ip_family`: IPv4 only.
pub const RNBD_IP_FAMILY_V4: c_int = 4;
/// `rnbd_set_ip_family`: IPv6 only.
pub const RNBD_IP_FAMILY_V6: c_int = 6;

/// A list of C strings as byte strings.
fn list_arg<'a>(list: &'a CStrList, param: &str) -> Result<Vec<&'a [u8]>> {
    Ok(list.get(param)?.into_iter().map(CStr::to_bytes).collect())
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
pub unsafe extern "C" fn rnbd_set_tls_ca_pem(h: HandleArg, pem: BufIn, len: usize) -> c_int {
    entry!(h, |h| {
        let pem = pem.get(len, "pem")?;
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
pub unsafe extern "C" fn rnbd_set_tls_crl_pem(h: HandleArg, pem: BufIn, len: usize) -> c_int {
    entry!(h, |h| {
        let pem = pem.get(len, "pem")?;
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
    h: HandleArg,
    cert: BufIn,
    certlen: usize,
    key: BufIn,
    keylen: usize,
) -> c_int {
    entry!(h, |h| {
        let (cert, key) = (cert.get(certlen, "cert")?, key.get(keylen, "key")?);
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
    h: HandleArg,
    username: CStrArg,
    key: BufIn,
    keylen: usize,
) -> c_int {
    entry!(h, |h| {
        let (user, key) = (username.get("username")?, key.get(keylen, "key")?);
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
pub unsafe extern "C" fn rnbd_set_tls_key_password(h: HandleArg, password: CStrArg) -> c_int {
    entry!(h, |h| {
        let password = password.get("password")?;
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
    h: HandleArg,
    argv: CStrList,
    envp: CStrList,
) -> c_int {
    entry!(h, |h| {
        let (args, env) = (list_arg(&argv, "argv")?, list_arg(&envp, "envp")?);
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
    h: HandleArg,
    argv: CStrList,
    envp: CStrList,
) -> c_int {
    entry!(h, |h| {
        let (args, env) = (list_arg(&argv, "argv")?, list_arg(&envp, "envp")?);
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
pub unsafe extern "C" fn rnbd_set_capture_stderr(h: HandleArg, capture: bool) -> c_int {
    entry!(h, |h| h.set_capture_stderr(capture).map(|()| 0))
}

/// Returns whether a command's standard error is captured.
///
/// # Return value
/// 1 if it is, 0 if not, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_get_capture_stderr(h: HandleArg) -> c_int {
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
pub unsafe extern "C" fn rnbd_get_subprocess_stderr(h: HandleArg) -> MallocStr {
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
pub unsafe extern "C" fn rnbd_set_close_waits_for_subprocess(h: HandleArg, wait: bool) -> c_int {
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
pub unsafe extern "C" fn rnbd_get_close_waits_for_subprocess(h: HandleArg) -> c_int {
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
pub unsafe extern "C" fn rnbd_set_ip_family(h: HandleArg, family: c_int) -> c_int {
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
pub unsafe extern "C" fn rnbd_get_ip_family(h: HandleArg) -> c_int {
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
    h: HandleArg,
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
pub unsafe extern "C" fn rnbd_aio_run(h: HandleArg) -> c_int {
    entry!(h, |h| h.aio_run().map(|()| 0))
}

/// Sets the default timeout of the handle's synchronous calls.
///
/// Each synchronous call may wait `timeout_ms` milliseconds: commands
/// (`nbd_pread`, `nbd_pwrite`, `nbd_flush`, ...), connecting
/// (`nbd_connect_*`) and option calls (`nbd_opt_*`); 0 (the default)
/// waits forever, as libnbd does.
///
/// A command that runs out fails with `ETIMEDOUT`, its message starting
/// with the call's name ("nbd_pread: operation timed out"), and is
/// abandoned: its buffer is never touched again, its completion callback
/// is never called (only freed), its late reply is read and discarded,
/// and the handle stays usable. A connect or option call that runs out
/// leaves the handle dead, as any failed handshake does. The
/// asynchronous calls (`nbd_aio_*`, `nbd_poll`) are not affected. A
/// deadline set with `rnbd_set_thread_deadline` takes the place of this
/// timeout.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `timeout_ms` is negative.
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_timeout(h: HandleArg, timeout_ms: i64) -> c_int {
    entry!(h, |h| {
        let ms = u64::try_from(timeout_ms).map_err(|_| {
            Error::new(
                libc::EINVAL,
                format!("timeout_ms: invalid timeout {timeout_ms} (must be 0 or more)"),
            )
        })?;
        h.set_timeout((ms > 0).then(|| Duration::from_millis(ms)));
        Ok(0)
    })
}

/// Returns the default timeout of the handle's synchronous calls.
///
/// The timeout set with `rnbd_set_timeout`, in milliseconds (rounded up),
/// 0 for none.
///
/// # Return value
/// The timeout, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_get_timeout(h: HandleArg) -> i64 {
    entry!(h, |h| {
        let ms = h
            .timeout()
            .map_or(0, |t| t.as_micros().div_ceil(1000).min(i64::MAX as u128));
        Ok(ms as i64)
    })
}

/// Sets a deadline for this thread's synchronous calls.
///
/// The deadline is `timeout_ms` milliseconds from now, for every
/// synchronous call this thread makes, on any handle, until
/// `rnbd_clear_thread_deadline`: the per-call form of `rnbd_set_timeout`,
/// whose timeout it replaces meanwhile. The calls share the one deadline:
/// set it just before the call (or the few calls) it must bound. Past it
/// they fail with `ETIMEDOUT` exactly as with `rnbd_set_timeout`. Setting
/// a deadline again replaces the previous one; other threads are not
/// affected.
///
/// # Example
/// ```c
/// rnbd_set_thread_deadline (500);
/// r = nbd_pread (h, buf, sizeof buf, 0, 0);
/// rnbd_clear_thread_deadline ();
/// if (r == -1 && nbd_get_errno () == ETIMEDOUT)
///   fprintf (stderr, "%s\n", nbd_get_error ()); // h is still usable
/// ```
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `timeout_ms` is negative.
#[no_mangle]
pub unsafe extern "C" fn rnbd_set_thread_deadline(timeout_ms: i64) -> c_int {
    entry!(|| {
        let ms = u64::try_from(timeout_ms).map_err(|_| {
            Error::new(
                libc::EINVAL,
                format!("timeout_ms: invalid timeout {timeout_ms} (must be 0 or more)"),
            )
        })?;
        let deadline = Instant::now().checked_add(Duration::from_millis(ms));
        crate::Handle::set_thread_deadline(deadline);
        Ok(0)
    })
}

/// Removes this thread's deadline.
///
/// After the deadline set with `rnbd_set_thread_deadline` is removed, the
/// thread's synchronous calls use their handles' timeouts again.
///
/// # Errors
/// This call does not fail.
#[no_mangle]
pub unsafe extern "C" fn rnbd_clear_thread_deadline() {
    entry!(|| {
        crate::Handle::set_thread_deadline(None);
        Ok(())
    })
}

/// Cancels the synchronous calls waiting on the handle.
///
/// Every synchronous call now waiting on the handle, in any thread,
/// fails with `ECANCELED` (its message starting with the call's
/// name, "nbd_pread: operation cancelled"); calls that start later are not
/// affected. Meant to be called from another thread than the waiting
/// ones. A cancelled command is abandoned as one that timed out (see
/// `rnbd_set_timeout`), and the handle stays usable.
///
/// A cancelled connect (`nbd_connect_*`), option call (`nbd_opt_*`) or
/// `nbd_shutdown` leaves the handle dead, as a timed-out one does: a
/// handshake cut short cannot be resumed. This call never waits for the
/// handle, so a watchdog thread can interrupt a connect to a server that
/// hangs.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_cancel_waits(h: HandleArg) -> c_int {
    entry!(h, |h| {
        h.cancel_waits();
        Ok(0)
    })
}
