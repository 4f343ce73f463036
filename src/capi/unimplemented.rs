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

use std::ffi::{c_char, c_int, c_uint, c_void};
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

/// Installs a function that receives the handle's debug messages.
#[no_mangle]
pub extern "C" fn nbd_set_debug_callback(
    h: *mut nbd_handle,
    debug_callback: nbd_debug_callback,
) -> c_int {
    release(debug_callback);
    not_implemented("nbd_set_debug_callback", -1)
}

/// Removes the debug message function, if one is installed.
#[no_mangle]
pub extern "C" fn nbd_clear_debug_callback(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_clear_debug_callback", -1)
}

/// Chooses whether to ask the server for its block size limits.
#[no_mangle]
pub extern "C" fn nbd_set_request_block_size(h: *mut nbd_handle, request: bool) -> c_int {
    not_implemented("nbd_set_request_block_size", -1)
}

/// Whether the server will be asked for its block size limits.
#[no_mangle]
pub extern "C" fn nbd_get_request_block_size(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_request_block_size", -1)
}

/// Chooses whether to ask the server for the export's name and description.
#[no_mangle]
pub extern "C" fn nbd_set_full_info(h: *mut nbd_handle, request: bool) -> c_int {
    not_implemented("nbd_set_full_info", -1)
}

/// Whether the server will be asked for the export's name and description.
#[no_mangle]
pub extern "C" fn nbd_get_full_info(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_full_info", -1)
}

/// The export name the server reported; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_canonical_export_name(h: *mut nbd_handle) -> *mut c_char {
    not_implemented("nbd_get_canonical_export_name", ptr::null_mut())
}

/// The export description the server reported; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_export_description(h: *mut nbd_handle) -> *mut c_char {
    not_implemented("nbd_get_export_description", ptr::null_mut())
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

/// Sets which handshake flags the client may use (`LIBNBD_HANDSHAKE_FLAG_*`).
#[no_mangle]
pub extern "C" fn nbd_set_handshake_flags(h: *mut nbd_handle, flags: u32) -> c_int {
    not_implemented("nbd_set_handshake_flags", -1)
}

/// The handshake flags in use (`LIBNBD_HANDSHAKE_FLAG_*`).
#[no_mangle]
pub extern "C" fn nbd_get_handshake_flags(h: *mut nbd_handle) -> u32 {
    not_implemented("nbd_get_handshake_flags", 0)
}

/// Chooses whether read buffers are zeroed before a read.
#[no_mangle]
pub extern "C" fn nbd_set_pread_initialize(h: *mut nbd_handle, request: bool) -> c_int {
    not_implemented("nbd_set_pread_initialize", -1)
}

/// Whether read buffers are zeroed before a read.
#[no_mangle]
pub extern "C" fn nbd_get_pread_initialize(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_pread_initialize", -1)
}

/// Sets which client-side checks are made before sending (`LIBNBD_STRICT_*`).
#[no_mangle]
pub extern "C" fn nbd_set_strict_mode(h: *mut nbd_handle, flags: u32) -> c_int {
    not_implemented("nbd_set_strict_mode", -1)
}

/// The client-side checks in force (`LIBNBD_STRICT_*`).
#[no_mangle]
pub extern "C" fn nbd_get_strict_mode(h: *mut nbd_handle) -> u32 {
    not_implemented("nbd_get_strict_mode", 0)
}

/// Chooses whether connecting stops in negotiation for manual `nbd_opt_*` calls.
#[no_mangle]
pub extern "C" fn nbd_set_opt_mode(h: *mut nbd_handle, enable: bool) -> c_int {
    not_implemented("nbd_set_opt_mode", -1)
}

/// Whether connecting stops in negotiation for manual `nbd_opt_*` calls.
#[no_mangle]
pub extern "C" fn nbd_get_opt_mode(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_opt_mode", -1)
}

/// Ends negotiation and enters transmission with the chosen export.
#[no_mangle]
pub extern "C" fn nbd_opt_go(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_go", -1)
}

/// Ends negotiation and closes the connection.
#[no_mangle]
pub extern "C" fn nbd_opt_abort(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_abort", -1)
}

/// Asks the server for its exports, calling `list_callback` for each.
#[no_mangle]
pub extern "C" fn nbd_opt_list(h: *mut nbd_handle, list_callback: nbd_list_callback) -> c_int {
    release(list_callback);
    not_implemented("nbd_opt_list", -1)
}

/// Asks the server about the chosen export without leaving negotiation.
#[no_mangle]
pub extern "C" fn nbd_opt_info(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_info", -1)
}

/// Asks the server which requested metadata contexts it has.
#[no_mangle]
pub extern "C" fn nbd_opt_list_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
) -> c_int {
    release(context_callback);
    not_implemented("nbd_opt_list_meta_context", -1)
}

/// Adds a metadata context to request when connecting.
#[no_mangle]
pub extern "C" fn nbd_add_meta_context(h: *mut nbd_handle, name: *const c_char) -> c_int {
    not_implemented("nbd_add_meta_context", -1)
}

/// How many metadata contexts will be requested.
#[no_mangle]
pub extern "C" fn nbd_get_nr_meta_contexts(h: *mut nbd_handle) -> libc::ssize_t {
    not_implemented("nbd_get_nr_meta_contexts", -1)
}

/// The `i`th metadata context to be requested; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_meta_context(h: *mut nbd_handle, i: usize) -> *mut c_char {
    not_implemented("nbd_get_meta_context", ptr::null_mut())
}

/// Forgets all metadata contexts added so far.
#[no_mangle]
pub extern "C" fn nbd_clear_meta_contexts(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_clear_meta_contexts", -1)
}

/// Sets which transports a URI may name (`LIBNBD_ALLOW_TRANSPORT_*`).
#[no_mangle]
pub extern "C" fn nbd_set_uri_allow_transports(h: *mut nbd_handle, mask: u32) -> c_int {
    not_implemented("nbd_set_uri_allow_transports", -1)
}

/// Sets whether a URI may ask for TLS (a `LIBNBD_TLS_*` value).
#[no_mangle]
pub extern "C" fn nbd_set_uri_allow_tls(h: *mut nbd_handle, tls: c_int) -> c_int {
    not_implemented("nbd_set_uri_allow_tls", -1)
}

/// Chooses whether a URI may read local files.
#[no_mangle]
pub extern "C" fn nbd_set_uri_allow_local_file(h: *mut nbd_handle, allow: bool) -> c_int {
    not_implemented("nbd_set_uri_allow_local_file", -1)
}

/// Connects to the server an NBD URI names.
#[no_mangle]
pub extern "C" fn nbd_connect_uri(h: *mut nbd_handle, uri: *const c_char) -> c_int {
    not_implemented("nbd_connect_uri", -1)
}

/// Connects to a server on a Unix domain socket.
#[no_mangle]
pub extern "C" fn nbd_connect_unix(h: *mut nbd_handle, unixsocket: *const c_char) -> c_int {
    not_implemented("nbd_connect_unix", -1)
}

/// Connects to a server over AF_VSOCK.
#[no_mangle]
pub extern "C" fn nbd_connect_vsock(h: *mut nbd_handle, cid: u32, port: u32) -> c_int {
    not_implemented("nbd_connect_vsock", -1)
}

/// Connects to a server over TCP.
#[no_mangle]
pub extern "C" fn nbd_connect_tcp(
    h: *mut nbd_handle,
    hostname: *const c_char,
    port: *const c_char,
) -> c_int {
    not_implemented("nbd_connect_tcp", -1)
}

/// Connects over a socket the caller has already connected.
#[no_mangle]
pub extern "C" fn nbd_connect_socket(h: *mut nbd_handle, sock: c_int) -> c_int {
    not_implemented("nbd_connect_socket", -1)
}

/// Runs a server command with systemd socket activation and connects to it.
#[no_mangle]
pub extern "C" fn nbd_connect_systemd_socket_activation(
    h: *mut nbd_handle,
    argv: *mut *mut c_char,
) -> c_int {
    not_implemented("nbd_connect_systemd_socket_activation", -1)
}

/// Whether the server says the export is on rotating media.
#[no_mangle]
pub extern "C" fn nbd_is_rotational(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_is_rotational", -1)
}

/// Whether the server supports fast zeroing.
#[no_mangle]
pub extern "C" fn nbd_can_fast_zero(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_can_fast_zero", -1)
}

/// Whether the server supports the don't-fragment read flag.
#[no_mangle]
pub extern "C" fn nbd_can_df(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_can_df", -1)
}

/// Whether the server agreed to the named metadata context.
#[no_mangle]
pub extern "C" fn nbd_can_meta_context(h: *mut nbd_handle, metacontext: *const c_char) -> c_int {
    not_implemented("nbd_can_meta_context", -1)
}

/// One of the server's block size limits (a `LIBNBD_SIZE_*` value).
#[no_mangle]
pub extern "C" fn nbd_get_block_size(h: *mut nbd_handle, size_type: c_int) -> i64 {
    not_implemented("nbd_get_block_size", -1)
}

/// Reads from the export, calling `chunk_callback` for each reply chunk.
#[no_mangle]
pub extern "C" fn nbd_pread_structured(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    chunk_callback: nbd_chunk_callback,
    flags: u32,
) -> c_int {
    release(chunk_callback);
    not_implemented("nbd_pread_structured", -1)
}

/// Asks for the status of a range, calling `extent_callback` with 32-bit extents.
#[no_mangle]
pub extern "C" fn nbd_block_status(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent_callback: nbd_extent_callback,
    flags: u32,
) -> c_int {
    release(extent_callback);
    not_implemented("nbd_block_status", -1)
}

/// Waits for and handles activity on the connection.
#[no_mangle]
pub extern "C" fn nbd_poll(h: *mut nbd_handle, timeout: c_int) -> c_int {
    not_implemented("nbd_poll", -1)
}

/// Starts connecting to a socket address.
#[no_mangle]
pub extern "C" fn nbd_aio_connect(
    h: *mut nbd_handle,
    addr: *const libc::sockaddr,
    addrlen: libc::socklen_t,
) -> c_int {
    not_implemented("nbd_aio_connect", -1)
}

/// Starts connecting to the server an NBD URI names.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_uri(h: *mut nbd_handle, uri: *const c_char) -> c_int {
    not_implemented("nbd_aio_connect_uri", -1)
}

/// Starts connecting to a server on a Unix domain socket.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_unix(h: *mut nbd_handle, unixsocket: *const c_char) -> c_int {
    not_implemented("nbd_aio_connect_unix", -1)
}

/// Starts connecting to a server over AF_VSOCK.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_vsock(h: *mut nbd_handle, cid: u32, port: u32) -> c_int {
    not_implemented("nbd_aio_connect_vsock", -1)
}

/// Starts connecting to a server over TCP.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_tcp(
    h: *mut nbd_handle,
    hostname: *const c_char,
    port: *const c_char,
) -> c_int {
    not_implemented("nbd_aio_connect_tcp", -1)
}

/// Starts a connection over a socket the caller has already connected.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_socket(h: *mut nbd_handle, sock: c_int) -> c_int {
    not_implemented("nbd_aio_connect_socket", -1)
}

/// Starts a server command and begins connecting to it over stdin/stdout.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_command(h: *mut nbd_handle, argv: *mut *mut c_char) -> c_int {
    not_implemented("nbd_aio_connect_command", -1)
}

/// Starts a server command with systemd socket activation and begins connecting.
#[no_mangle]
pub extern "C" fn nbd_aio_connect_systemd_socket_activation(
    h: *mut nbd_handle,
    argv: *mut *mut c_char,
) -> c_int {
    not_implemented("nbd_aio_connect_systemd_socket_activation", -1)
}

/// Starts ending negotiation and entering transmission.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_go(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(completion_callback);
    not_implemented("nbd_aio_opt_go", -1)
}

/// Starts ending negotiation and closing the connection.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_abort(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_aio_opt_abort", -1)
}

/// Starts asking the server for its exports.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_list(
    h: *mut nbd_handle,
    list_callback: nbd_list_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(list_callback);
    release(completion_callback);
    not_implemented("nbd_aio_opt_list", -1)
}

/// Starts asking the server about the chosen export.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_info(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(completion_callback);
    not_implemented("nbd_aio_opt_info", -1)
}

/// Starts asking the server which requested metadata contexts it has.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_list_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(context_callback);
    release(completion_callback);
    not_implemented("nbd_aio_opt_list_meta_context", -1)
}

/// Starts a read; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_pread(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(completion_callback);
    not_implemented("nbd_aio_pread", -1)
}

/// Starts a read with a callback per reply chunk; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_pread_structured(
    h: *mut nbd_handle,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    chunk_callback: nbd_chunk_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(chunk_callback);
    release(completion_callback);
    not_implemented("nbd_aio_pread_structured", -1)
}

/// Starts a write; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_pwrite(
    h: *mut nbd_handle,
    buf: *const c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(completion_callback);
    not_implemented("nbd_aio_pwrite", -1)
}

/// Starts a clean disconnect from the server.
#[no_mangle]
pub extern "C" fn nbd_aio_disconnect(h: *mut nbd_handle, flags: u32) -> c_int {
    not_implemented("nbd_aio_disconnect", -1)
}

/// Starts a flush; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_flush(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(completion_callback);
    not_implemented("nbd_aio_flush", -1)
}

/// Starts a trim; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_trim(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(completion_callback);
    not_implemented("nbd_aio_trim", -1)
}

/// Starts a cache (prefetch) request; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_cache(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(completion_callback);
    not_implemented("nbd_aio_cache", -1)
}

/// Starts a zeroing write; returns the command's cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_zero(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(completion_callback);
    not_implemented("nbd_aio_zero", -1)
}

/// Starts a block status request with 32-bit extents; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_block_status(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent_callback: nbd_extent_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(extent_callback);
    release(completion_callback);
    not_implemented("nbd_aio_block_status", -1)
}

/// The file descriptor to poll for this connection.
#[no_mangle]
pub extern "C" fn nbd_aio_get_fd(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_aio_get_fd", -1)
}

/// Which directions to poll for (`LIBNBD_AIO_DIRECTION_*`).
#[no_mangle]
pub extern "C" fn nbd_aio_get_direction(h: *mut nbd_handle) -> c_uint {
    not_implemented("nbd_aio_get_direction", 0)
}

/// Tells the handle its socket is readable.
#[no_mangle]
pub extern "C" fn nbd_aio_notify_read(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_aio_notify_read", -1)
}

/// Tells the handle its socket is writable.
#[no_mangle]
pub extern "C" fn nbd_aio_notify_write(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_aio_notify_write", -1)
}

/// Whether the command with this cookie has completed, retiring it if so.
#[no_mangle]
pub extern "C" fn nbd_aio_command_completed(h: *mut nbd_handle, cookie: u64) -> c_int {
    not_implemented("nbd_aio_command_completed", -1)
}

/// The cookie of a completed command that can be retired, if any.
#[no_mangle]
pub extern "C" fn nbd_aio_peek_command_completed(h: *mut nbd_handle) -> i64 {
    not_implemented("nbd_aio_peek_command_completed", -1)
}

/// How many commands are in flight.
#[no_mangle]
pub extern "C" fn nbd_aio_in_flight(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_aio_in_flight", -1)
}

/// Whether this library was built with TLS support.
#[no_mangle]
pub extern "C" fn nbd_supports_tls(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_supports_tls", 0)
}

/// Whether this library was built with NBD URI support.
#[no_mangle]
pub extern "C" fn nbd_supports_uri(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_supports_uri", 0)
}

/// An NBD URI for the current connection; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_uri(h: *mut nbd_handle) -> *mut c_char {
    not_implemented("nbd_get_uri", ptr::null_mut())
}

/// How many bytes have been sent on the connection.
#[no_mangle]
pub extern "C" fn nbd_stats_bytes_sent(h: *mut nbd_handle) -> u64 {
    not_implemented("nbd_stats_bytes_sent", 0)
}

/// How many messages have been sent on the connection.
#[no_mangle]
pub extern "C" fn nbd_stats_chunks_sent(h: *mut nbd_handle) -> u64 {
    not_implemented("nbd_stats_chunks_sent", 0)
}

/// How many bytes have been received on the connection.
#[no_mangle]
pub extern "C" fn nbd_stats_bytes_received(h: *mut nbd_handle) -> u64 {
    not_implemented("nbd_stats_bytes_received", 0)
}

/// How many messages have been received on the connection.
#[no_mangle]
pub extern "C" fn nbd_stats_chunks_received(h: *mut nbd_handle) -> u64 {
    not_implemented("nbd_stats_chunks_received", 0)
}

/// Chooses whether metadata contexts are set during negotiation.
#[no_mangle]
pub extern "C" fn nbd_set_request_meta_context(h: *mut nbd_handle, request: bool) -> c_int {
    not_implemented("nbd_set_request_meta_context", -1)
}

/// Whether metadata contexts will be set during negotiation.
#[no_mangle]
pub extern "C" fn nbd_get_request_meta_context(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_request_meta_context", -1)
}

/// Asks the server to switch the connection to TLS.
#[no_mangle]
pub extern "C" fn nbd_opt_starttls(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_starttls", -1)
}

/// Asks the server to use structured replies.
#[no_mangle]
pub extern "C" fn nbd_opt_structured_reply(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_structured_reply", -1)
}

/// Asks the server which of `queries` it has as metadata contexts.
#[no_mangle]
pub extern "C" fn nbd_opt_list_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
) -> c_int {
    release(context_callback);
    not_implemented("nbd_opt_list_meta_context_queries", -1)
}

/// Asks the server to use the requested metadata contexts.
#[no_mangle]
pub extern "C" fn nbd_opt_set_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
) -> c_int {
    release(context_callback);
    not_implemented("nbd_opt_set_meta_context", -1)
}

/// Asks the server to use the metadata contexts in `queries`.
#[no_mangle]
pub extern "C" fn nbd_opt_set_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
) -> c_int {
    release(context_callback);
    not_implemented("nbd_opt_set_meta_context_queries", -1)
}

/// Sets the socket name a socket-activated server is told.
#[no_mangle]
pub extern "C" fn nbd_set_socket_activation_name(
    h: *mut nbd_handle,
    socket_name: *const c_char,
) -> c_int {
    not_implemented("nbd_set_socket_activation_name", -1)
}

/// The socket name a socket-activated server is told; the caller frees it.
#[no_mangle]
pub extern "C" fn nbd_get_socket_activation_name(h: *mut nbd_handle) -> *mut c_char {
    not_implemented("nbd_get_socket_activation_name", ptr::null_mut())
}

/// Like `nbd_poll`, also waking when `fd` becomes readable.
#[no_mangle]
pub extern "C" fn nbd_poll2(h: *mut nbd_handle, fd: c_int, timeout: c_int) -> c_int {
    not_implemented("nbd_poll2", -1)
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

/// Starts asking the server to use structured replies.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_structured_reply(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(completion_callback);
    not_implemented("nbd_aio_opt_structured_reply", -1)
}

/// Starts asking the server which of `queries` it has.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_list_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(context_callback);
    release(completion_callback);
    not_implemented("nbd_aio_opt_list_meta_context_queries", -1)
}

/// Starts asking the server to use the requested metadata contexts.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_set_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(context_callback);
    release(completion_callback);
    not_implemented("nbd_aio_opt_set_meta_context", -1)
}

/// Starts asking the server to use the metadata contexts in `queries`.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_set_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(context_callback);
    release(completion_callback);
    not_implemented("nbd_aio_opt_set_meta_context_queries", -1)
}

/// Whether this library was built with AF_VSOCK support.
#[no_mangle]
pub extern "C" fn nbd_supports_vsock(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_supports_vsock", 0)
}

/// Chooses whether to ask the server for extended headers.
#[no_mangle]
pub extern "C" fn nbd_set_request_extended_headers(h: *mut nbd_handle, request: bool) -> c_int {
    not_implemented("nbd_set_request_extended_headers", -1)
}

/// Whether the server will be asked for extended headers.
#[no_mangle]
pub extern "C" fn nbd_get_request_extended_headers(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_request_extended_headers", -1)
}

/// Whether the connection uses extended headers.
#[no_mangle]
pub extern "C" fn nbd_get_extended_headers_negotiated(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_get_extended_headers_negotiated", -1)
}

/// Asks the server to use extended headers.
#[no_mangle]
pub extern "C" fn nbd_opt_extended_headers(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_opt_extended_headers", -1)
}

/// Whether the server accepts filtered block status requests.
#[no_mangle]
pub extern "C" fn nbd_can_block_status_payload(h: *mut nbd_handle) -> c_int {
    not_implemented("nbd_can_block_status_payload", -1)
}

/// Asks for the status of a range, calling `extent64_callback` with 64-bit extents.
#[no_mangle]
pub extern "C" fn nbd_block_status_64(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent64_callback: nbd_extent64_callback,
    flags: u32,
) -> c_int {
    release(extent64_callback);
    not_implemented("nbd_block_status_64", -1)
}

/// Like `nbd_block_status_64`, limited to the metadata contexts in `contexts`.
#[no_mangle]
pub extern "C" fn nbd_block_status_filter(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    contexts: *mut *mut c_char,
    extent64_callback: nbd_extent64_callback,
    flags: u32,
) -> c_int {
    release(extent64_callback);
    not_implemented("nbd_block_status_filter", -1)
}

/// Starts asking the server to use extended headers.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_extended_headers(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    release(completion_callback);
    not_implemented("nbd_aio_opt_extended_headers", -1)
}

/// Starts a block status request with 64-bit extents; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_block_status_64(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    extent64_callback: nbd_extent64_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(extent64_callback);
    release(completion_callback);
    not_implemented("nbd_aio_block_status_64", -1)
}

/// Starts a block status request limited to `contexts`; returns the cookie.
#[no_mangle]
pub extern "C" fn nbd_aio_block_status_filter(
    h: *mut nbd_handle,
    count: u64,
    offset: u64,
    contexts: *mut *mut c_char,
    extent64_callback: nbd_extent64_callback,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    release(extent64_callback);
    release(completion_callback);
    not_implemented("nbd_aio_block_status_filter", -1)
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

/// Whether `uri` looks like an NBD URI.
#[no_mangle]
pub extern "C" fn nbd_is_uri(h: *mut nbd_handle, uri: *const c_char) -> c_int {
    not_implemented("nbd_is_uri", -1)
}
