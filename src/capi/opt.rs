//! Option mode: negotiating by hand before transmission.

use std::ffi::{c_char, c_int};

use super::aio::completion;
use super::types::{nbd_completion_callback, nbd_context_callback, nbd_list_callback};
use super::{c_str_list_arg, nbd_handle, null_error, with_handle};
use crate::{Context, List, Result};

/// Takes ownership of a required list callback; only a closure with
/// neither function nor free function is NULL (as in libnbd).
fn list(cb: nbd_list_callback) -> Result<List> {
    if cb.callback.is_none() && cb.free.is_none() {
        return Err(null_error("list"));
    }
    // SAFETY: the C caller's callback and free are valid for user_data;
    // dropping the value on error calls free once.
    Ok(unsafe { List::from_c(cb.callback, cb.user_data, cb.free) })
}

/// Takes ownership of a required context callback (as `list`).
fn context(cb: nbd_context_callback) -> Result<Context> {
    if cb.callback.is_none() && cb.free.is_none() {
        return Err(null_error("context"));
    }
    // SAFETY: as in `list`.
    Ok(unsafe { Context::from_c(cb.callback, cb.user_data, cb.free) })
}

/// Reads a NULL-terminated `char **` list of strings (queries, contexts).
pub(super) fn queries(list: *mut *mut c_char, param: &str) -> Result<Vec<String>> {
    // SAFETY: the caller passes NULL or a NULL-terminated array of C strings.
    let list = unsafe { c_str_list_arg(list, param) }?;
    Ok(list
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect())
}

pub(super) fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Turns option mode on or off (before connecting).
#[no_mangle]
pub extern "C" fn nbd_set_opt_mode(h: *mut nbd_handle, enable: bool) -> c_int {
    with_handle("nbd_set_opt_mode", h, -1, |h| {
        h.set_opt_mode(enable).map(|()| 0)
    })
}

/// Whether option mode is on.
#[no_mangle]
pub extern "C" fn nbd_get_opt_mode(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_opt_mode", h, -1, |h| Ok(h.opt_mode() as c_int))
}

/// Ends negotiation and enters transmission.
#[no_mangle]
pub extern "C" fn nbd_opt_go(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_opt_go", h, -1, |h| h.opt_go().map(|()| 0))
}

/// Ends the connection during negotiation.
#[no_mangle]
pub extern "C" fn nbd_opt_abort(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_opt_abort", h, -1, |h| h.opt_abort().map(|()| 0))
}

/// Asks about the export without entering transmission.
#[no_mangle]
pub extern "C" fn nbd_opt_info(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_opt_info", h, -1, |h| h.opt_info().map(|()| 0))
}

/// Lists the server's exports; returns how many.
#[no_mangle]
pub extern "C" fn nbd_opt_list(h: *mut nbd_handle, list_callback: nbd_list_callback) -> c_int {
    let list = list(list_callback);
    with_handle("nbd_opt_list", h, -1, |h| h.opt_list(list?))
}

/// Lists the meta contexts matching the requested ones; returns how many.
#[no_mangle]
pub extern "C" fn nbd_opt_list_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    with_handle("nbd_opt_list_meta_context", h, -1, |h| {
        h.opt_list_meta_context(context?)
    })
}

/// Lists the meta contexts matching `queries`; returns how many.
#[no_mangle]
pub extern "C" fn nbd_opt_list_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    with_handle("nbd_opt_list_meta_context_queries", h, -1, |h| {
        let context = context?;
        let q = self::queries(queries, "queries")?;
        h.opt_list_meta_context_queries(&as_strs(&q), context)
    })
}

/// Selects the requested meta contexts; returns how many the server agreed to.
#[no_mangle]
pub extern "C" fn nbd_opt_set_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    with_handle("nbd_opt_set_meta_context", h, -1, |h| {
        h.opt_set_meta_context(context?)
    })
}

/// Selects the meta contexts matching `queries`; returns how many.
#[no_mangle]
pub extern "C" fn nbd_opt_set_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
) -> c_int {
    let context = context(context_callback);
    with_handle("nbd_opt_set_meta_context_queries", h, -1, |h| {
        let context = context?;
        let q = self::queries(queries, "queries")?;
        h.opt_set_meta_context_queries(&as_strs(&q), context)
    })
}

/// Asks for structured replies: 1 if agreed, 0 if refused.
#[no_mangle]
pub extern "C" fn nbd_opt_structured_reply(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_opt_structured_reply", h, -1, |h| {
        h.opt_structured_reply().map(c_int::from)
    })
}

/// Asks for extended headers: 1 if agreed, 0 if refused.
#[no_mangle]
pub extern "C" fn nbd_opt_extended_headers(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_opt_extended_headers", h, -1, |h| {
        h.opt_extended_headers().map(c_int::from)
    })
}

/// Starts NBD_OPT_GO.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_go(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_opt_go", h, -1, |h| {
        h.aio_opt_go(completion).map(|()| 0)
    })
}

/// Starts NBD_OPT_INFO.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_info(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_opt_info", h, -1, |h| {
        h.aio_opt_info(completion).map(|()| 0)
    })
}

/// Starts NBD_OPT_ABORT.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_abort(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_aio_opt_abort", h, -1, |h| {
        h.aio_opt_abort().map(|()| 0)
    })
}

/// Starts NBD_OPT_LIST.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_list(
    h: *mut nbd_handle,
    list_callback: nbd_list_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let list = list(list_callback);
    with_handle("nbd_aio_opt_list", h, -1, |h| {
        h.aio_opt_list(list?, completion).map(|()| 0)
    })
}

/// Starts NBD_OPT_LIST_META_CONTEXT for the requested contexts.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_list_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    with_handle("nbd_aio_opt_list_meta_context", h, -1, |h| {
        h.aio_opt_list_meta_context(None, context?, completion)
            .map(|()| 0)
    })
}

/// Starts NBD_OPT_LIST_META_CONTEXT for `queries`.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_list_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    with_handle("nbd_aio_opt_list_meta_context_queries", h, -1, |h| {
        let context = context?;
        let q = self::queries(queries, "queries")?;
        h.aio_opt_list_meta_context(Some(&as_strs(&q)), context, completion)
            .map(|()| 0)
    })
}

/// Starts NBD_OPT_SET_META_CONTEXT for the requested contexts.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_set_meta_context(
    h: *mut nbd_handle,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    with_handle("nbd_aio_opt_set_meta_context", h, -1, |h| {
        h.aio_opt_set_meta_context(None, context?, completion)
            .map(|()| 0)
    })
}

/// Starts NBD_OPT_SET_META_CONTEXT for `queries`.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_set_meta_context_queries(
    h: *mut nbd_handle,
    queries: *mut *mut c_char,
    context_callback: nbd_context_callback,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    let context = context(context_callback);
    with_handle("nbd_aio_opt_set_meta_context_queries", h, -1, |h| {
        let context = context?;
        let q = self::queries(queries, "queries")?;
        h.aio_opt_set_meta_context(Some(&as_strs(&q)), context, completion)
            .map(|()| 0)
    })
}

/// Starts NBD_OPT_STRUCTURED_REPLY.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_structured_reply(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_opt_structured_reply", h, -1, |h| {
        h.aio_opt_structured_reply(completion).map(|()| 0)
    })
}

/// Starts NBD_OPT_EXTENDED_HEADERS.
#[no_mangle]
pub extern "C" fn nbd_aio_opt_extended_headers(
    h: *mut nbd_handle,
    completion_callback: nbd_completion_callback,
) -> c_int {
    let completion = completion(completion_callback);
    with_handle("nbd_aio_opt_extended_headers", h, -1, |h| {
        h.aio_opt_extended_headers(completion).map(|()| 0)
    })
}

/// Whether to ask for extended headers.
#[no_mangle]
pub extern "C" fn nbd_set_request_extended_headers(h: *mut nbd_handle, request: bool) -> c_int {
    with_handle("nbd_set_request_extended_headers", h, -1, |h| {
        h.set_request_extended_headers(request).map(|()| 0)
    })
}

/// Whether extended headers will be asked for.
#[no_mangle]
pub extern "C" fn nbd_get_request_extended_headers(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_request_extended_headers", h, -1, |h| {
        Ok(h.request_extended_headers() as c_int)
    })
}

/// Whether the server agreed to extended headers.
#[no_mangle]
pub extern "C" fn nbd_get_extended_headers_negotiated(h: *mut nbd_handle) -> c_int {
    with_handle("nbd_get_extended_headers_negotiated", h, -1, |h| {
        h.extended_headers_negotiated().map(c_int::from)
    })
}
