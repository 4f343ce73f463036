//! The C ABI: thin `extern "C"` wrappers over [`crate::Handle`].
//!
//! Each wrapper checks its pointer arguments, calls the safe API, and turns
//! an [`Error`] into libnbd's convention: the error value (-1 or NULL), a
//! thread-local message that starts with the call's name, and the errno.
//! No logic lives here, and no panic crosses into C.
#![allow(non_camel_case_types)]
// C callers hand us raw pointers by contract (libnbd's API); the wrappers
// check them for NULL and the rest is the caller's promise, as in C.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{Error, Handle, Result};

pub mod aio;
pub mod connect;
pub mod debug;
pub mod handle;
pub mod info;
pub mod io;
pub mod meta;
pub mod opt;
pub mod settings;
pub mod tls;
pub mod types;

/// The handle C programs hold: `struct nbd_handle`, opaque to them.
pub struct nbd_handle {
    pub(crate) inner: Handle,
}

struct LastError {
    message: Option<CString>,
    errno: c_int,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const {
        RefCell::new(LastError { message: None, errno: 0 })
    };
}

/// Records `err` as this thread's last error, as call `api` reports it,
/// and sets the C `errno` to match.
pub(crate) fn set_error(api: &str, err: &Error) {
    let text = format!("{api}: {err}").replace('\0', " ");
    let message = CString::new(text).ok();
    let errno = err.errno();
    let _ = LAST_ERROR.try_with(|last| {
        let mut last = last.borrow_mut();
        last.message = message;
        last.errno = errno;
    });
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() = errno };
}

/// The error for a NULL pointer where the call needs one.
pub(crate) fn null_error(param: &str) -> Error {
    Error::new(libc::EFAULT, format!("{param} cannot be NULL"))
}

/// Fails with EFAULT naming `param` when `ptr` is NULL.
pub(crate) fn check_nonnull<T>(ptr: *const T, param: &str) -> Result<()> {
    if ptr.is_null() {
        Err(null_error(param))
    } else {
        Ok(())
    }
}

/// Borrows a C string argument, failing with EFAULT when it is NULL.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str_arg<'a>(ptr: *const c_char, param: &str) -> Result<&'a CStr> {
    check_nonnull(ptr, param)?;
    // SAFETY: non-NULL, and the caller promises NUL termination.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// Copies `s` into memory from `malloc`, for a `char *` the caller
/// `free`s; fails with ENOMEM.
pub(crate) fn malloc_c_string(s: &[u8]) -> Result<*mut c_char> {
    // SAFETY: we allocate len+1 bytes and write exactly that many.
    unsafe {
        let p = libc::malloc(s.len() + 1) as *mut u8;
        if p.is_null() {
            return Err(Error::new(libc::ENOMEM, "malloc"));
        }
        std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        Ok(p as *mut c_char)
    }
}

/// Borrows a NULL-terminated array of C strings (an `argv`, a list of
/// queries or contexts), failing with EFAULT naming `param` when NULL.
///
/// # Safety
/// `list` must be NULL or a NULL-terminated array of C strings that
/// outlive `'a`.
pub(crate) unsafe fn c_str_list_arg<'a>(
    list: *const *mut c_char,
    param: &str,
) -> Result<Vec<&'a CStr>> {
    check_nonnull(list, param)?;
    let mut out = Vec::new();
    let mut p = list;
    // SAFETY: the caller's promise: entries up to the NULL are C strings.
    unsafe {
        while !(*p).is_null() {
            out.push(CStr::from_ptr(*p));
            p = p.add(1);
        }
    }
    Ok(out)
}

/// Runs `f`, turning an `Err` or a panic into `err_value` with the error recorded.
pub(crate) fn ffi_call<T>(api: &str, err_value: T, f: impl FnOnce() -> Result<T>) -> T {
    // Debug messages emitted during the call name it as their context.
    let _context = crate::conn::ApiContext::enter(api);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => {
            set_error(api, &err);
            err_value
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_error(
                api,
                &Error::new(libc::EIO, format!("internal error (panic): {what}")),
            );
            err_value
        }
    }
}

/// Runs `f` on the handle behind `h`: NULL `h` fails with EFAULT.
/// With debugging on, the call's entry and result are logged.
pub(crate) fn with_handle<T: 'static>(
    api: &str,
    h: *const nbd_handle,
    err_value: T,
    f: impl FnOnce(&Handle) -> Result<T>,
) -> T {
    ffi_call(api, err_value, || {
        check_nonnull(h, "h")?;
        // SAFETY: a non-NULL h came from nbd_create and is live until nbd_close.
        let handle = unsafe { &(*h).inner };
        if !handle.debug() {
            return f(handle);
        }
        debug::traced(api, handle, f)
    })
}

/// Returns the message of the last error in this thread.
///
/// Every call that fails records, for the thread that made it, a message that
/// starts with the call's name and describes what went wrong. The message stays
/// until the next failing call in the same thread; calls that succeed leave it
/// alone.
///
/// # Return value
/// The message, which the caller must not free and which is only valid until
/// the next call into the library from this thread; or NULL if no call has
/// failed in this thread.
///
/// # Errors
/// This call does not fail.
#[no_mangle]
pub extern "C" fn nbd_get_error() -> *const c_char {
    LAST_ERROR
        .try_with(|last| {
            last.borrow()
                .message
                .as_ref()
                .map_or(std::ptr::null(), |m| m.as_ptr())
        })
        .unwrap_or(std::ptr::null())
}

/// Returns the errno of the last error in this thread.
///
/// A failing call records an error number along with its message (see
/// `nbd_get_error`), and also leaves it in `errno`; this call returns the
/// recorded one, which later calls of other libraries cannot overwrite.
///
/// # Return value
/// The error number, or 0 if no call has failed in this thread.
///
/// # Errors
/// This call does not fail.
#[no_mangle]
pub extern "C" fn nbd_get_errno() -> c_int {
    LAST_ERROR.try_with(|last| last.borrow().errno).unwrap_or(0)
}
