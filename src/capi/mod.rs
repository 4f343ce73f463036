//! The C ABI: thin `extern "C"` wrappers over [`crate::Handle`].
//!
//! Each wrapper checks its pointer arguments, calls the safe API, and turns
//! an [`Error`] into libnbd's convention: the error value (-1 or NULL), a
//! thread-local message that starts with the call's name, and the errno.
//! No logic lives here, and no panic crosses into C.
//!
//! Every call's body is one [`entry!`], which does all of that in one place
//! (only `nbd_get_error` and `nbd_get_errno`, which read the error state
//! and cannot fail, do without it). The calls are `unsafe extern "C"`: the
//! pointers they take are the C caller's promise, and this module is not
//! part of the Rust API. String, list and buffer parameters are declared
//! with the types of [`args`], which hold that promise: their safe methods
//! check for NULL and borrow what the pointer addresses, so the bodies of
//! the calls need no `unsafe` to read them.
#![allow(non_camel_case_types)]
// Every call is `unsafe extern "C"`: C callers hand us raw pointers by
// contract (libnbd's API); the wrappers check them for NULL and the rest is
// the caller's promise, as in C. That contract is each call's documented
// parameters; the doc comments are the C documentation (header and man
// pages), so they carry no Rust `# Safety` section.
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::{Error, Handle, Result};

pub(crate) use args::{
    malloc_c_string, BufIn, BufOut, CStrArg, CStrList, HandleArg, HandleOwned, MallocStr, StaticStr,
};

pub mod aio;
pub mod args;
pub mod connect;
pub mod debug;
pub mod ext;
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
    nix::errno::Errno::set_raw(errno);
}

/// This thread's last error, as `nbd_get_error` and `nbd_get_errno` give
/// it: the message (None if no call has failed) and the errno.
pub(crate) fn last_error() -> (Option<String>, c_int) {
    LAST_ERROR
        .try_with(|last| {
            let last = last.borrow();
            let message = last
                .message
                .as_ref()
                .map(|m| m.to_string_lossy().into_owned());
            (message, last.errno)
        })
        .unwrap_or((None, 0))
}

/// The error for a NULL pointer where the call needs one.
pub(crate) fn null_error(param: &str) -> Error {
    Error::new(libc::EFAULT, format!("{param} cannot be NULL"))
}

/// The value a C call returns when it fails, given by its return type.
///
/// Calls returning `int` or `int64_t` fail with -1, calls returning a
/// pointer with NULL. Calls returning an unsigned number or nothing cannot
/// report an error; the only way they fail (a NULL handle) gives 0.
pub(crate) trait ErrorValue {
    /// What the call returns when it fails.
    const ERROR: Self;
}

impl ErrorValue for c_int {
    const ERROR: Self = -1;
}
impl ErrorValue for i64 {
    const ERROR: Self = -1;
}
impl ErrorValue for isize {
    const ERROR: Self = -1;
}
impl ErrorValue for u32 {
    const ERROR: Self = 0;
}
impl ErrorValue for u64 {
    const ERROR: Self = 0;
}
impl ErrorValue for usize {
    const ERROR: Self = 0;
}
impl ErrorValue for () {
    const ERROR: Self = ();
}
impl<T> ErrorValue for *mut T {
    const ERROR: Self = std::ptr::null_mut();
}
impl<T> ErrorValue for *const T {
    const ERROR: Self = std::ptr::null();
}
impl ErrorValue for MallocStr {
    const ERROR: Self = MallocStr::NULL;
}
impl ErrorValue for StaticStr {
    const ERROR: Self = StaticStr::NULL;
}

/// The name of the function an item is declared in: given `f`, a
/// function declared inside `nbd_pread`, returns `"nbd_pread"`. No
/// allocation: the result is a piece of the compiler's static type name.
/// [`entry!`] computes it once per call site ([`api_name_cached`]).
#[inline]
pub(crate) fn api_name<F>(_f: F) -> &'static str {
    enclosing_name(std::any::type_name::<F>())
}

/// The next-to-last segment of a `::` path (not generic, so not copied
/// into every call site).
#[inline(never)]
fn enclosing_name(full: &'static str) -> &'static str {
    let outer = full.rsplit_once("::").map_or(full, |(outer, _)| outer);
    outer.rsplit_once("::").map_or(outer, |(_, name)| name)
}

/// [`api_name`] of `f`, found at the first call and kept in `cache` (a
/// static of the call site): every C call needs its name, and scanning
/// the type name each time cost about 200 instructions per aio command
/// (three calls; `rsplit_once` builds a substring searcher each time),
/// a fifth of libnbd's whole cost per command.
#[inline]
pub(crate) fn api_name_cached<F>(cache: &'static OnceLock<&'static str>, f: F) -> &'static str {
    match cache.get() {
        Some(name) => name,
        None => keep_api_name(cache, api_name(f)),
    }
}

#[cold]
#[inline(never)]
fn keep_api_name(cache: &'static OnceLock<&'static str>, name: &'static str) -> &'static str {
    cache.get_or_init(|| name)
}

/// The one entry point of a C call: the body of every `extern "C"` call is
/// `entry!(h, |h| ...)` (a call on a handle) or `entry!(|| ...)`.
///
/// It names the call after the function it is written in, takes the error
/// value from the return type ([`ErrorValue`]), checks that `h` is not
/// NULL, runs the closure inside the panic boundary (a panic kills the
/// handle) with debug tracing, and turns an `Err` into the error value with
/// this thread's error message and errno set.
///
/// In the form with a handle, `h` is the call's [`HandleArg`] parameter.
macro_rules! entry {
    ($h:expr, $f:expr $(,)?) => {{
        fn here() {}
        static API: ::std::sync::OnceLock<&'static str> = ::std::sync::OnceLock::new();
        $crate::capi::with_handle(
            $crate::capi::api_name_cached(&API, here),
            $h,
            $crate::capi::on_handle($f),
        )
    }};
    ($f:expr $(,)?) => {{
        fn here() {}
        static API: ::std::sync::OnceLock<&'static str> = ::std::sync::OnceLock::new();
        $crate::capi::ffi_call($crate::capi::api_name_cached(&API, here), $f)
    }};
}
pub(crate) use entry;

/// Returns `f`: gives the closure of [`entry!`] its argument type.
#[inline(always)]
pub(crate) fn on_handle<T, F: FnOnce(&Handle) -> Result<T>>(f: F) -> F {
    f
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs `f`, turning an `Err` or a panic into the error value with the
/// error recorded. Use it through [`entry!`].
pub(crate) fn ffi_call<T: ErrorValue>(api: &'static str, f: impl FnOnce() -> Result<T>) -> T {
    // Debug messages emitted during the call name it as their context.
    let _context = crate::handle::ApiContext::enter(api);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => {
            record_error(api, err);
            T::ERROR
        }
        Err(panic) => {
            record_panic(api, panic);
            T::ERROR
        }
    }
}

// The failure paths of `ffi_call`, out of line and not generic: they are
// compiled once instead of into each of the library's C calls.

#[cold]
#[inline(never)]
fn record_error(api: &str, err: Error) {
    set_error(api, &err);
}

#[cold]
#[inline(never)]
fn record_panic(api: &str, panic: Box<dyn std::any::Any + Send>) {
    let what = panic_message(&*panic);
    set_error(
        api,
        &Error::new(libc::EIO, format!("internal error (panic): {what}")),
    );
}

/// Runs `f` on the handle behind `h`: NULL `h` fails with EFAULT.
/// With debugging on, the call's entry and result are logged. A panic
/// kills the handle: later calls on it fail. Use it through [`entry!`].
pub(crate) fn with_handle<T: ErrorValue + 'static>(
    api: &'static str,
    h: HandleArg,
    f: impl FnOnce(&Handle) -> Result<T>,
) -> T {
    ffi_call(api, || {
        let handle = h.get()?;
        // `f` is called in one place only: each C call's body is
        // compiled once, not once more inside a tracing wrapper.
        let result = catch_unwind(AssertUnwindSafe(|| {
            let traced = handle.debug();
            if traced {
                debug::enter(handle);
            }
            let r = f(handle);
            if traced {
                debug::leave(api, handle, &r);
            }
            r
        }));
        match result {
            Ok(r) => r,
            Err(panic) => {
                handle.kill_after_panic();
                std::panic::resume_unwind(panic)
            }
        }
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
pub unsafe extern "C" fn nbd_get_error() -> *const c_char {
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
pub unsafe extern "C" fn nbd_get_errno() -> c_int {
    LAST_ERROR.try_with(|last| last.borrow().errno).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> (String, c_int) {
        let (msg, errno) = super::last_error();
        (msg.expect("a call failed"), errno)
    }

    /// A call made with `entry!` whose body panics.
    extern "C" fn nbd_test_panic(h: HandleArg) -> c_int {
        entry!(h, |_h| -> Result<c_int> { panic!("test bug") })
    }

    /// A call made with `entry!` returning a pointer, whose body fails.
    extern "C" fn nbd_test_fail() -> MallocStr {
        entry!(|| Err(Error::new(libc::ENOENT, "nothing here")))
    }

    #[test]
    fn entry_names_the_call_and_picks_the_error_value() {
        assert_eq!(nbd_test_panic(HandleArg::null()), -1);
        assert_eq!(
            last_error(),
            (
                "nbd_test_panic: h cannot be NULL: Bad address".into(),
                libc::EFAULT
            )
        );
        assert!(nbd_test_fail().get().is_none());
        assert_eq!(
            last_error(),
            (
                "nbd_test_fail: nothing here: No such file or directory".into(),
                libc::ENOENT
            )
        );
    }

    /// Fail closed: a panic inside a call kills the handle; the next call
    /// fails cleanly with EINVAL.
    #[test]
    fn panic_in_a_call_kills_the_handle() {
        // SAFETY: the handle is used only here and closed at the end, after
        // its last use (the HandleArgs `arg` makes do not outlive their
        // calls); the URI is a C string.
        unsafe {
            let h = handle::nbd_create();
            assert!(!h.is_null());
            let arg = || HandleArg::new(h);
            assert_eq!(info::nbd_aio_is_dead(arg()), 0);
            assert_eq!(nbd_test_panic(arg()), -1);
            let (msg, errno) = last_error();
            assert_eq!(
                msg,
                "nbd_test_panic: internal error (panic): test bug: Input/output error"
            );
            assert_eq!(errno, libc::EIO);
            assert_eq!(info::nbd_aio_is_dead(arg()), 1);
            assert_eq!(
                connect::nbd_connect_uri(arg(), CStrArg::new(c"nbd://localhost".as_ptr())),
                -1
            );
            let (msg, errno) = last_error();
            assert!(msg.starts_with("nbd_connect_uri: "), "{msg}");
            assert_eq!(errno, libc::EINVAL);
            handle::nbd_close(HandleOwned::new(h));
        }
    }
}
