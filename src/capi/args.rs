//! The pointer parameters and string results of the C calls, as types.
//!
//! A C call declares its pointer parameters with these types rather than
//! raw pointers. Each is `#[repr(transparent)]` over the pointer C passes,
//! so the ABI is the C one, and `build.rs` prints it in the header as that
//! C type (`CStrArg` as `const char *`, see `ARG_TYPES` there).
//!
//! Their field is private: Rust code gets a value only as a parameter of an
//! `unsafe extern "C"` call, whose C caller promises what the type's
//! documentation says (libnbd's contract for that parameter), or (in the
//! unit tests) from an `unsafe fn new`, whose caller promises the same.
//! None is `Clone`. Their safe methods rely on that promise: each checks
//! for NULL (failing with EFAULT, "PARAM cannot be NULL") and holds the one
//! `unsafe` block that reads through the pointer.
//!
//! The string results, [`MallocStr`] (`char *`) and [`StaticStr`]
//! (`const char *`), are made only here, from strings they then point to,
//! so the debug trace can read them safely.

use std::ffi::{c_char, c_void, CStr};

use super::{nbd_handle, null_error};
use crate::{Error, Handle, Result};

/// An object the library makes for C and C holds a pointer to: a handle
/// (`nbd_create`) or a pool (`rnbd_multi_conn_connect*`).
pub(crate) trait Object {
    /// The Rust value the object wraps.
    type Inner;
    /// The name of its parameter, for the error when it is NULL.
    const PARAM: &'static str;
    /// The Rust value.
    fn inner(&self) -> &Self::Inner;
}

/// A pointer parameter to an [`Object`] (see [`HandleArg`] and
/// `MultiConnArg`): NULL, or an object the library made that its close
/// call does not free before the call returns.
#[repr(transparent)]
pub struct ObjArg<T>(*const T);

/// A `struct nbd_handle *` parameter: NULL, or a handle from `nbd_create`
/// that `nbd_close` does not free before the call returns.
pub type HandleArg = ObjArg<nbd_handle>;

impl Object for nbd_handle {
    type Inner = Handle;
    const PARAM: &'static str = "h";
    fn inner(&self) -> &Handle {
        &self.inner
    }
}

impl<T: Object> ObjArg<T> {
    /// The object's Rust value, borrowed; EFAULT ("h cannot be NULL",
    /// "mc cannot be NULL") when NULL.
    #[inline]
    pub(crate) fn get(&self) -> Result<&T::Inner> {
        if self.0.is_null() {
            return Err(null_error(T::PARAM));
        }
        // SAFETY: not NULL, so a live object while `self` lives (the
        // type's invariant: the C caller's promise).
        Ok(unsafe { &*self.0 }.inner())
    }
}

/// The pointer parameter of a close call (see [`HandleOwned`] and
/// `MultiConnOwned`): NULL, or an object the library made (with
/// `Box::into_raw`) that the caller gives up: nothing uses it again.
#[repr(transparent)]
pub struct ObjOwned<T>(*mut T);

/// The `struct nbd_handle *` parameter of `nbd_close`.
pub type HandleOwned = ObjOwned<nbd_handle>;

impl<T: Object> ObjOwned<T> {
    /// The object, taken back to be dropped; None for NULL.
    pub(crate) fn take(self) -> Option<Box<T>> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: not NULL, so (the type's invariant) made by
        // Box::into_raw and given up by the caller; `self` is consumed,
        // so the Box is taken back once.
        Some(unsafe { Box::from_raw(self.0) })
    }
}

impl HandleOwned {
    /// Wraps `h`.
    ///
    /// # Safety
    /// `h` must be NULL or a handle from `nbd_create` that nothing uses
    /// again.
    #[cfg(test)]
    pub(crate) unsafe fn new(h: *mut nbd_handle) -> HandleOwned {
        ObjOwned(h)
    }
}

impl HandleArg {
    /// Wraps `h`.
    ///
    /// # Safety
    /// `h` must be NULL or a handle from `nbd_create` that is not closed
    /// while the value lives.
    #[cfg(test)]
    pub(crate) unsafe fn new(h: *const nbd_handle) -> HandleArg {
        ObjArg(h)
    }

    /// A NULL handle (always a valid value: calls on it fail).
    #[cfg(test)]
    pub(crate) const fn null() -> HandleArg {
        ObjArg(std::ptr::null())
    }
}

/// A `const char *` parameter: NULL, or a NUL-terminated string that stays
/// valid and unchanged until the call returns.
#[repr(transparent)]
pub struct CStrArg(*const c_char);

impl CStrArg {
    /// Wraps `ptr`.
    ///
    /// # Safety
    /// `ptr` must be NULL or point to a NUL-terminated string that stays
    /// valid and unchanged while the value lives.
    #[cfg(test)]
    pub(crate) unsafe fn new(ptr: *const c_char) -> CStrArg {
        CStrArg(ptr)
    }

    /// The string, borrowed; EFAULT naming `param` when NULL.
    #[inline]
    pub(crate) fn get(&self, param: &str) -> Result<&CStr> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        // SAFETY: not NULL, so a NUL-terminated string valid while `self`
        // lives (the type's invariant: the C caller's promise).
        Ok(unsafe { CStr::from_ptr(self.0) })
    }
}

/// A `char **` parameter (an `argv`, a list of names): NULL, or an array of
/// pointers to NUL-terminated strings ended by a NULL pointer, all valid
/// and unchanged until the call returns.
#[repr(transparent)]
pub struct CStrList(*const *mut c_char);

impl CStrList {
    /// The strings, borrowed; EFAULT naming `param` when NULL.
    pub(crate) fn get(&self, param: &str) -> Result<Vec<&CStr>> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        let mut out = Vec::new();
        let mut p = self.0;
        // SAFETY: not NULL, so (the type's invariant) every entry up to the
        // NULL one is a string valid while `self` lives, and the entries
        // read are all inside the array.
        unsafe {
            while !(*p).is_null() {
                out.push(CStr::from_ptr(*p));
                p = p.add(1);
            }
        }
        Ok(out)
    }
}

/// A `const void *` buffer parameter, read by the call: NULL, or readable
/// and unchanged for the number of bytes the call's length parameter says,
/// until the call returns (for the `aio` calls: until the command
/// retires).
///
/// The length is a separate C parameter, so it is given to [`BufIn::get`]:
/// the body of the call the value is a parameter of must pass that
/// parameter, as libnbd's contract pairs them.
#[repr(transparent)]
pub struct BufIn(*const c_void);

impl BufIn {
    /// The `len` bytes, borrowed; EFAULT naming `param` when NULL. `len`
    /// is the length parameter of the same call (see the type).
    #[inline]
    pub(crate) fn get(&self, len: usize, param: &str) -> Result<&[u8]> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        // SAFETY: not NULL, so `len` readable bytes while `self` lives
        // (the type's invariant: the C caller's promise for this length).
        Ok(unsafe { std::slice::from_raw_parts(self.0.cast::<u8>(), len) })
    }

    /// The pointer, for a command that keeps it until it retires (the
    /// `aio` writes); EFAULT naming `param` when NULL. Reading through it
    /// is up to the (unsafe) code it is given to.
    #[inline]
    pub(crate) fn retained(self, param: &str) -> Result<*const u8> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        Ok(self.0.cast())
    }
}

/// A `void *` buffer parameter the call fills: NULL, or writable for the
/// number of bytes the call's length parameter says, and not otherwise
/// accessed, until the call returns (for the `aio` calls: until the command
/// retires).
///
/// As for [`BufIn`], the length is given to the methods.
#[repr(transparent)]
pub struct BufOut(*mut c_void);

impl BufOut {
    /// The `len` bytes, borrowed for writing; EFAULT naming `param` when
    /// NULL. `len` is the length parameter of the same call (see
    /// [`BufIn`]).
    #[inline]
    pub(crate) fn get(&mut self, len: usize, param: &str) -> Result<&mut [u8]> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        // SAFETY: not NULL, so `len` writable bytes no one else accesses
        // while `self` lives (the type's invariant), and `&mut self` lends
        // them out once at a time.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.0.cast::<u8>(), len) })
    }

    /// The pointer, for a command that keeps it until it retires (the
    /// `aio` reads); EFAULT naming `param` when NULL. Reading or writing
    /// through it is up to the (unsafe) code it is given to.
    #[inline]
    pub(crate) fn retained(self, param: &str) -> Result<*mut u8> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        Ok(self.0.cast())
    }
}

/// A `char *` result: NULL (the error value), or a NUL-terminated string
/// in memory from `malloc`, which the C caller frees. Only
/// [`malloc_c_string`] makes a non-NULL one; it is neither Clone nor
/// Copy, so once returned to C no Rust copy of it is left.
#[repr(transparent)]
pub struct MallocStr(*mut c_char);

impl MallocStr {
    /// NULL, the error value.
    pub(crate) const NULL: MallocStr = MallocStr(std::ptr::null_mut());

    /// The string (for the debug trace), or None for NULL.
    pub(crate) fn get(&self) -> Option<&CStr> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: not NULL, so made by malloc_c_string: a NUL-terminated
        // string that only the C caller frees, after the call returns
        // this value, so it is alive while `self` is.
        Some(unsafe { CStr::from_ptr(self.0) })
    }
}

/// Copies `s` into memory from `malloc`, NUL-terminated, for a `char *`
/// the caller `free`s; fails with ENOMEM.
pub(crate) fn malloc_c_string(s: &[u8]) -> Result<MallocStr> {
    // SAFETY: malloc gives len+1 bytes or NULL (checked); we write exactly
    // len+1 bytes into them, from `s`, which cannot overlap them.
    unsafe {
        let p = libc::malloc(s.len() + 1).cast::<u8>();
        if p.is_null() {
            return Err(Error::new(libc::ENOMEM, "malloc"));
        }
        std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        Ok(MallocStr(p.cast()))
    }
}

/// A `const char *` result: NULL (the error value), or a NUL-terminated
/// string that lives as long as the program, which the caller must not
/// free.
#[repr(transparent)]
pub struct StaticStr(*const c_char);

impl StaticStr {
    /// NULL, the error value.
    pub(crate) const NULL: StaticStr = StaticStr(std::ptr::null());

    /// `s`, returned to C.
    pub(crate) fn new(s: &'static CStr) -> StaticStr {
        StaticStr(s.as_ptr())
    }

    /// The string (for the debug trace), or None for NULL.
    pub(crate) fn get(&self) -> Option<&'static CStr> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: not NULL, so made by `new` from a &'static CStr.
        Some(unsafe { CStr::from_ptr(self.0) })
    }
}

/// A `const struct sockaddr *` parameter: NULL, or readable for the number
/// of bytes the call's length parameter says, until the call returns.
/// As for [`BufIn`], the length is given to [`SockAddrArg::get`].
#[repr(transparent)]
pub struct SockAddrArg(*const libc::sockaddr);

impl SockAddrArg {
    /// A copy of the address and its family; EFAULT naming `param` when
    /// NULL, None when `len` is too short for a `struct sockaddr` or
    /// longer than a `struct sockaddr_storage`. `len` is the length
    /// parameter of the same call.
    pub(crate) fn get(
        &self,
        len: libc::socklen_t,
        param: &str,
    ) -> Result<Option<(nix::sys::socket::SockaddrStorage, libc::sa_family_t)>> {
        if self.0.is_null() {
            return Err(null_error(param));
        }
        // SAFETY: not NULL, so `len` readable bytes (the type's invariant:
        // the C caller's promise for this length); nix checks len against
        // the sizes before copying, and once it has accepted the address
        // the family field lies within the `len` bytes.
        Ok(unsafe {
            nix::sys::socket::SockaddrLike::from_raw(self.0, Some(len))
                .map(|storage| (storage, (*self.0).sa_family))
        })
    }
}

/// An `int` file descriptor parameter that the call takes over (as
/// `nbd_connect_socket` does): the C caller uses it no more once the call
/// has adopted it.
#[repr(transparent)]
pub struct FdArg(std::ffi::c_int);

impl FdArg {
    /// The descriptor, adopted; fails (EBADF, with `what` as the message)
    /// and leaves it alone when it is not open.
    pub(crate) fn adopt(self, what: &str) -> Result<std::os::fd::OwnedFd> {
        // SAFETY: F_GETFD reads the descriptor's flags and touches no
        // memory; it fails with EBADF unless the descriptor is open, and
        // an open one the C caller hands over (the type's invariant) is
        // ours to own; `self` is consumed, so it is adopted once.
        unsafe {
            if libc::fcntl(self.0, libc::F_GETFD) < 0 {
                let err = std::io::Error::last_os_error();
                return Err(Error::io(what, &err));
            }
            Ok(std::os::fd::FromRawFd::from_raw_fd(self.0))
        }
    }
}
