//! Option mode: negotiating by hand before transmission.

use std::ffi::c_int;

use super::aio::completion;
use super::types::{nbd_completion_callback, nbd_context_callback, nbd_list_callback};
use super::{entry, null_error, CStrList, HandleArg};
use crate::{Context, List, Result};

/// Takes ownership of a required list callback; only a closure with
/// neither function nor free function is NULL (as in libnbd).
fn list(cb: nbd_list_callback) -> Result<List> {
    cb.into_core().ok_or_else(|| null_error("list"))
}

/// Takes ownership of a required context callback (as `list`).
fn context(cb: nbd_context_callback) -> Result<Context> {
    cb.into_core().ok_or_else(|| null_error("context"))
}

/// Reads a NULL-terminated `char **` list of strings (queries, contexts).
pub(super) fn queries(list: &CStrList, param: &str) -> Result<Vec<String>> {
    Ok(list
        .get(param)?
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect())
}

pub(super) fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Sets whether connecting stops to let the program negotiate.
///
/// With option mode on, connecting stops after the first steps of the
/// handshake, in the negotiating state (`nbd_aio_is_negotiating`), where the
/// program sends the options it wants with the `nbd_opt_*` calls: list the
/// exports (`nbd_opt_list`) or meta contexts, ask about an export
/// (`nbd_opt_info`), and finally choose one (`nbd_opt_go`) or give up
/// (`nbd_opt_abort`). Off by default.
///
/// The setting is read back with `nbd_get_opt_mode`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_opt_mode(h: HandleArg, enable: bool) -> c_int {
    entry!(h, |h| { h.set_opt_mode(enable).map(|()| 0) })
}

/// Returns whether connecting stops to let the program negotiate.
///
/// This is the value set with `nbd_set_opt_mode`, or the default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_opt_mode(h: HandleArg) -> c_int {
    entry!(h, |h| Ok(h.opt_mode() as c_int))
}

/// Ends negotiation and starts using the export.
///
/// Asks the server for the export named by `nbd_set_export_name` (with the meta
/// contexts, if `nbd_set_request_meta_context` is on) and, if the server
/// agrees, the handle is connected with the server. If the server refuses, the
/// handle stays negotiating, so the program can try another export.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_go(h: HandleArg) -> c_int {
    entry!(h, |h| h.opt_go().map(|()| 0))
}

/// Ends negotiation and the connection.
///
/// Tells the server the client is going, and closes the connection: the handle
/// is then closed (`nbd_aio_is_closed`).
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_abort(h: HandleArg) -> c_int {
    entry!(h, |h| h.opt_abort().map(|()| 0))
}

/// Asks about the export without starting to use it.
///
/// Asks the server about the export named by `nbd_set_export_name`. If the
/// server answers, the handle stays negotiating, and the calls that describe
/// the export (`nbd_get_size`, `nbd_is_read_only`, `nbd_can_meta_context`, ...)
/// answer for it.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_info(h: HandleArg) -> c_int {
    entry!(h, |h| h.opt_info().map(|()| 0))
}

/// Lists the server's exports.
///
/// `list_callback` is called for each export the server lists, with its name
/// and description.
///
/// # Return value
/// How many exports the server listed, or -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_list(h: HandleArg, list_callback: nbd_list_callback) -> c_int {
    let list = list(list_callback);
    entry!(h, |h| h.opt_list(list?))
}

/// Lists the meta contexts the server has for the export.
///
/// Asks the server which of the meta contexts added with `nbd_add_meta_context`
/// it has for the export named by `nbd_set_export_name`. `context_callback` is
/// called with the name of each context the server names in its reply. This
/// does not select any context: see `nbd_opt_set_meta_context`.
///
/// # Return value
/// How many contexts the server listed, or -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_list_meta_context(
    h: HandleArg,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    entry!(h, |h| { h.opt_list_meta_context(context?) })
}

/// Lists the meta contexts matching some queries.
///
/// As `nbd_opt_list_meta_context`, but asks about `queries`, a NULL-terminated
/// list of names or name prefixes (such as `"qemu:"`), instead of the contexts
/// added with `nbd_add_meta_context`.
///
/// # Return value
/// How many contexts the server listed, or -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_list_meta_context_queries(
    h: HandleArg,
    queries: CStrList,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    entry!(h, |h| {
        let context = context?;
        let q = self::queries(&queries, "queries")?;
        h.opt_list_meta_context_queries(&as_strs(&q), context)
    })
}

/// Selects the meta contexts to use.
///
/// Asks the server to select, for the export named by `nbd_set_export_name`,
/// the meta contexts added with `nbd_add_meta_context`. `context_callback` is
/// called with the name of each context the server names in its reply. The
/// selection is used by the next `nbd_opt_go`, which then need not ask again
/// (see `nbd_set_request_meta_context`).
///
/// # Return value
/// How many contexts the server selected, or -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_set_meta_context(
    h: HandleArg,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    entry!(h, |h| { h.opt_set_meta_context(context?) })
}

/// Selects the meta contexts matching some queries.
///
/// As `nbd_opt_set_meta_context`, but with `queries`, a NULL-terminated list of
/// names, instead of the contexts added with `nbd_add_meta_context`.
///
/// # Return value
/// How many contexts the server selected, or -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_set_meta_context_queries(
    h: HandleArg,
    queries: CStrList,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    entry!(h, |h| {
        let context = context?;
        let q = self::queries(&queries, "queries")?;
        h.opt_set_meta_context_queries(&as_strs(&q), context)
    })
}

/// Asks the server for structured replies.
///
/// Usually not needed: connecting asks for them (see
/// `nbd_set_request_structured_replies`).
///
/// # Return value
/// 1 if the server agreed, 0 if it refused, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_structured_reply(h: HandleArg) -> c_int {
    entry!(h, |h| { h.opt_structured_reply().map(c_int::from) })
}

/// Asks the server for extended headers.
///
/// Extended headers carry 64 bit lengths, for requests larger than 4 GiB and
/// for `nbd_block_status_filter`. Usually not needed: connecting asks for them
/// (see `nbd_set_request_extended_headers`).
///
/// # Return value
/// 1 if the server agreed, 0 if it refused, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_opt_extended_headers(h: HandleArg) -> c_int {
    entry!(h, |h| { h.opt_extended_headers().map(c_int::from) })
}

/// Starts ending negotiation and using the export.
///
/// As `nbd_opt_go`, but asynchronously: the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_go(
    h: HandleArg,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    entry!(h, |h| { h.aio_opt_go(completion).map(|()| 0) })
}

/// Starts asking about the export.
///
/// As `nbd_opt_info`, but asynchronously: the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_info(
    h: HandleArg,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    entry!(h, |h| { h.aio_opt_info(completion).map(|()| 0) })
}

/// Starts ending negotiation and the connection.
///
/// As `nbd_opt_abort`, but asynchronously: the program drives the handle until
/// it is closed.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_abort(h: HandleArg) -> c_int {
    entry!(h, |h| { h.aio_opt_abort().map(|()| 0) })
}

/// Starts listing the server's exports.
///
/// As `nbd_opt_list`, but asynchronously: the program drives the handle
/// (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_list(
    h: HandleArg,
    list_callback: nbd_list_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let list = list(list_callback);
    entry!(h, |h| { h.aio_opt_list(list?, completion).map(|()| 0) })
}

/// Starts listing meta contexts.
///
/// As `nbd_opt_list_meta_context`, but asynchronously: the program drives the
/// handle (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_list_meta_context(
    h: HandleArg,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    entry!(h, |h| {
        h.aio_opt_list_meta_context(None, context?, completion)
            .map(|()| 0)
    })
}

/// Starts listing the meta contexts matching some queries.
///
/// As `nbd_opt_list_meta_context_queries`, but asynchronously: the program
/// drives the handle (`nbd_aio_notify_read`, `nbd_poll`) until the option is
/// over, then `completion_callback` is called with `*error` set to 0 or to the
/// option's errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_list_meta_context_queries(
    h: HandleArg,
    queries: CStrList,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    entry!(h, |h| {
        let context = context?;
        let q = self::queries(&queries, "queries")?;
        h.aio_opt_list_meta_context(Some(&as_strs(&q)), context, completion)
            .map(|()| 0)
    })
}

/// Starts selecting the meta contexts to use.
///
/// As `nbd_opt_set_meta_context`, but asynchronously: the program drives the
/// handle (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_set_meta_context(
    h: HandleArg,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    entry!(h, |h| {
        h.aio_opt_set_meta_context(None, context?, completion)
            .map(|()| 0)
    })
}

/// Starts selecting the meta contexts matching some queries.
///
/// As `nbd_opt_set_meta_context_queries`, but asynchronously: the program
/// drives the handle (`nbd_aio_notify_read`, `nbd_poll`) until the option is
/// over, then `completion_callback` is called with `*error` set to 0 or to the
/// option's errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_set_meta_context_queries(
    h: HandleArg,
    queries: CStrList,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    entry!(h, |h| {
        let context = context?;
        let q = self::queries(&queries, "queries")?;
        h.aio_opt_set_meta_context(Some(&as_strs(&q)), context, completion)
            .map(|()| 0)
    })
}

/// Starts asking for structured replies.
///
/// As `nbd_opt_structured_reply`, but asynchronously: the program drives the
/// handle (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_structured_reply(
    h: HandleArg,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        h.aio_opt_structured_reply(completion).map(|()| 0)
    })
}

/// Starts asking for extended headers.
///
/// As `nbd_opt_extended_headers`, but asynchronously: the program drives the
/// handle (`nbd_aio_notify_read`, `nbd_poll`) until the option is over, then
/// `completion_callback` is called with `*error` set to 0 or to the option's
/// errno.
///
/// # Return value
/// 0 if the option was started, -1 on error. How the option ended is told to
/// the completion callback.
///
/// # Handle state
/// The handle must be negotiating (`nbd_aio_is_negotiating`), as it is after
/// connecting with option mode on (`nbd_set_opt_mode`).
#[no_mangle]
pub unsafe extern "C" fn nbd_aio_opt_extended_headers(
    h: HandleArg,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    entry!(h, |h| {
        h.aio_opt_extended_headers(completion).map(|()| 0)
    })
}

/// Sets whether the handshake asks the server for extended headers.
///
/// Extended headers carry 64 bit lengths. They are asked for by default;
/// whether the server agreed is told by `nbd_get_extended_headers_negotiated`.
///
/// The setting is read back with `nbd_get_request_extended_headers`.
///
/// # Return value
/// 0 on success, -1 on error.
///
/// # Handle state
/// The handle must be newly created (`nbd_aio_is_created`): this is a setting
/// for the connection still to be made.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_request_extended_headers(h: HandleArg, request: bool) -> c_int {
    entry!(h, |h| {
        h.set_request_extended_headers(request).map(|()| 0)
    })
}

/// Returns whether the handshake asks for extended headers.
///
/// This is the value set with `nbd_set_request_extended_headers`, or the
/// default.
///
/// # Return value
/// 1 if on, 0 if off, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_request_extended_headers(h: HandleArg) -> c_int {
    entry!(h, |h| { Ok(h.request_extended_headers() as c_int) })
}

/// Returns whether the server agreed to extended headers.
///
/// # Return value
/// 1 if extended headers are in use, 0 if not, -1 on error.
///
/// # Handle state
/// The handle must be negotiating, connected with the server, or shut down: the
/// answer comes from the handshake.
#[no_mangle]
pub unsafe extern "C" fn nbd_get_extended_headers_negotiated(h: HandleArg) -> c_int {
    entry!(h, |h| { h.extended_headers_negotiated().map(c_int::from) })
}
