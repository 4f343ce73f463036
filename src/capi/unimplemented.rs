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
// Every call is implemented now; the helpers stay for any call to come.
#![allow(dead_code, unused_imports)]

use std::ffi::{c_char, c_int, c_void};
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
