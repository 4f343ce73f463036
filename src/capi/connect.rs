//! Connecting: every transport, NBD URIs, and the subprocess.

use std::ffi::{c_char, c_int, CStr};
use std::path::Path;

use super::{c_str_arg, c_str_list_arg, check_nonnull, malloc_c_string, nbd_handle, with_handle};
use crate::transport::SockAddr;
use crate::{Error, Result};

/// Borrows a C string argument as UTF-8 text (host names, ports).
///
/// # Safety
/// As [`c_str_arg`].
unsafe fn text_arg<'a>(ptr: *const c_char, param: &str) -> Result<&'a str> {
    let s = c_str_arg(ptr, param)?;
    s.to_str()
        .map_err(|_| Error::new(libc::EINVAL, format!("{param} is not valid UTF-8")))
}

/// Borrows a C string argument as a path.
///
/// # Safety
/// As [`c_str_arg`].
unsafe fn path_arg<'a>(ptr: *const c_char, param: &str) -> Result<&'a Path> {
    let s = c_str_arg(ptr, param)?;
    Ok(Path::new(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(s.to_bytes()),
    ))
}

/// Checks and borrows a C `argv` as byte strings.
///
/// # Safety
/// `argv` must be NULL or a NULL-terminated array of C strings.
unsafe fn argv_arg<'a>(argv: *mut *mut c_char) -> Result<Vec<&'a [u8]>> {
    let args = c_str_list_arg(argv, "argv")?;
    Ok(args.into_iter().map(CStr::to_bytes).collect())
}

// ---- URIs ---------------------------------------------------------------------

/// Connects to the server an NBD URI names.
#[no_mangle]
pub extern "C" fn nbd_connect_uri(h: *mut nbd_handle, uri: *const c_char) -> c_int {
    with_handle("nbd_connect_uri", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let uri = unsafe { c_str_arg(uri, "uri")? };
        h.connect_uri(uri.to_bytes()).map(|()| 0)
    })
}

/// Starts connecting to the server an NBD URI names.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_uri(h: *mut nbd_handle, uri: *const c_char) -> c_int {
    with_handle("nbd_aio_connect_uri", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let uri = unsafe { c_str_arg(uri, "uri")? };
        h.aio_connect_uri(uri.to_bytes()).map(|()| 0)
    })
}

/// An NBD URI for the current connection; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_uri(h: *mut nbd_handle) -> *mut c_char {
    with_handle("nbd_get_uri", h, std::ptr::null_mut(), |h| {
        h.get_uri().and_then(|s| malloc_c_string(s.as_bytes()))
    })
}

/// Whether `uri` looks like an NBD URI.
#[no_mangle]
pub extern "C" fn nbd_is_uri(h: *mut nbd_handle, uri: *const c_char) -> c_int {
    with_handle("nbd_is_uri", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let uri = unsafe { c_str_arg(uri, "uri")? };
        Ok(c_int::from(h.is_uri(uri.to_bytes())))
    })
}

/// Whether this library was built with NBD URI support.
#[no_mangle]
pub extern "C" fn nbd_supports_uri(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_supports_uri", h, -1, |h| {
        Ok(c_int::from(h.supports_uri()))
    })
}

/// Whether this library was built with AF_VSOCK support.
#[no_mangle]
pub extern "C" fn nbd_supports_vsock(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_supports_vsock", h, -1, |h| {
        Ok(c_int::from(h.supports_vsock()))
    })
}

/// Sets which transports a URI may name (`LIBNBD_ALLOW_TRANSPORT_*`).
#[no_mangle]
pub extern "C" fn nbd_set_uri_allow_transports(h: *mut nbd_handle, mask: u32) -> c_int {
    with_handle("nbd_set_uri_allow_transports", h, -1, |h| {
        h.set_uri_allow_transports(mask).map(|()| 0)
    })
}

/// Sets whether a URI may ask for TLS (a `LIBNBD_TLS_*` value).
#[no_mangle]
pub extern "C" fn nbd_set_uri_allow_tls(h: *mut nbd_handle, tls: c_int) -> c_int {
    with_handle("nbd_set_uri_allow_tls", h, -1, |h| {
        h.set_uri_allow_tls(tls).map(|()| 0)
    })
}

/// Chooses whether a URI may read local files.
#[no_mangle]
pub extern "C" fn nbd_set_uri_allow_local_file(h: *mut nbd_handle, allow: bool) -> c_int {
    with_handle("nbd_set_uri_allow_local_file", h, -1, |h| {
        h.set_uri_allow_local_file(allow).map(|()| 0)
    })
}

// ---- transports -----------------------------------------------------------------

/// Connects to a server on a Unix domain socket.
#[no_mangle]
pub extern "C" fn nbd_connect_unix(h: *mut nbd_handle, unixsocket: *const c_char) -> c_int {
    with_handle("nbd_connect_unix", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let path = unsafe { path_arg(unixsocket, "unixsocket")? };
        h.connect_unix(path).map(|()| 0)
    })
}

/// Starts connecting to a server on a Unix domain socket.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_unix(h: *mut nbd_handle, unixsocket: *const c_char) -> c_int {
    with_handle("nbd_aio_connect_unix", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let path = unsafe { path_arg(unixsocket, "unixsocket")? };
        h.aio_connect_unix(path).map(|()| 0)
    })
}

/// Connects to a server over TCP.
#[no_mangle]
pub extern "C" fn nbd_connect_tcp(
    h: *mut nbd_handle,
    hostname: *const c_char,
    port: *const c_char,
) -> c_int {
    with_handle("nbd_connect_tcp", h, -1, |h| {
        // SAFETY: the caller passes NULL or C strings.
        let (host, port) = unsafe { (text_arg(hostname, "hostname")?, text_arg(port, "port")?) };
        h.connect_tcp(host, port).map(|()| 0)
    })
}

/// Starts connecting to a server over TCP.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_tcp(
    h: *mut nbd_handle,
    hostname: *const c_char,
    port: *const c_char,
) -> c_int {
    with_handle("nbd_aio_connect_tcp", h, -1, |h| {
        // SAFETY: the caller passes NULL or C strings.
        let (host, port) = unsafe { (text_arg(hostname, "hostname")?, text_arg(port, "port")?) };
        h.aio_connect_tcp(host, port).map(|()| 0)
    })
}

/// Connects to a server over AF_VSOCK.
#[no_mangle]
pub extern "C" fn nbd_connect_vsock(h: *mut nbd_handle, cid: u32, port: u32) -> c_int {
    with_handle("nbd_connect_vsock", h, -1, |h| {
        h.connect_vsock(cid, port).map(|()| 0)
    })
}

/// Starts connecting to a server over AF_VSOCK.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_vsock(h: *mut nbd_handle, cid: u32, port: u32) -> c_int {
    with_handle("nbd_aio_connect_vsock", h, -1, |h| {
        h.aio_connect_vsock(cid, port).map(|()| 0)
    })
}

/// Starts connecting to a socket address.
#[no_mangle]
pub extern "C" fn nbd_aio_connect(
    h: *mut nbd_handle,
    addr: *const libc::sockaddr,
    addrlen: libc::socklen_t,
) -> c_int {
    with_handle("nbd_aio_connect", h, -1, |h| {
        check_nonnull(addr, "addr")?;
        // SAFETY: the caller promises addrlen readable bytes at addr.
        let addr =
            unsafe { SockAddr::from_raw(addr, addrlen) }.map_err(|e| Error::io("addrlen", &e))?;
        h.aio_connect_sockaddr(addr).map(|()| 0)
    })
}

/// Connects over a socket the caller has already connected.
#[no_mangle]
pub extern "C" fn nbd_connect_socket(h: *mut nbd_handle, sock: c_int) -> c_int {
    with_handle("nbd_connect_socket", h, -1, |h| {
        h.connect_socket_fd(sock, true).map(|()| 0)
    })
}

/// Starts a connection over a socket the caller has already connected.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_socket(h: *mut nbd_handle, sock: c_int) -> c_int {
    with_handle("nbd_aio_connect_socket", h, -1, |h| {
        h.connect_socket_fd(sock, false).map(|()| 0)
    })
}

// ---- subprocesses -------------------------------------------------------------------

/// Runs `argv` as a server subprocess and connects to it.
#[no_mangle]
pub extern "C" fn nbd_connect_command(h: *mut nbd_handle, argv: *mut *mut c_char) -> c_int {
    with_handle("nbd_connect_command", h, -1, |h| {
        // SAFETY: the caller passes NULL or a NULL-terminated array of C strings.
        let args = unsafe { argv_arg(argv)? };
        h.connect_command(&args).map(|()| 0)
    })
}

/// Starts a server command and begins connecting to it over stdin/stdout.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_command(h: *mut nbd_handle, argv: *mut *mut c_char) -> c_int {
    with_handle("nbd_aio_connect_command", h, -1, |h| {
        // SAFETY: the caller passes NULL or a NULL-terminated array of C strings.
        let args = unsafe { argv_arg(argv)? };
        h.aio_connect_command(&args).map(|()| 0)
    })
}

/// Runs a server command with systemd socket activation and connects to it.
#[no_mangle]
pub extern "C" fn nbd_connect_systemd_socket_activation(
    h: *mut nbd_handle,
    argv: *mut *mut c_char,
) -> c_int {
    with_handle("nbd_connect_systemd_socket_activation", h, -1, |h| {
        // SAFETY: the caller passes NULL or a NULL-terminated array of C strings.
        let args = unsafe { argv_arg(argv)? };
        h.connect_systemd_socket_activation(&args).map(|()| 0)
    })
}

/// Starts a server command with systemd socket activation and begins connecting.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_systemd_socket_activation(
    h: *mut nbd_handle,
    argv: *mut *mut c_char,
) -> c_int {
    with_handle("nbd_aio_connect_systemd_socket_activation", h, -1, |h| {
        // SAFETY: the caller passes NULL or a NULL-terminated array of C strings.
        let args = unsafe { argv_arg(argv)? };
        h.aio_connect_systemd_socket_activation(&args).map(|()| 0)
    })
}

/// Sets the socket name a socket-activated server is told.
#[no_mangle]
pub extern "C" fn nbd_set_socket_activation_name(
    h: *mut nbd_handle,
    socket_name: *const c_char,
) -> c_int {
    with_handle("nbd_set_socket_activation_name", h, -1, |h| {
        // SAFETY: the caller passes NULL or a C string.
        let name = unsafe { c_str_arg(socket_name, "socket_name")? };
        h.set_socket_activation_name(name.to_bytes()).map(|()| 0)
    })
}

/// The socket name a socket-activated server is told; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_socket_activation_name(h: *mut nbd_handle) -> *mut c_char {
    with_handle(
        "nbd_get_socket_activation_name",
        h,
        std::ptr::null_mut(),
        |h| malloc_c_string(h.socket_activation_name().as_bytes()),
    )
}

/// The process id of the server subprocess.
#[no_mangle]
pub extern "C" fn nbd_get_subprocess_pid(h: *mut nbd_handle) -> i64 {
    with_handle("nbd_get_subprocess_pid", h, -1, |h| {
        h.subprocess_pid().map(i64::from)
    })
}

/// Sends a signal (SIGTERM if 0) to the server subprocess.
#[no_mangle]
pub extern "C" fn nbd_kill_subprocess(h: *mut nbd_handle, signum: c_int) -> c_int {
    with_handle("nbd_kill_subprocess", h, -1, |h| {
        h.kill_subprocess(signum).map(|()| 0)
    })
}
