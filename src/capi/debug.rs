//! Debug callbacks, and the entry/exit trace of each call when debugging
//! is on.

use std::any::Any;
use std::ffi::{c_int, CString};

use super::{entry, HandleArg, MallocStr, StaticStr};
use crate::capi::types::nbd_debug_callback;
use crate::{Handle, Result};

/// The trace of a call while debugging is on, as libnbd logs it: `enter:`
/// before the call, and its result after ([`leave`]). Whether debugging is
/// on is decided once, before the call (so `nbd_set_debug (h, false)`
/// still logs its result, as in libnbd). Two halves around the call
/// rather than a wrapper taking it, so each call's body is compiled once.
pub(crate) fn enter(h: &Handle) {
    h.debug_emit("enter:");
}

/// The second half of the trace: the call's result.
pub(crate) fn leave<T: 'static>(api: &str, h: &Handle, r: &Result<T>) {
    let msg = match r {
        Ok(v) => format!("leave: ret={}", describe(v)),
        Err(e) => format!("leave: error=\"{api}: {e}\""),
    };
    h.debug_emit(&msg);
}

/// `s` as a C string, any NUL replaced so nothing is cut short.
fn c_text(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\\0")).unwrap_or_default())
}

/// A call's return value as the debug trace shows it.
fn describe<T: 'static>(v: &T) -> String {
    let v = v as &dyn Any;
    macro_rules! plain {
        ($($t:ty),*) => {
            $(if let Some(x) = v.downcast_ref::<$t>() {
                return x.to_string();
            })*
        };
    }
    plain!(i32, i64, u32, u64, usize, isize, bool);
    let s = v
        .downcast_ref::<MallocStr>()
        .map(MallocStr::get)
        .or_else(|| v.downcast_ref::<StaticStr>().map(StaticStr::get));
    match s {
        Some(None) => "NULL".to_string(),
        Some(Some(s)) => format!("\"{}\"", s.to_string_lossy()),
        None => "<ptr>".to_string(),
    }
}

/// Sends the handle's debug messages to a callback.
///
/// Instead of standard error, debug messages (see `nbd_set_debug`) go to
/// `debug_callback`, which receives the name of the call or context that
/// emitted the message and the message. A callback set before is replaced, and
/// its free function is called. This one's free function is called when it is
/// replaced or cleared (`nbd_clear_debug_callback`), or when the handle is
/// closed.
///
/// Setting the callback does not turn debugging on.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_set_debug_callback(
    h: HandleArg,
    debug_callback: nbd_debug_callback,
) -> c_int {
    let null = debug_callback.is_null();
    // If the call fails, dropping `cb` frees the user data.
    let cb = debug_callback;
    entry!(h, move |h| {
        if null {
            return Err(super::null_error("debug"));
        }
        h.set_debug_callback(move |context, msg| cb.call(&c_text(context), &c_text(msg)))
            .map(|()| 0)
    })
}

/// Removes the debug callback.
///
/// Debug messages go to standard error again. The callback's free function, if
/// it has one, is called. Without a callback set, this does nothing.
///
/// # Return value
/// 0 on success, -1 on error.
#[no_mangle]
pub unsafe extern "C" fn nbd_clear_debug_callback(h: HandleArg) -> c_int {
    entry!(h, |h| { h.clear_debug_callback().map(|()| 0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::malloc_c_string;

    /// The trace shows the strings the calls return, and NULL.
    #[test]
    fn describe_shows_returned_strings() {
        assert_eq!(describe(&StaticStr::new(c"1.22.2")), "\"1.22.2\"");
        assert_eq!(describe(&StaticStr::NULL), "NULL");
        // (The string is leaked: only C frees these.)
        assert_eq!(
            describe(&malloc_c_string(b"nbd://x").unwrap()),
            "\"nbd://x\""
        );
        assert_eq!(describe(&MallocStr::NULL), "NULL");
        assert_eq!(describe(&-1i64), "-1");
    }
}
