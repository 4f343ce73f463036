//! Handshake and strictness settings, export introspection and traffic
//! statistics.

use std::ffi::c_int;

use super::{entry, malloc_c_string, HandleArg, MallocStr};
use crate::{Error, Handle, Result, Size};

/// libnbd's ENOTSUP error when the server did not send `what`.
fn string_result(s: Result<Option<Vec<u8>>>, what: &str) -> Result<MallocStr> {
    match s? {
        Some(s) => malloc_c_string(&s),
        None => Err(Error::new(
            libc::ENOTSUP,
            format!("server did not advertise {what}"),
        )),
    }
}

/// Limits the handshake flags the client uses.
///
/// `flags` is a mask of `LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE` and
/// `LIBNBD_HANDSHAKE_FLAG_NO_ZEROES`: the client only uses those of the flags
/// the server offers that are in the mask. Both are used by default; clearing
/// them is mostly useful to test servers.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has bits outside `LIBNBD_HANDSHAKE_FLAG_MASK`.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_handshake_flags(h: HandleArg, flags: u32) -> c_int {
    entry!(h, |h| {
        h.set_handshake_flags(crate::HandshakeFlag::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Returns the handshake flags.
///
/// Before connecting, the flags the client will use
/// (`nbd_set_handshake_flags`); after the handshake, those agreed with the
/// server.
///
/// # Return value
/// A mask of `LIBNBD_HANDSHAKE_FLAG_*` bits. This call does not fail on a valid
/// handle; with NULL `h`, it returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_handshake_flags(h: HandleArg) -> u32 {
    entry!(h, |h| Ok(h.handshake_flags().bits()))
}

/// Chooses which checks the client makes before sending a command.
///
/// `flags` is a mask of `LIBNBD_STRICT_*` bits. With a bit set, the client
/// refuses a command the server would not accept, without sending it (for
/// example `LIBNBD_STRICT_COMMANDS`: a command the server did not advertise;
/// `LIBNBD_STRICT_BOUNDS`: a request beyond the end of the export). With the
/// bit clear, the command is sent and the server decides.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Errors
/// - `EINVAL`: `flags` has bits outside `LIBNBD_STRICT_MASK`.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_strict_mode(h: HandleArg, flags: u32) -> c_int {
    entry!(h, |h| {
        h.set_strict_mode(crate::Strict::from_bits_retain(flags))
            .map(|()| 0)
    })
}

/// Returns the checks the client makes before sending a command.
///
/// See `nbd_set_strict_mode`.
///
/// # Return value
/// A mask of `LIBNBD_STRICT_*` bits. This call does not fail on a valid handle;
/// with NULL `h`, it returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_strict_mode(h: HandleArg) -> u32 {
    entry!(h, |h| Ok(h.strict_mode().bits()))
}

/// Sets whether read buffers are zeroed before each read.
///
/// With `request` true, the default, the buffer of a read is zeroed before the
/// command is sent, so whatever happens, a program never sees what the buffer
/// held before, even if it ignores an error. Turning this off saves that work
/// for programs that always check the result of their reads.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_pread_initialize(h: HandleArg, request: bool) -> c_int {
    entry!(h, |h| { h.set_pread_initialize(request).map(|()| 0) })
}

/// Returns whether read buffers are zeroed before each read.
///
/// This is the value set with `nbd_set_pread_initialize`, or the default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_pread_initialize(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.pread_initialize())) })
}

/// Sets whether the handshake asks the server for its block size constraints.
///
/// When asked (the default), the server may tell the minimum, preferred and
/// maximum block sizes of the export, which `nbd_get_block_size` returns.
///
/// The setting is read back with `nbd_get_request_block_size`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created, or negotiating (`nbd_aio_is_negotiating`)
/// in option mode.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_request_block_size(h: HandleArg, request: bool) -> c_int {
    entry!(h, |h| { h.set_request_block_size(request).map(|()| 0) })
}

/// Returns whether the handshake asks for block size constraints.
///
/// This is the value set with `nbd_set_request_block_size`, or the default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_request_block_size(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.request_block_size())) })
}

/// Sets whether the handshake asks for the export's name and description.
///
/// When asked, the server may tell the export's canonical name and a
/// description of it, which `nbd_get_canonical_export_name` and
/// `nbd_get_export_description` return. Not asked by default.
///
/// The setting is read back with `nbd_get_full_info`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created, or negotiating (`nbd_aio_is_negotiating`)
/// in option mode.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_full_info(h: HandleArg, request: bool) -> c_int {
    entry!(h, |h| { h.set_full_info(request).map(|()| 0) })
}

/// Returns whether the handshake asks for the export's name and description.
///
/// This is the value set with `nbd_set_full_info`, or the default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_full_info(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(c_int::from(h.full_info())) })
}

/// Returns one of the export's block size constraints.
///
/// `size_type` chooses which:
/// - `LIBNBD_SIZE_MINIMUM`: the smallest request the server accepts, and the
///   alignment of requests;
/// - `LIBNBD_SIZE_PREFERRED`: the size of requests the server handles best;
/// - `LIBNBD_SIZE_MAXIMUM`: the largest request the server accepts;
/// - `LIBNBD_SIZE_PAYLOAD`: the largest read or write this client sends in one
///   request, never 0.
///
/// The server tells the first three during the handshake, if asked (see
/// `nbd_set_request_block_size`).
///
/// # Return value
/// The size in bytes, 0 if the server did not tell it, or -1 on error.
///
/// # Errors
/// - `EINVAL`: `size_type` is not a `LIBNBD_SIZE_*` value, or the server has
///   not sent the export's details yet (while negotiating, before
///   `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_block_size(h: HandleArg, size_type: c_int) -> i64 {
    entry!(h, |h| match Size::from_raw(size_type) {
        Some(which) => h.block_size(which).map(|v| v.map_or(0, |v| v as i64)),
        // libnbd checks the state first, then the value.
        None => {
            h.check_info_state()?;
            Err(Error::new(
                libc::EINVAL,
                format!("size_type: invalid value for parameter: {size_type}"),
            ))
        }
    })
}

/// Returns the export's canonical name, as the server calls it.
///
/// Servers only send it when asked: see `nbd_set_full_info`.
///
/// # Errors
/// - `ENOTSUP`: the server did not send a name.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_canonical_export_name(h: HandleArg) -> MallocStr {
    entry!(h, |h| string_result(
        h.canonical_export_name(),
        "a canonical name"
    ),)
}

/// Returns the description of the export the server sent.
///
/// Servers only send it when asked: see `nbd_set_full_info`.
///
/// # Errors
/// - `ENOTSUP`: the server did not send a description.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_export_description(h: HandleArg) -> MallocStr {
    entry!(h, |h| {
        string_result(h.export_description(), "a description")
    })
}

/// Returns whether the export is on a rotational medium.
///
/// On a rotational medium (a spinning disk) seeks are costly, so reading and
/// writing in order pays.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_is_rotational(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::is_rotational(h).map(c_int::from))
}

/// Returns whether the server supports the don't-fragment flag.
///
/// The flag is `LIBNBD_CMD_FLAG_DF` of `nbd_pread_structured`: the server then
/// answers with one data chunk.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_df(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_df(h).map(c_int::from))
}

/// Returns whether the server supports the fast-zero flag.
///
/// The flag is `LIBNBD_CMD_FLAG_FAST_ZERO` of `nbd_zero`: the server then fails
/// the request rather than zero slowly.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_fast_zero(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_fast_zero(h).map(c_int::from))
}

/// Returns whether the server supports filtered block status.
///
/// Filtered block status is `nbd_block_status_filter` (the
/// `LIBNBD_CMD_FLAG_PAYLOAD_LEN` flag). It needs extended headers, so without
/// them the answer is 0.
///
/// The server says so in the export flags of the handshake. Look before relying
/// on it: a command the server does not support fails, and the strict mode
/// (`nbd_set_strict_mode`) checks it client-side.
///
/// # Return value
/// 1 if it does, 0 if it does not, -1 on error.
///
/// # Errors
/// - `EINVAL`: the server has not sent the export flags yet (while negotiating,
///   before `nbd_opt_info`).
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_can_block_status_payload(h: HandleArg) -> c_int {
    entry!(h, |h| Handle::can_block_status_payload(h).map(c_int::from))
}

/// Returns how many bytes the handle has sent to the server.
///
/// All bytes count: the handshake, requests and the data of writes.
///
/// # Return value
/// The count. This call does not fail on a valid handle; with NULL `h`, it
/// returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_stats_bytes_sent(h: HandleArg) -> u64 {
    entry!(h, |h| Ok(h.stats_bytes_sent()))
}

/// Returns how many protocol units the handle has sent.
///
/// A unit is one option of the handshake or one request.
///
/// # Return value
/// The count. This call does not fail on a valid handle; with NULL `h`, it
/// returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_stats_chunks_sent(h: HandleArg) -> u64 {
    entry!(h, |h| Ok(h.stats_chunks_sent()))
}

/// Returns how many bytes the handle has received from the server.
///
/// All bytes count: the handshake, replies and the data of reads.
///
/// # Return value
/// The count. This call does not fail on a valid handle; with NULL `h`, it
/// returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_stats_bytes_received(h: HandleArg) -> u64 {
    entry!(h, |h| { Ok(h.stats_bytes_received()) })
}

/// Returns how many protocol units the handle has received.
///
/// A unit is the greeting, one option reply, one simple reply or one chunk of a
/// structured reply.
///
/// # Return value
/// The count. This call does not fail on a valid handle; with NULL `h`, it
/// returns 0 and records an error.
#[no_mangle]
pub unsafe extern "C" fn nbd_stats_chunks_received(h: HandleArg) -> u64 {
    entry!(h, |h| { Ok(h.stats_chunks_received()) })
}
