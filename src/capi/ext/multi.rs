//! Multi-connection I/O for C (beyond libnbd): `struct rnbd_multi_conn`,
//! a [`MultiConn`] behind an opaque pointer, with calls named
//! `rnbd_multi_conn_*` in `include/libnbd-ext.h`.
//!
//! Errors follow libnbd's convention, as for a handle: -1 (or NULL), with
//! the thread's message (starting with the call's name) and errno for
//! `nbd_get_error` and `nbd_get_errno`.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use super::super::aio::completion;
use super::super::types::nbd_completion_callback;
use super::super::{c_str_arg, check_nonnull, entry, nbd_get_errno, nbd_get_error, nbd_handle};
use crate::multiconn::MAX_CONNECTIONS;
use crate::{CmdFlag, Error, Handle, MultiConn, MultiCookie, Result, Shutdown};

/// Several connections to one export used as one handle: opaque to C,
/// made by `rnbd_multi_conn_connect_uri` or `rnbd_multi_conn_connect`,
/// freed by `rnbd_multi_conn_close`.
pub struct rnbd_multi_conn {
    inner: MultiConn,
}

/// Borrows the pool behind `mc`, failing with EFAULT when it is NULL.
///
/// # Safety
/// `mc` must be NULL or come from `rnbd_multi_conn_connect*` and not be
/// closed yet.
unsafe fn pool<'a>(mc: *const rnbd_multi_conn) -> Result<&'a MultiConn> {
    check_nonnull(mc, "mc")?;
    // SAFETY: non-NULL, and the caller promises a live pool.
    Ok(unsafe { &(*mc).inner })
}

/// A new pool for C.
fn boxed(inner: MultiConn) -> *mut rnbd_multi_conn {
    Box::into_raw(Box::new(rnbd_multi_conn { inner }))
}

/// A command of the pool as a C cookie: its cookie on its connection
/// times [`MAX_CONNECTIONS`], plus the connection's index.
fn to_c_cookie(c: MultiCookie) -> Result<i64> {
    (c.cookie as i64)
        .checked_mul(MAX_CONNECTIONS as i64)
        .and_then(|v| v.checked_add(c.connection as i64))
        .ok_or_else(|| Error::new(libc::EOVERFLOW, "cookie out of range"))
}

fn from_c_cookie(cookie: i64) -> Result<MultiCookie> {
    if cookie <= 0 {
        return Err(Error::new(libc::EINVAL, format!("invalid cookie {cookie}")));
    }
    let n = MAX_CONNECTIONS as i64;
    Ok(MultiCookie {
        connection: (cookie % n) as usize,
        cookie: (cookie / n) as u64,
    })
}

/// The error a connect function reported by returning NULL: this
/// thread's last libnbd error, as its failed call left it.
fn connect_fn_error(i: usize) -> Error {
    // SAFETY: both read this thread's error state; the message stays valid
    // until the next failing call of this thread, and is copied at once.
    let (msg, errno) = unsafe {
        let m = nbd_get_error();
        let msg = if m.is_null() {
            "no error was reported".to_string()
        } else {
            CStr::from_ptr(m).to_string_lossy().into_owned()
        };
        (msg, nbd_get_errno())
    };
    let errno = if errno == 0 { libc::EIO } else { errno };
    // The new message gets the strerror suffix again.
    let suffix = format!(": {}", crate::strerror(errno));
    let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
    Error::new(
        errno,
        format!("connect returned NULL for connection {i}: {msg}"),
    )
}

/// Opens up to `connections` connections (1 to 16) to the NBD URI `uri`
/// and returns them as one pool.
///
/// The pool has `connections` connections when the server advertises
/// multi-conn (`nbd_can_multi_conn`), else one. Reads and writes go whole
/// to the least-loaded connection; from 512 KiB up they are cut into
/// chunks sent at once over all connections. `rnbd_multi_conn_flush`
/// waits for the pool's writes in flight, then flushes once, which the
/// multi-conn rules make cover every connection.
///
/// There is no retry: when a connection dies the call that used it fails
/// with its error, and so does every later call on the pool (anything
/// written since the last successful flush may be lost); close it and
/// open a new one. Any number of threads may use one pool at once.
///
/// A request that goes whole to one connection is bounded by that
/// handle's timeout (`rnbd_set_timeout`, on the handles of
/// `rnbd_multi_conn_connect`) and by this thread's deadline
/// (`rnbd_set_thread_deadline`), as on a lone handle; a split one waits
/// until every chunk is answered, since the chunks point into the
/// caller's buffer.
///
/// # Return value
/// The pool, to free with `rnbd_multi_conn_close`; NULL on error.
///
/// # Errors
/// - `EINVAL`: `connections` is 0 or more than 16, or a connection does
///   not reach the same export as the first.
/// - Any error of `nbd_connect_uri`.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_connect_uri(
    connections: c_uint,
    uri: *const c_char,
) -> *mut rnbd_multi_conn {
    entry!(|| {
        // SAFETY: the caller passes a C string.
        let uri = unsafe { c_str_arg(uri, "uri") }?;
        let uri = uri
            .to_str()
            .map_err(|_| Error::new(libc::EINVAL, "uri: not valid UTF-8"))?;
        MultiConn::connect_uri(connections as usize, uri).map(boxed)
    })
}

/// Opens up to `connections` connections (1 to 16) made by the caller's
/// function, and returns them as one pool.
///
/// `connect(user_data, i)` must return a new handle from `nbd_create`,
/// connected (ready for commands) to the export, for `i` = 0, 1, ...; or
/// NULL after a libnbd call failed, whose error the pool then reports.
/// It is called once, then, if the server advertises multi-conn, once for
/// each further connection. It chooses the transport, TLS, meta contexts
/// and so on; every connection must reach the same export. The pool owns
/// each handle `connect` returns, from then on, even when this call fails:
/// the program must not use or close it. Otherwise as
/// `rnbd_multi_conn_connect_uri`.
///
/// # Return value
/// The pool, to free with `rnbd_multi_conn_close`; NULL on error.
///
/// # Errors
/// - `EFAULT`: `connect` is NULL.
/// - `EINVAL`: `connections` is 0 or more than 16, a returned handle is
///   not ready for commands, or it does not reach the same export as the
///   first.
/// - The error of the libnbd call that failed when `connect` returns NULL.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_connect(
    connections: c_uint,
    connect: Option<unsafe extern "C" fn(user_data: *mut c_void, index: c_uint) -> *mut nbd_handle>,
    user_data: *mut c_void,
) -> *mut rnbd_multi_conn {
    entry!(|| {
        let connect = connect.ok_or_else(|| super::super::null_error("connect"))?;
        MultiConn::connect(connections as usize, |i| {
            // SAFETY: the caller's function, with its own user_data.
            let h = unsafe { connect(user_data, i as c_uint) };
            if h.is_null() {
                return Err(connect_fn_error(i));
            }
            // SAFETY: a handle from nbd_create, whose ownership the caller
            // hands over (the documented contract).
            let h: Box<nbd_handle> = unsafe { Box::from_raw(h) };
            let nbd_handle { inner } = *h;
            Ok::<Handle, Error>(inner)
        })
        .map(boxed)
    })
}

/// Closes every connection of the pool and frees it. Commands still in
/// flight fail as on `nbd_close`. NULL is ignored.
///
/// # Errors
/// This call does not fail.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_close(mc: *mut rnbd_multi_conn) {
    if mc.is_null() {
        return;
    }
    entry!(|| {
        // SAFETY: mc came from rnbd_multi_conn_connect* and the caller
        // gives up its use.
        drop(unsafe { Box::from_raw(mc) });
        Ok(())
    })
}

/// Returns how many connections the pool has open: as many as asked for
/// when the server advertises multi-conn, else 1.
///
/// # Return value
/// The number of connections, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_connections(mc: *mut rnbd_multi_conn) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        Ok(mc.connections() as c_int)
    })
}

/// Returns the size of the export in bytes.
///
/// # Return value
/// The size, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_get_size(mc: *mut rnbd_multi_conn) -> i64 {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        Ok(mc.size() as i64)
    })
}

/// A query of the export's flags, answered by the first connection.
///
/// # Safety
/// `mc` must be NULL or a live pool.
unsafe fn flag(mc: *const rnbd_multi_conn, query: fn(&MultiConn) -> Result<bool>) -> Result<c_int> {
    // SAFETY: the caller's promise.
    let mc = unsafe { pool(mc) }?;
    query(mc).map(c_int::from)
}

/// Returns whether the export is read-only.
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_is_read_only(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::is_read_only) })
}

/// Returns whether the server supports flush.
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_can_flush(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::can_flush) })
}

/// Returns whether the server supports the FUA flag.
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_can_fua(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::can_fua) })
}

/// Returns whether the server supports trim.
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_can_trim(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::can_trim) })
}

/// Returns whether the server supports write-zeroes.
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_can_zero(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::can_zero) })
}

/// Returns whether the server supports cache (prefetch).
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_can_cache(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::can_cache) })
}

/// Returns whether the server advertises multi-conn (without it the
/// pool has one connection).
///
/// # Return value
/// 1 if true, 0 if false, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_can_multi_conn(mc: *mut rnbd_multi_conn) -> c_int {
    // SAFETY: mc is NULL or a live pool (the caller's promise).
    entry!(|| unsafe { flag(mc, MultiConn::can_multi_conn) })
}

/// Reads `count` bytes at `offset` into `buf`, as `nbd_pread` (same
/// flags); from 512 KiB up the read is split over all connections.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_pread(
    mc: *mut rnbd_multi_conn,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller passes `count` writable bytes at buf.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) };
        mc.pread(buf, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Writes `count` bytes from `buf` at `offset`, as `nbd_pwrite` (same
/// flags; FUA applies to each chunk); from 512 KiB up the write is split
/// over all connections, and the call returns once every chunk is written.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_pwrite(
    mc: *mut rnbd_multi_conn,
    buf: *const c_void,
    count: usize,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller passes `count` readable bytes at buf.
        let buf = unsafe { std::slice::from_raw_parts(buf as *const u8, count) };
        mc.pwrite(buf, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Makes durable every write of the pool that had finished before this
/// call or was still in flight when it was made: waits for those, then
/// sends one flush, which with multi-conn covers every connection.
/// Asynchronous writes (`rnbd_multi_conn_aio_pwrite`) are not waited for.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_flush(mc: *mut rnbd_multi_conn, flags: u32) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.flush(CmdFlag::from_bits_retain(flags)).map(|()| 0)
    })
}

/// Trims `count` bytes at `offset` on one connection, as `nbd_trim`.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_trim(
    mc: *mut rnbd_multi_conn,
    count: u64,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.trim(count, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Writes `count` zero bytes at `offset` on one connection, as
/// `nbd_zero`.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_zero(
    mc: *mut rnbd_multi_conn,
    count: u64,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.zero(count, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Asks the server to prefetch `count` bytes at `offset`, on one
/// connection, as `nbd_cache`.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_cache(
    mc: *mut rnbd_multi_conn,
    count: u64,
    offset: u64,
    flags: u32,
) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.cache(count, offset, CmdFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Shuts every connection down cleanly, after the commands already
/// issued, as `nbd_shutdown`; returns the first error. Later calls fail
/// as on a closed handle.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_shutdown(mc: *mut rnbd_multi_conn, flags: u32) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.shutdown(Shutdown::from_bits_retain(flags)).map(|()| 0)
    })
}

/// Starts reading `count` bytes at `offset` into `buf` on one connection
/// (round-robin), as `nbd_aio_pread`: not split, so `count` must fit one
/// command. `buf` must stay valid until the command is retired. Drive the
/// pool with `rnbd_multi_conn_poll`; retire the command with its
/// completion callback (returning 1) or `rnbd_multi_conn_aio_command_completed`.
///
/// # Return value
/// The command's cookie, positive and naming the connection too, or -1 on
/// error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_pread(
    mc: *mut rnbd_multi_conn,
    buf: *mut c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller keeps buf valid until the command retires.
        let c = unsafe {
            mc.aio_pread(
                buf.cast(),
                count,
                offset,
                completion,
                CmdFlag::from_bits_retain(flags),
            )
        }?;
        to_c_cookie(c)
    })
}

/// Starts writing `count` bytes from `buf` at `offset` on one connection
/// (round-robin), as `nbd_aio_pwrite`. `rnbd_multi_conn_flush` does not
/// wait for it: flush once the writes it must cover have completed.
///
/// # Return value
/// The command's cookie, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_pwrite(
    mc: *mut rnbd_multi_conn,
    buf: *const c_void,
    count: usize,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        check_nonnull(buf, "buf")?;
        // SAFETY: the caller keeps buf valid until the command retires.
        let c = unsafe {
            mc.aio_pwrite(
                buf.cast(),
                count,
                offset,
                completion,
                CmdFlag::from_bits_retain(flags),
            )
        }?;
        to_c_cookie(c)
    })
}

/// Starts a flush on one connection, as `nbd_aio_flush`: with multi-conn
/// it covers every write completed, on any connection, before it was
/// started.
///
/// # Return value
/// The command's cookie, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_flush(
    mc: *mut rnbd_multi_conn,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        to_c_cookie(mc.aio_flush(completion, CmdFlag::from_bits_retain(flags))?)
    })
}

/// Starts a trim of `count` bytes at `offset` on one connection
/// (round-robin), as `nbd_aio_trim`.
///
/// # Return value
/// The command's cookie, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_trim(
    mc: *mut rnbd_multi_conn,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        to_c_cookie(mc.aio_trim(count, offset, completion, CmdFlag::from_bits_retain(flags))?)
    })
}

/// Starts writing `count` zero bytes at `offset` on one connection
/// (round-robin), as `nbd_aio_zero`.
///
/// # Return value
/// The command's cookie, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_zero(
    mc: *mut rnbd_multi_conn,
    count: u64,
    offset: u64,
    completion_callback: nbd_completion_callback,
    flags: u32,
) -> i64 {
    let completion = completion(completion_callback);
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        to_c_cookie(mc.aio_zero(count, offset, completion, CmdFlag::from_bits_retain(flags))?)
    })
}

/// Returns whether the command `cookie` has finished, retiring it if so,
/// as `nbd_aio_command_completed`.
///
/// # Return value
/// 1 if it finished successfully (and is retired), 0 if it is still in
/// flight, -1 if it failed (and is retired) or on error.
///
/// # Errors
/// - `EINVAL`: `cookie` names no command of the pool.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_command_completed(
    mc: *mut rnbd_multi_conn,
    cookie: i64,
) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.aio_command_completed(from_c_cookie(cookie)?)
            .map(c_int::from)
    })
}

/// Returns how many commands are queued or awaiting replies, on all
/// connections together.
///
/// # Return value
/// The number of commands, or -1 on error.
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_aio_in_flight(mc: *mut rnbd_multi_conn) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        Ok(mc.aio_in_flight()?.min(c_int::MAX as usize) as c_int)
    })
}

/// Waits up to `timeout` milliseconds (-1: without limit) for any
/// connection's socket, then makes progress on those that are ready, as
/// `nbd_poll` does for one handle.
///
/// # Return value
/// 1 if a connection made progress, 0 on timeout, -1 on error (a
/// connection died: the pool fails from then on).
#[no_mangle]
pub unsafe extern "C" fn rnbd_multi_conn_poll(mc: *mut rnbd_multi_conn, timeout: c_int) -> c_int {
    entry!(|| {
        // SAFETY: mc is NULL or a live pool (the caller's promise).
        let mc = unsafe { pool(mc) }?;
        mc.poll(timeout)
    })
}
