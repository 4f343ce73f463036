//! Debug callbacks, and the entry/exit trace of each call when debugging
//! is on.

use std::any::Any;
use std::ffi::{c_char, c_int, CStr, CString};

use super::{entry, nbd_handle};
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

/// A call's return value as the debug trace shows it.
/// A C program's debug callback, as the Rust closure of
/// `Handle::set_debug_callback` holds it: the closure is dropped when the
/// callback is replaced or cleared, or the handle closed, and this calls the
/// free function, once.
struct CDebug(nbd_debug_callback);

// SAFETY: C callers promise their callback and user data may be used from
// whichever thread runs the handle, as libnbd requires.
unsafe impl Send for CDebug {}

impl CDebug {
    fn call(&self, context: &str, msg: &str) {
        if let Some(f) = self.0.callback {
            let (context, msg) = (c_text(context), c_text(msg));
            // SAFETY: the C caller's promise: f may be called with its user
            // data; both strings live until it returns. Its result means
            // nothing.
            unsafe { f(self.0.user_data, context.as_ptr(), msg.as_ptr()) };
        }
    }
}

impl Drop for CDebug {
    fn drop(&mut self) {
        if let Some(free) = self.0.free {
            // SAFETY: the C caller gave this function for this data, to be
            // called once when the callback is no longer needed.
            unsafe { free(self.0.user_data) };
        }
    }
}

/// `s` as a C string, any NUL replaced so nothing is cut short.
fn c_text(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\\0")).unwrap_or_default())
}

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
        .downcast_ref::<*mut c_char>()
        .map(|p| *p as *const c_char)
        .or_else(|| v.downcast_ref::<*const c_char>().copied());
    match s {
        Some(p) if p.is_null() => "NULL".to_string(),
        // SAFETY: every char pointer a call returns on success is a
        // NUL-terminated string it just made or a static one.
        Some(p) => format!("\"{}\"", unsafe { CStr::from_ptr(p) }.to_string_lossy()),
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
    h: *mut nbd_handle,
    debug_callback: nbd_debug_callback,
) -> c_int {
    let null = debug_callback.callback.is_none() && debug_callback.free.is_none();
    // If the call fails, dropping `cb` frees the user data.
    let cb = CDebug(debug_callback);
    entry!(h, move |h| {
        if null {
            return Err(super::null_error("debug"));
        }
        h.set_debug_callback(move |context, msg| cb.call(context, msg))
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
pub unsafe extern "C" fn nbd_clear_debug_callback(h: *mut nbd_handle) -> c_int {
    entry!(h, |h| { h.clear_debug_callback().map(|()| 0) })
}
