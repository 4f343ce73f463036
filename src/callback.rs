//! Callbacks that commands carry: Rust closures, or C function pointers with
//! user data and a free function (stored inline: no allocation).
//!
//! Ownership gives libnbd's lifetime rule for free: a callback's `free`
//! runs exactly once, when the value is dropped: when the command is
//! retired, when issuing it fails, or when the handle is closed.

use std::ffi::{c_int, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A C callback's `free` function.
pub type FreeFn = unsafe extern "C" fn(user_data: *mut c_void);
/// A C completion callback function.
pub type CompletionFnPtr = unsafe extern "C" fn(user_data: *mut c_void, error: *mut c_int) -> c_int;
/// A C chunk callback function.
pub type ChunkFnPtr = unsafe extern "C" fn(
    user_data: *mut c_void,
    subbuf: *const c_void,
    count: usize,
    offset: u64,
    status: c_uint,
    error: *mut c_int,
) -> c_int;

/// C user data with its free function, called once on drop.
struct UserData {
    data: *mut c_void,
    free: Option<FreeFn>,
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the C caller gave this function for this data, to be
            // called once when the callback is no longer needed.
            unsafe { free(self.data) };
        }
    }
}

/// Runs a Rust closure; a panic counts as a failure with EIO.
fn guarded(error: &mut i32, f: impl FnOnce(&mut i32) -> i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(|| f(error))) {
        Ok(r) => r,
        Err(_) => {
            *error = libc::EIO;
            -1
        }
    }
}

enum CompletionKind {
    Extern {
        callback: Option<CompletionFnPtr>,
        user: UserData,
    },
    Rust(Box<dyn FnMut(&mut i32) -> i32 + Send>),
}

/// Called once when an asynchronous command completes, with the command's
/// errno (0 for success). Returning 1 retires the command automatically;
/// returning -1 after storing a non-zero errno makes the command fail with it.
pub struct Completion(CompletionKind);

// SAFETY: C callers promise their callback and user data may be used from
// whichever thread drives the handle, as libnbd requires.
unsafe impl Send for Completion {}

impl Completion {
    /// A completion callback from a Rust closure.
    pub fn new(f: impl FnMut(&mut i32) -> i32 + Send + 'static) -> Completion {
        Completion(CompletionKind::Rust(Box::new(f)))
    }

    /// A completion callback from C's function, user data and free function.
    ///
    /// # Safety
    /// `callback` and `free` must be safe to call with `user_data`.
    pub unsafe fn from_c(
        callback: Option<CompletionFnPtr>,
        user_data: *mut c_void,
        free: Option<FreeFn>,
    ) -> Completion {
        Completion(CompletionKind::Extern {
            callback,
            user: UserData {
                data: user_data,
                free,
            },
        })
    }

    /// Whether there is a function to call (C may pass only a free function).
    pub fn is_callable(&self) -> bool {
        match &self.0 {
            CompletionKind::Extern { callback, .. } => callback.is_some(),
            CompletionKind::Rust(_) => true,
        }
    }

    pub(crate) fn call(&mut self, error: &mut i32) -> i32 {
        match &mut self.0 {
            CompletionKind::Extern { callback, user } => match callback {
                // SAFETY: from_c's caller promised f may be called with
                // this user data; error is a live &mut i32.
                Some(f) => unsafe { f(user.data, error) },
                None => 0,
            },
            CompletionKind::Rust(f) => guarded(error, |e| f(e)),
        }
    }
}

enum ChunkKind {
    Extern {
        callback: Option<ChunkFnPtr>,
        user: UserData,
    },
    #[allow(clippy::type_complexity)]
    Rust(Box<dyn FnMut(&[u8], u64, u32, &mut i32) -> i32 + Send>),
}

/// Called for each chunk of a structured read: the bytes, their offset in
/// the export, the status (`LIBNBD_READ_DATA`, `_HOLE` or `_ERROR`), and the
/// command's errno so far. Returning -1 after storing an errno fails the
/// command (the rest of the reply is still read).
pub struct Chunk(ChunkKind);

// SAFETY: as for Completion.
unsafe impl Send for Chunk {}

impl Chunk {
    /// A chunk callback from a Rust closure.
    pub fn new(f: impl FnMut(&[u8], u64, u32, &mut i32) -> i32 + Send + 'static) -> Chunk {
        Chunk(ChunkKind::Rust(Box::new(f)))
    }

    /// A chunk callback from C's function, user data and free function.
    ///
    /// # Safety
    /// `callback` and `free` must be safe to call with `user_data`.
    pub unsafe fn from_c(
        callback: Option<ChunkFnPtr>,
        user_data: *mut c_void,
        free: Option<FreeFn>,
    ) -> Chunk {
        Chunk(ChunkKind::Extern {
            callback,
            user: UserData {
                data: user_data,
                free,
            },
        })
    }

    /// Whether there is a function to call.
    pub fn is_callable(&self) -> bool {
        match &self.0 {
            ChunkKind::Extern { callback, .. } => callback.is_some(),
            ChunkKind::Rust(_) => true,
        }
    }

    /// Calls the function for `len` bytes at `data` (export offset `offset`).
    ///
    /// # Safety
    /// `data` must be valid for reads of `len` bytes.
    pub(crate) unsafe fn call(
        &mut self,
        data: *const u8,
        len: usize,
        offset: u64,
        status: u32,
        error: &mut i32,
    ) -> i32 {
        match &mut self.0 {
            ChunkKind::Extern { callback, user } => match callback {
                // SAFETY: the C caller promised f may be called with its
                // user data; data holds len readable bytes (our contract).
                Some(f) => unsafe { f(user.data, data.cast(), len, offset, status, error) },
                None => 0,
            },
            ChunkKind::Rust(f) => {
                let bytes = if len == 0 {
                    &[][..]
                } else {
                    // SAFETY: data holds len readable bytes (our contract).
                    unsafe { std::slice::from_raw_parts(data, len) }
                };
                guarded(error, |e| f(bytes, offset, status, e))
            }
        }
    }
}

/// Declares a callback type that is either a Rust closure or a C function
/// with user data and a free function; `$call` invokes the C function.
macro_rules! callback_type {
    (
        $(#[$doc:meta])*
        $name:ident, $kind:ident, $fnptr:ty, rust: $rust:ty
    ) => {
        enum $kind {
            Extern { callback: Option<$fnptr>, user: UserData },
            Rust(Box<$rust>),
        }

        $(#[$doc])*
        pub struct $name($kind);

        // SAFETY: as for Completion.
        unsafe impl Send for $name {}

        impl $name {
            /// The callback from C's function, user data and free function.
            ///
            /// # Safety
            /// `callback` and `free` must be safe to call with `user_data`.
            pub unsafe fn from_c(
                callback: Option<$fnptr>,
                user_data: *mut c_void,
                free: Option<FreeFn>,
            ) -> $name {
                $name($kind::Extern {
                    callback,
                    user: UserData { data: user_data, free },
                })
            }

            /// Whether there is a function to call.
            pub fn is_callable(&self) -> bool {
                match &self.0 {
                    $kind::Extern { callback, .. } => callback.is_some(),
                    $kind::Rust(_) => true,
                }
            }
        }
    };
}

/// A C export-list callback function.
pub type ListFnPtr = unsafe extern "C" fn(
    user_data: *mut c_void,
    name: *const std::ffi::c_char,
    description: *const std::ffi::c_char,
) -> c_int;
/// A C meta-context callback function.
pub type ContextFnPtr =
    unsafe extern "C" fn(user_data: *mut c_void, name: *const std::ffi::c_char) -> c_int;
/// A C extent callback function (32-bit entries).
pub type ExtentFnPtr = unsafe extern "C" fn(
    user_data: *mut c_void,
    metacontext: *const std::ffi::c_char,
    offset: u64,
    entries: *mut u32,
    nr_entries: usize,
    error: *mut c_int,
) -> c_int;
/// One extent of a 64-bit block status reply, as C sees it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent64 {
    /// Length of the extent in bytes.
    pub length: u64,
    /// Its status flags (`LIBNBD_STATE_*` for `base:allocation`).
    pub flags: u64,
}
/// A C extent callback function (64-bit entries).
pub type Extent64FnPtr = unsafe extern "C" fn(
    user_data: *mut c_void,
    metacontext: *const std::ffi::c_char,
    offset: u64,
    entries: *mut Extent64,
    nr_entries: usize,
    error: *mut c_int,
) -> c_int;

callback_type! {
    /// Called for each export the server lists: its name and description.
    List, ListKind, ListFnPtr, rust: dyn FnMut(&str, &str) -> i32 + Send
}

callback_type! {
    /// Called for each metadata context the server lists or agrees to.
    Context, ContextKind, ContextFnPtr, rust: dyn FnMut(&str) -> i32 + Send
}

/// An extent callback function with entries of type `E`: the shape
/// [`ExtentFnPtr`] and [`Extent64FnPtr`] share.
type ExtentFnOf<E> = unsafe extern "C" fn(
    user_data: *mut c_void,
    metacontext: *const std::ffi::c_char,
    offset: u64,
    entries: *mut E,
    nr_entries: usize,
    error: *mut c_int,
) -> c_int;

/// The one implementation behind [`Extent`] and [`Extent64Cb`], which
/// differ only in the type of their entries.
enum ExtentKind<E> {
    Extern {
        callback: Option<ExtentFnOf<E>>,
        user: UserData,
    },
    #[allow(clippy::type_complexity)]
    Rust(Box<dyn FnMut(&str, u64, &[E], &mut i32) -> i32 + Send>),
}

impl<E> ExtentKind<E> {
    fn is_callable(&self) -> bool {
        match self {
            ExtentKind::Extern { callback, .. } => callback.is_some(),
            ExtentKind::Rust(_) => true,
        }
    }

    fn call(
        &mut self,
        context: &std::ffi::CStr,
        offset: u64,
        entries: &mut [E],
        error: &mut i32,
    ) -> i32 {
        match self {
            ExtentKind::Extern { callback, user } => match callback {
                // SAFETY: the C caller's contract; entries is valid.
                Some(f) => unsafe {
                    f(
                        user.data,
                        context.as_ptr(),
                        offset,
                        entries.as_mut_ptr(),
                        entries.len(),
                        error,
                    )
                },
                None => 0,
            },
            ExtentKind::Rust(f) => {
                let name = context.to_string_lossy();
                guarded(error, |e| f(&name, offset, entries, e))
            }
        }
    }
}

/// Declares an extent callback type with entries of type `$entry`, C
/// function type `$fnptr`, over [`ExtentKind`].
macro_rules! extent_type {
    (
        $(#[$doc:meta])*
        $name:ident, $entry:ty, $fnptr:ty
    ) => {
        $(#[$doc])*
        pub struct $name(ExtentKind<$entry>);

        // SAFETY: as for Completion.
        unsafe impl Send for $name {}

        impl $name {
            /// The callback from a Rust closure.
            pub fn new(
                f: impl FnMut(&str, u64, &[$entry], &mut i32) -> i32 + Send + 'static,
            ) -> $name {
                $name(ExtentKind::Rust(Box::new(f)))
            }

            /// The callback from C's function, user data and free function.
            ///
            /// # Safety
            /// `callback` and `free` must be safe to call with `user_data`.
            pub unsafe fn from_c(
                callback: Option<$fnptr>,
                user_data: *mut c_void,
                free: Option<FreeFn>,
            ) -> $name {
                $name(ExtentKind::Extern {
                    callback,
                    user: UserData {
                        data: user_data,
                        free,
                    },
                })
            }

            /// Whether there is a function to call.
            pub fn is_callable(&self) -> bool {
                self.0.is_callable()
            }

            pub(crate) fn call(
                &mut self,
                context: &std::ffi::CStr,
                offset: u64,
                entries: &mut [$entry],
                error: &mut i32,
            ) -> i32 {
                self.0.call(context, offset, entries, error)
            }
        }
    };
}

extent_type! {
    /// Called with each context's extents of a block status reply: the
    /// context name, the request's offset, and (length, flags) pairs.
    Extent, u32, ExtentFnPtr
}

extent_type! {
    /// As [`Extent`], with 64-bit extents.
    Extent64Cb, Extent64, Extent64FnPtr
}

fn c_string(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl List {
    /// A list callback from a Rust closure.
    pub fn new(f: impl FnMut(&str, &str) -> i32 + Send + 'static) -> List {
        List(ListKind::Rust(Box::new(f)))
    }

    pub(crate) fn call(&mut self, name: &str, description: &str) -> i32 {
        match &mut self.0 {
            ListKind::Extern { callback, user } => match callback {
                Some(f) => {
                    let (n, d) = (c_string(name), c_string(description));
                    // SAFETY: from_c's caller promised f may be called with
                    // this user data; n and d are NUL-terminated and live
                    // across the call.
                    unsafe { f(user.data, n.as_ptr(), d.as_ptr()) }
                }
                None => 0,
            },
            ListKind::Rust(f) => guarded(&mut 0, |_| f(name, description)),
        }
    }
}

impl Context {
    /// A context callback from a Rust closure.
    pub fn new(f: impl FnMut(&str) -> i32 + Send + 'static) -> Context {
        Context(ContextKind::Rust(Box::new(f)))
    }

    pub(crate) fn call(&mut self, name: &str) -> i32 {
        match &mut self.0 {
            ContextKind::Extern { callback, user } => match callback {
                Some(f) => {
                    let n = c_string(name);
                    // SAFETY: from_c's caller promised f may be called with
                    // this user data; n is NUL-terminated and lives across
                    // the call.
                    unsafe { f(user.data, n.as_ptr()) }
                }
                None => 0,
            },
            ContextKind::Rust(f) => guarded(&mut 0, |_| f(name)),
        }
    }
}
