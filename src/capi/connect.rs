//! Connecting: every transport, NBD URIs, and the subprocess.

use std::ffi::{c_int, CStr, OsStr};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::args::{FdArg, SockAddrArg};
use super::{entry, malloc_c_string, CStrArg, CStrList, HandleArg, MallocStr};
use crate::{Error, Handle, Result, ServerAddr};

/// A C caller's `struct sockaddr` (`len` bytes) as the address of a
/// server.
fn server_addr(addr: &SockAddrArg, len: libc::socklen_t) -> Result<ServerAddr> {
    let short = || {
        Error::new(
            libc::EINVAL,
            format!("addrlen: {len} is too short for the address"),
        )
    };
    let Some((storage, family)) = addr.get(len, "addr")? else {
        return Err(short());
    };
    // The kernel wants the whole structure of these families (connect(2)
    // fails with EINVAL otherwise).
    let least = match i32::from(family) {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        libc::AF_VSOCK => std::mem::size_of::<libc::sockaddr_vm>(),
        _ => 0,
    };
    if (len as usize) < least {
        return Err(short());
    }
    if let Some(sin) = storage.as_sockaddr_in() {
        return Ok(ServerAddr::Inet(SocketAddr::V4(SocketAddrV4::new(
            sin.ip(),
            sin.port(),
        ))));
    }
    if let Some(sin6) = storage.as_sockaddr_in6() {
        return Ok(ServerAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
            sin6.ip(),
            sin6.port(),
            sin6.flowinfo(),
            sin6.scope_id(),
        ))));
    }
    if let Some(vm) = storage.as_vsock_addr() {
        return Ok(ServerAddr::Vsock {
            cid: vm.cid(),
            port: vm.port(),
        });
    }
    if let Some(un) = storage.as_unix_addr() {
        if let Some(path) = un.path() {
            return Ok(ServerAddr::Unix(path.to_path_buf()));
        }
        if let Some(name) = un.as_abstract() {
            // A leading NUL names the abstract namespace.
            let mut bytes = vec![0];
            bytes.extend_from_slice(name);
            return Ok(ServerAddr::Unix(PathBuf::from(
                std::ffi::OsString::from_vec(bytes),
            )));
        }
        return Err(Error::new(
            libc::EINVAL,
            "addr: an unnamed Unix domain socket address",
        ));
    }
    Err(Error::new(
        libc::EAFNOSUPPORT,
        format!("addr: address family {family} is not supported"),
    ))
}

/// Takes over a C caller's socket for `nbd_connect_socket`. A handle that
/// cannot connect leaves the socket to the caller (libnbd neither closes
/// nor uses it then); a bad fd is refused, not adopted.
fn adopt_fd(h: &Handle, sock: FdArg) -> Result<OwnedFd> {
    h.check_created()?;
    sock.adopt("fcntl: set O_NONBLOCK")
}

/// A C string argument as UTF-8 text (host names, ports).
fn text_arg<'a>(arg: &'a CStrArg, param: &str) -> Result<&'a str> {
    arg.get(param)?
        .to_str()
        .map_err(|_| Error::new(libc::EINVAL, format!("{param} is not valid UTF-8")))
}

/// A C string argument as a path.
fn path_arg<'a>(arg: &'a CStrArg, param: &str) -> Result<&'a Path> {
    let s = arg.get(param)?;
    Ok(Path::new(OsStr::from_bytes(s.to_bytes())))
}

/// A C `argv` as byte strings.
fn argv_arg(argv: &CStrList) -> Result<Vec<&[u8]>> {
    Ok(argv.get("argv")?.into_iter().map(CStr::to_bytes).collect())
}

// ---- URIs ---------------------------------------------------------------------

/// Connects to the server and export an NBD URI names.
///
/// `uri` names the transport, server, export and TLS use, for example
/// `nbd://example.com/disk`, `nbds://example.com:10809/` (TLS required),
/// `nbd+unix:///disk?socket=/tmp/sock` or `nbd+vsock://2:10809/`. The export
/// name and TLS setting it gives replace those of the handle. Which URIs are
/// accepted can be limited with `nbd_set_uri_allow_transports`,
/// `nbd_set_uri_allow_tls` and `nbd_set_uri_allow_local_file`.
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
///
/// # Example
/// ```c
/// if (nbd_connect_uri (nbd, "nbd://localhost/") == -1) {
///   fprintf (stderr, "%s\n", nbd_get_error ());
///   exit (EXIT_FAILURE);
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_uri(h: HandleArg, uri: CStrArg) -> c_int {
    entry!(h, |h| {
        let uri = uri.get("uri")?;
        h.connect_uri(uri.to_bytes()).map(|()| 0)
    })
}

/// Starts connecting to the server an NBD URI names.
///
/// As `nbd_connect_uri`, but asynchronously. The call only starts connecting
/// and returns at once: the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until `nbd_aio_is_connecting` turns
/// false, then checks `nbd_aio_is_ready` (or `nbd_aio_is_negotiating` in option
/// mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_uri(h: HandleArg, uri: CStrArg) -> c_int {
    entry!(h, |h| {
        let uri = uri.get("uri")?;
        h.aio_connect_uri(uri.to_bytes()).map(|()| 0)
    })
}

/// Returns an NBD URI for the handle's connection.
///
/// The URI names the same server, export and TLS use, so that passing it to
/// `nbd_connect_uri` would connect to the same place. Only what the handle
/// knows can be put in it: a connection over a socket the program made
/// (`nbd_connect_socket`) or to a command has no URI.
///
/// # Handle state
/// The handle must have started connecting: connecting, negotiating, connected
/// with the server, shut down, or dead.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_uri(h: HandleArg) -> MallocStr {
    entry!(h, |h| {
        h.get_uri().and_then(|s| malloc_c_string(s.as_bytes()))
    })
}

/// Returns whether a string looks like an NBD URI.
///
/// This only looks at the form of `uri` (its scheme): it does not promise that
/// `nbd_connect_uri` will accept it. It helps programs that take either a URI
/// or a file name.
///
/// # Return value
/// 1 if it looks like an NBD URI, 0 if not, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_is_uri(h: HandleArg, uri: CStrArg) -> c_int {
    entry!(h, |h| {
        let uri = uri.get("uri")?;
        Ok(c_int::from(h.is_uri(uri.to_bytes())))
    })
}

/// Returns whether the library supports NBD URIs.
///
/// This library always does.
///
/// # Return value
/// 1, or -1 on error (NULL `h`).
#[no_mangle]
pub unsafe extern "C" fn nbd_supports_uri(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.supports_uri())) })
}

/// Returns whether the library supports AF_VSOCK.
///
/// This library always does on Linux; the kernel may still lack it, which
/// connecting then reports.
///
/// # Return value
/// 1 if supported, 0 if not, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_supports_vsock(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.supports_vsock())) })
}

/// Limits the transports `nbd_connect_uri` accepts.
///
/// `mask` is a mask of `LIBNBD_ALLOW_TRANSPORT_TCP`,
/// `LIBNBD_ALLOW_TRANSPORT_UNIX`, `LIBNBD_ALLOW_TRANSPORT_VSOCK` and
/// `LIBNBD_ALLOW_TRANSPORT_SSH`: a URI naming another transport is refused.
/// Programs that take URIs from untrusted sources use it to limit what a URI
/// can make them do.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `mask` has bits outside `LIBNBD_ALLOW_TRANSPORT_MASK`.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_uri_allow_transports(h: HandleArg, mask: u32) -> c_int {
    entry!(h, |h| {
        h.set_uri_allow_transports(crate::AllowTransport::from_bits_retain(mask))
            .map(|()| 0)
    })
}

/// Limits the TLS use `nbd_connect_uri` accepts.
///
/// `tls` is a `LIBNBD_TLS_*` value: with `LIBNBD_TLS_DISABLE`, URIs that ask
/// for TLS are refused; with `LIBNBD_TLS_REQUIRE`, URIs that do not are
/// refused; `LIBNBD_TLS_ALLOW` accepts both.
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
pub unsafe extern "C" fn nbd_set_uri_allow_tls(h: HandleArg, tls: c_int) -> c_int {
    entry!(h, |h| {
        h.set_uri_allow_tls(super::tls::tls_arg(h, tls)?)
            .map(|()| 0)
    })
}

/// Sets whether `nbd_connect_uri` may read local files.
///
/// The URI parameters `tls-certificates` and `tls-psk-file` name local files to
/// read. They are refused unless `allow` is true; the default is false.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_uri_allow_local_file(h: HandleArg, allow: bool) -> c_int {
    entry!(h, |h| { h.set_uri_allow_local_file(allow).map(|()| 0) })
}

// ---- transports -----------------------------------------------------------------

/// Connects to a server on a Unix domain socket.
///
/// `unixsocket` is the path of the socket.
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_unix(h: HandleArg, unixsocket: CStrArg) -> c_int {
    entry!(h, |h| {
        let path = path_arg(&unixsocket, "unixsocket")?;
        h.connect_unix(path).map(|()| 0)
    })
}

/// Starts connecting to a server on a Unix domain socket.
///
/// As `nbd_connect_unix`, but asynchronously. The call only starts connecting
/// and returns at once: the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until `nbd_aio_is_connecting` turns
/// false, then checks `nbd_aio_is_ready` (or `nbd_aio_is_negotiating` in option
/// mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_unix(h: HandleArg, unixsocket: CStrArg) -> c_int {
    entry!(h, |h| {
        let path = path_arg(&unixsocket, "unixsocket")?;
        h.aio_connect_unix(path).map(|()| 0)
    })
}

/// Connects to a server over TCP.
///
/// `hostname` is a host name or address, and `port` a port number or service
/// name (such as `"10809"` or `"nbd"`). Each address the name resolves to is
/// tried in turn.
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_tcp(h: HandleArg, hostname: CStrArg, port: CStrArg) -> c_int {
    entry!(h, |h| {
        let (host, port) = (text_arg(&hostname, "hostname")?, text_arg(&port, "port")?);
        h.connect_tcp(host, port).map(|()| 0)
    })
}

/// Starts connecting to a server over TCP.
///
/// As `nbd_connect_tcp`, but asynchronously. The call only starts connecting
/// and returns at once: the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until `nbd_aio_is_connecting` turns
/// false, then checks `nbd_aio_is_ready` (or `nbd_aio_is_negotiating` in option
/// mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_tcp(
    h: HandleArg,
    hostname: CStrArg,
    port: CStrArg,
) -> c_int {
    entry!(h, |h| {
        let (host, port) = (text_arg(&hostname, "hostname")?, text_arg(&port, "port")?);
        h.aio_connect_tcp(host, port).map(|()| 0)
    })
}

/// Connects to a server over AF_VSOCK.
///
/// Connects to `port` on the virtual machine or host whose context id is `cid`
/// (2 is the host, as seen from a guest).
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_vsock(h: HandleArg, cid: u32, port: u32) -> c_int {
    entry!(h, |h| { h.connect_vsock(cid, port).map(|()| 0) })
}

/// Starts connecting to a server over AF_VSOCK.
///
/// As `nbd_connect_vsock`, but asynchronously. The call only starts connecting
/// and returns at once: the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until `nbd_aio_is_connecting` turns
/// false, then checks `nbd_aio_is_ready` (or `nbd_aio_is_negotiating` in option
/// mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_vsock(h: HandleArg, cid: u32, port: u32) -> c_int {
    entry!(h, |h| { h.aio_connect_vsock(cid, port).map(|()| 0) })
}

/// Starts connecting to a socket address.
///
/// `addr` and `addrlen` are a socket address as for connect(2): an `AF_UNIX`,
/// `AF_INET`, `AF_INET6` or `AF_VSOCK` address of an NBD server. There is no
/// blocking twin of this call. The call only starts connecting and returns at
/// once: the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until `nbd_aio_is_connecting` turns
/// false, then checks `nbd_aio_is_ready` (or `nbd_aio_is_negotiating` in option
/// mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect(
    h: HandleArg,
    addr: SockAddrArg,
    addrlen: libc::socklen_t,
) -> c_int {
    entry!(h, |h| {
        let addr = server_addr(&addr, addrlen)?;
        h.aio_connect(addr).map(|()| 0)
    })
}

/// Connects over a socket the program has already connected.
///
/// `sock` is a connected stream socket (or the end of a socketpair) with an NBD
/// server on the other end. The handle takes it over and closes it when done:
/// the program must not use or close it any more.
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_socket(h: HandleArg, sock: FdArg) -> c_int {
    entry!(h, |h| {
        let sock = adopt_fd(h, sock)?;
        h.connect_socket(sock).map(|()| 0)
    })
}

/// Starts a connection over a socket the program has already connected.
///
/// As `nbd_connect_socket`, but asynchronously. The call only starts connecting
/// and returns at once: the program drives the handle (`nbd_aio_notify_read`,
/// `nbd_aio_notify_write`, `nbd_poll`) until `nbd_aio_is_connecting` turns
/// false, then checks `nbd_aio_is_ready` (or `nbd_aio_is_negotiating` in option
/// mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_socket(h: HandleArg, sock: FdArg) -> c_int {
    entry!(h, |h| {
        let sock = adopt_fd(h, sock)?;
        h.aio_connect_socket(sock).map(|()| 0)
    })
}

// ---- subprocesses -------------------------------------------------------------------

/// Runs an NBD server as a subprocess and connects to it.
///
/// `argv` is the command and its arguments, a NULL-terminated array of strings
/// as for execvp(3): `argv[0]` is looked up in the `PATH`. The command runs
/// with its standard input and output connected to the handle, and must serve
/// NBD on them (as `nbdkit -s` does). It is stopped when the handle is closed;
/// see also `nbd_get_subprocess_pid` and `nbd_kill_subprocess`.
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
///
/// # Example
/// ```c
/// char *argv[] = { "nbdkit", "-s", "--exit-with-parent",
///                  "memory", "size=1M", NULL };
/// if (nbd_connect_command (nbd, argv) == -1) {
///   fprintf (stderr, "%s\n", nbd_get_error ());
///   exit (EXIT_FAILURE);
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_command(h: HandleArg, argv: CStrList) -> c_int {
    entry!(h, |h| {
        let args = argv_arg(&argv)?;
        h.connect_command(&args).map(|()| 0)
    })
}

/// Starts an NBD server as a subprocess and connecting to it.
///
/// As `nbd_connect_command`, but asynchronously. The call only starts
/// connecting and returns at once: the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_aio_notify_write`, `nbd_poll`) until
/// `nbd_aio_is_connecting` turns false, then checks `nbd_aio_is_ready` (or
/// `nbd_aio_is_negotiating` in option mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_command(h: HandleArg, argv: CStrList) -> c_int {
    entry!(h, |h| {
        let args = argv_arg(&argv)?;
        h.aio_connect_command(&args).map(|()| 0)
    })
}

/// Runs an NBD server with systemd socket activation and connects to it.
///
/// `argv` is the command and its arguments, as for `nbd_connect_command`. The
/// handle makes a listening Unix domain socket, passes it to the command as
/// file descriptor 3 with `LISTEN_PID` and `LISTEN_FDS` set (and
/// `LISTEN_FDNAMES`, if named with `nbd_set_socket_activation_name`), as
/// systemd does, then connects to it. Servers such as nbdkit and qemu-nbd
/// support this. The server is stopped when the handle is closed.
///
/// Connecting also runs the NBD handshake, with the handle's settings (export
/// name, TLS, meta contexts, ...). The call returns when the handle is
/// connected with the server, or negotiating if option mode is on
/// (`nbd_set_opt_mode`).
///
/// # Return value
/// 0 once connected (or negotiating), -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_connect_systemd_socket_activation(
    h: HandleArg,
    argv: CStrList,
) -> c_int {
    entry!(h, |h| {
        let args = argv_arg(&argv)?;
        h.connect_systemd_socket_activation(&args).map(|()| 0)
    })
}

/// Starts an NBD server with systemd socket activation and connecting to it.
///
/// As `nbd_connect_systemd_socket_activation`, but asynchronously. The call
/// only starts connecting and returns at once: the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_aio_notify_write`, `nbd_poll`) until
/// `nbd_aio_is_connecting` turns false, then checks `nbd_aio_is_ready` (or
/// `nbd_aio_is_negotiating` in option mode).
///
/// # Return value
/// 0 if connecting started, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`). A handle connects
/// once; to connect again, create a new handle.
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_connect_systemd_socket_activation(
    h: HandleArg,
    argv: CStrList,
) -> c_int {
    entry!(h, |h| {
        let args = argv_arg(&argv)?;
        h.aio_connect_systemd_socket_activation(&args).map(|()| 0)
    })
}

/// Sets the name of the socket passed under socket activation.
///
/// The name is given to the server in `LISTEN_FDNAMES` by
/// `nbd_connect_systemd_socket_activation`. It is a short string of letters and
/// digits, or the empty string (the default) for no name. The string
/// `socket_name` is copied.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `ENAMETOOLONG`: the name is too long.
/// - `EINVAL`: the name has characters other than ASCII letters and digits.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_socket_activation_name(
    h: HandleArg,
    socket_name: CStrArg,
) -> c_int {
    entry!(h, |h| {
        let name = socket_name.get("socket_name")?;
        h.set_socket_activation_name(name.to_bytes()).map(|()| 0)
    })
}

/// Returns the name of the socket passed under socket activation.
///
/// See `nbd_set_socket_activation_name`; the empty string if none was set.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_socket_activation_name(h: HandleArg) -> MallocStr {
    entry!(h, |h| malloc_c_string(
        h.socket_activation_name().as_bytes()
    ),)
}

/// Returns the process id of the server subprocess.
///
/// The subprocess is the server started by `nbd_connect_command` or
/// `nbd_connect_systemd_socket_activation`.
///
/// # Return value
/// The process id, or -1 on error.
///
/// # Errors
/// - `ESRCH`: the handle has no subprocess.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_subprocess_pid(h: HandleArg) -> i64 {
    entry!(h, |h| {
        h.subprocess_pid()
            .map(i64::from)
            .ok_or_else(|| crate::Error::new(libc::ESRCH, "no subprocess exists"))
    })
}

/// Sends a signal to the server subprocess.
///
/// Sends `signum`, or SIGTERM if `signum` is 0, to the server started by
/// `nbd_connect_command` or `nbd_connect_systemd_socket_activation`. The
/// subprocess is still reaped when the handle is closed.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `ESRCH`: the handle has no subprocess.
/// - `EINVAL`: `signum` is negative.
#[no_mangle]
pub unsafe extern "C" fn nbd_kill_subprocess(h: HandleArg, signum: c_int) -> c_int {
    entry!(h, |h| { h.kill_subprocess(signum).map(|()| 0) })
}
