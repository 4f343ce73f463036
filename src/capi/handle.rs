//! Creating and closing handles, errors, and the handle's own settings.

use std::ffi::{c_char, c_int};

use super::{c_str_arg, entry, malloc_c_string, nbd_handle};
use crate::handle::{PACKAGE_NAME, VERSION};
use crate::Handle;

/// Creates a new handle.
///
/// A handle holds the settings and, once connected, one connection to one NBD
/// server. It starts newly created and unconnected: change its settings with
/// the `nbd_set_*` calls, then connect it with `nbd_connect_uri` or one of the
/// other `nbd_connect_*` calls. Release it with `nbd_close`.
///
/// # Return value
/// The new handle, or NULL on error (`nbd_get_error` says why).
///
/// # Example
/// ```c
/// struct nbd_handle *nbd = nbd_create ();
/// if (nbd == NULL) {
///   fprintf (stderr, "%s\n", nbd_get_error ());
///   exit (EXIT_FAILURE);
/// }
/// // ... use the handle ...
/// nbd_close (nbd);
/// ```
#[no_mangle]
pub unsafe extern "C" fn nbd_create() -> *mut nbd_handle {
    entry!(|| {
        let inner = Handle::new()?;
        Ok(Box::into_raw(Box::new(nbd_handle { inner })))
    })
}

/// Closes the connection, stops any subprocess and frees the handle.
///
/// The connection to the server, if any, is closed at once, without the clean
/// disconnect of `nbd_shutdown`; commands still in flight are abandoned. A
/// server the handle started (with `nbd_connect_command` or
/// `nbd_connect_systemd_socket_activation`) is made to exit (its connection
/// closes; SIGTERM, then SIGKILL if it lingers) and is reaped. Callbacks still
/// held by the handle have their free functions called. After this, `h` must
/// not be used again.
///
/// Passing NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn nbd_close(h: *mut nbd_handle) {
    if h.is_null() {
        return;
    }
    entry!(|| {
        // SAFETY: h came from nbd_create and the caller gives up its use.
        drop(unsafe { Box::from_raw(h) });
        Ok(())
    })
}

/// Returns the version of the library.
///
/// This library stands in for libnbd, and reports the libnbd release whose
/// interface it provides, as a string such as `"1.22.2"`.
///
/// # Return value
/// A static string, which the caller must not free, or NULL on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_version(h: *mut nbd_handle) -> *const c_char {
    static VERSION_NUL: &str = concat!("1.22.2", "\0");
    debug_assert_eq!(&VERSION_NUL[..VERSION_NUL.len() - 1], VERSION);
    entry!(h, |_| { Ok(VERSION_NUL.as_ptr().cast()) })
}

/// Returns the name of the library's package.
///
/// The name is `"libnbd"`, as for the library this one replaces.
///
/// # Return value
/// A static string, which the caller must not free, or NULL on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_package_name(h: *mut nbd_handle) -> *const c_char {
    static NAME_NUL: &str = concat!("libnbd", "\0");
    debug_assert_eq!(&NAME_NUL[..NAME_NUL.len() - 1], PACKAGE_NAME);
    entry!(h, |_| { Ok(NAME_NUL.as_ptr().cast()) })
}

/// Sets the name of the handle.
///
/// The name starts each debug message the handle emits (see `nbd_set_debug`),
/// which tells handles apart in a program that has several. Each handle has a
/// generated name until one is set; the string `handle_name` is copied.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_handle_name(
    h: *mut nbd_handle,
    handle_name: *const c_char,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(handle_name, "handle_name") }?;
        h.set_handle_name(&name.to_string_lossy())?;
        Ok(0)
    })
}

/// Returns the name of the handle.
///
/// This is the name set with `nbd_set_handle_name`, or the name generated for
/// the handle when it was created.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_handle_name(h: *mut nbd_handle) -> *mut c_char {
    entry!(h, |h| { malloc_c_string(h.handle_name().as_bytes()) })
}

/// Stores a value of the caller's in the handle.
///
/// The library does nothing with `private_data` but keep it: it lets a program
/// attach its own data (an index, a pointer cast to an integer) to a handle and
/// find it again with `nbd_get_private_data`.
///
/// # Return value
/// The value stored before, 0 if none was. This call does not fail on a valid
/// handle; with NULL `h`, it returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_private_data(h: *mut nbd_handle, private_data: usize) -> usize {
    entry!(h, |h| { Ok(h.set_private_data(private_data)) })
}

/// Returns the value stored with `nbd_set_private_data`.
///
/// # Return value
/// The stored value, 0 if none was stored. This call does not fail on a valid
/// handle; with NULL `h`, it returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_private_data(h: *mut nbd_handle) -> usize {
    entry!(h, |h| Ok(h.private_data()))
}

/// Turns debug messages on or off.
///
/// With `debug` true, the handle describes what it does: each call made on it,
/// with its result, and the steps of the connection. Messages go to standard
/// error, or to the callback set with `nbd_set_debug_callback`. Setting the
/// environment variable `LIBNBD_DEBUG=1` turns debugging on in every new
/// handle.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_debug(h: *mut nbd_handle, debug: bool) -> c_int {
    entry!(h, |h| h.set_debug(debug).map(|()| 0))
}

/// Returns whether debug messages are on.
///
/// See `nbd_set_debug`.
///
/// # Return value
/// 1 if debugging is on, 0 if it is off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_debug(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| Ok(h.debug() as c_int))
}

/// Sets the name of the export to ask the server for.
///
/// An NBD server may offer several exports (disks), each by name; the default
/// is the empty name, which the server maps to its default export. The name
/// must be set before the handshake asks for the export, that is before
/// connecting, or while negotiating in option mode before `nbd_opt_go` or
/// `nbd_opt_info`. The string `export_name` is copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `ENAMETOOLONG`: the name is longer than the NBD protocol allows (4096
///   bytes).
///
/// # Handle state
/// The handle must be newly created, or negotiating (`nbd_aio_is_negotiating`)
/// in option mode.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_export_name(
    h: *mut nbd_handle,
    export_name: *const c_char,
) -> c_int {
    entry!(h, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(export_name, "export_name") }?;
        h.set_export_name(name.to_bytes()).map(|()| 0)
    })
}

/// Returns the name of the export asked for.
///
/// This is the name set with `nbd_set_export_name` (or given by the URI passed
/// to `nbd_connect_uri`), the empty string by default. The name the server
/// calls the export may differ: see `nbd_get_canonical_export_name`.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_export_name(h: *mut nbd_handle) -> *mut c_char {
    entry!(h, |h| { malloc_c_string(&h.export_name()) })
}

/// Sets whether to ask the server for structured replies.
///
/// Structured replies let the server answer a read in several chunks and report
/// holes, and are needed for block status (`nbd_block_status_64`). They are
/// asked for by default. Whether the server agreed is told by
/// `nbd_get_structured_replies_negotiated`.
///
/// The setting is read back with `nbd_get_request_structured_replies`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_request_structured_replies(
    h: *mut nbd_handle,
    request: bool,
) -> c_int {
    entry!(h, |h| {
        h.set_request_structured_replies(request).map(|()| 0)
    })
}

/// Returns whether structured replies will be asked for.
///
/// This is the value set with `nbd_set_request_structured_replies`, or the
/// default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_request_structured_replies(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| { Ok(h.request_structured_replies() as c_int) })
}

/// Returns whether the server agreed to structured replies.
///
/// # Return value
/// 1 if structured replies are in use, 0 if not, -1 on error.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_structured_replies_negotiated(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| {
        h.structured_replies_negotiated().map(c_int::from)
    })
}

/// Returns the style of handshake used with the server.
///
/// The answer is `"newstyle-fixed"`, `"newstyle"` or `"oldstyle"`, the three
/// styles of NBD handshake; modern servers use the first.
///
/// # Return value
/// A static string, which the caller must not free, or NULL on error.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_protocol(h: *mut nbd_handle) -> *const c_char {
    entry!(h, |h| {
        Ok(match h.protocol()? {
            "newstyle-fixed" => c"newstyle-fixed".as_ptr(),
            "newstyle" => c"newstyle".as_ptr(),
            _ => c"oldstyle".as_ptr(),
        })
    })
}
