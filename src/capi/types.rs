//! The constants and callback structs of `libnbd.h`, with libnbd's names and values.
//!
//! The constants are spelled here as literals for cbindgen, which writes
//! them into the header; Rust code uses the core's typed flags (and
//! `flags::raw`), so most of them have no Rust user.
#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

pub const LIBNBD_TLS_DISABLE: c_int = 0;
pub const LIBNBD_TLS_ALLOW: c_int = 1;
pub const LIBNBD_TLS_REQUIRE: c_int = 2;

pub const LIBNBD_SIZE_MINIMUM: c_int = 0;
pub const LIBNBD_SIZE_PREFERRED: c_int = 1;
pub const LIBNBD_SIZE_MAXIMUM: c_int = 2;

pub const LIBNBD_CMD_FLAG_FUA: c_uint = 0x01;
pub const LIBNBD_CMD_FLAG_NO_HOLE: c_uint = 0x02;
pub const LIBNBD_CMD_FLAG_DF: c_uint = 0x04;
pub const LIBNBD_CMD_FLAG_REQ_ONE: c_uint = 0x08;
pub const LIBNBD_CMD_FLAG_FAST_ZERO: c_uint = 0x10;
pub const LIBNBD_CMD_FLAG_MASK: c_uint = 0x3f;

pub const LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE: c_uint = 0x01;
pub const LIBNBD_HANDSHAKE_FLAG_NO_ZEROES: c_uint = 0x02;
pub const LIBNBD_HANDSHAKE_FLAG_MASK: c_uint = 0x03;

pub const LIBNBD_STRICT_COMMANDS: c_uint = 0x01;
pub const LIBNBD_STRICT_FLAGS: c_uint = 0x02;
pub const LIBNBD_STRICT_BOUNDS: c_uint = 0x04;
pub const LIBNBD_STRICT_ZERO_SIZE: c_uint = 0x08;
pub const LIBNBD_STRICT_ALIGN: c_uint = 0x10;
pub const LIBNBD_STRICT_MASK: c_uint = 0x7f;

pub const LIBNBD_ALLOW_TRANSPORT_TCP: c_uint = 0x01;
pub const LIBNBD_ALLOW_TRANSPORT_UNIX: c_uint = 0x02;
pub const LIBNBD_ALLOW_TRANSPORT_VSOCK: c_uint = 0x04;
pub const LIBNBD_ALLOW_TRANSPORT_SSH: c_uint = 0x08;
pub const LIBNBD_ALLOW_TRANSPORT_MASK: c_uint = 0x0f;

pub const LIBNBD_SHUTDOWN_ABANDON_PENDING: c_uint = 0x10000;
pub const LIBNBD_SHUTDOWN_MASK: c_uint = 0x10000;

pub const LIBNBD_AIO_DIRECTION_READ: c_uint = 1;
pub const LIBNBD_AIO_DIRECTION_WRITE: c_uint = 2;
pub const LIBNBD_AIO_DIRECTION_BOTH: c_uint = 3;

pub const LIBNBD_READ_DATA: c_int = 1;
pub const LIBNBD_READ_HOLE: c_int = 2;
pub const LIBNBD_READ_ERROR: c_int = 3;

/// Called for each chunk of a structured read.
#[repr(C)]
pub struct nbd_chunk_callback {
    callback: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            subbuf: *const c_void,
            count: usize,
            offset: u64,
            status: c_uint,
            error: *mut c_int,
        ) -> c_int,
    >,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// Called once when an asynchronous command completes.
#[repr(C)]
pub struct nbd_completion_callback {
    callback: Option<unsafe extern "C" fn(user_data: *mut c_void, error: *mut c_int) -> c_int>,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// Called for each debug message.
#[repr(C)]
pub struct nbd_debug_callback {
    callback: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            context: *const c_char,
            msg: *const c_char,
        ) -> c_int,
    >,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// Called for each metadata context's extents in a block status reply.
#[repr(C)]
pub struct nbd_extent_callback {
    callback: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            metacontext: *const c_char,
            offset: u64,
            entries: *mut u32,
            nr_entries: usize,
            error: *mut c_int,
        ) -> c_int,
    >,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// Called for each export the server lists.
#[repr(C)]
pub struct nbd_list_callback {
    callback: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            name: *const c_char,
            description: *const c_char,
        ) -> c_int,
    >,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// Called for each metadata context the server lists or sets.
#[repr(C)]
pub struct nbd_context_callback {
    callback: Option<unsafe extern "C" fn(user_data: *mut c_void, name: *const c_char) -> c_int>,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

// Added after libnbd 1.14.

pub const LIBNBD_SIZE_PAYLOAD: c_int = 3;

pub const LIBNBD_CMD_FLAG_PAYLOAD_LEN: c_uint = 0x20;

pub const LIBNBD_STRICT_PAYLOAD: c_uint = 0x20;
pub const LIBNBD_STRICT_AUTO_FLAG: c_uint = 0x40;

// Metadata namespaces and contexts, and the extent flags of each context.
// (cbindgen skips string constants; `build.rs` writes the
// `LIBNBD_NAMESPACE_*` and `LIBNBD_CONTEXT_*` macros itself.)

pub const LIBNBD_NAMESPACE_BASE: &str = "base:";
pub const LIBNBD_CONTEXT_BASE_ALLOCATION: &str = "base:allocation";
pub const LIBNBD_STATE_HOLE: c_int = 1;
pub const LIBNBD_STATE_ZERO: c_int = 2;

pub const LIBNBD_NAMESPACE_QEMU: &str = "qemu:";
pub const LIBNBD_CONTEXT_QEMU_DIRTY_BITMAP: &str = "qemu:dirty-bitmap:";
pub const LIBNBD_CONTEXT_QEMU_ALLOCATION_DEPTH: &str = "qemu:allocation-depth";
pub const LIBNBD_STATE_DIRTY: c_int = 1;

/// One extent of a 64-bit block status reply: its length in bytes (never
/// above `INT64_MAX`) and the context's flags for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct nbd_extent {
    pub length: u64,
    pub flags: u64,
}

/// Called for each metadata context's extents in a 64-bit block status reply.
#[repr(C)]
pub struct nbd_extent64_callback {
    callback: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            metacontext: *const c_char,
            offset: u64,
            entries: *mut nbd_extent,
            nr_entries: usize,
            error: *mut c_int,
        ) -> c_int,
    >,
    user_data: *mut c_void,
    free: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

// The callback structs are made only by C callers: they are passed by
// value to the `unsafe extern "C"` calls, and their fields are private to
// this module (and they are neither Clone nor Copy). Whoever passes one
// promises, as libnbd's contract, that `callback` and `free` may be called
// with `user_data` (from whichever thread drives the handle), and hands
// `user_data` over to the library. `into_core` relies on that.
macro_rules! callback_into_core {
    ($($c:ident => $core:ty),* $(,)?) => {$(
        impl $c {
            /// The callback as the core's type, which now owns `user_data`
            /// (dropping it calls `free` once); None for libnbd's NULL
            /// closure, with neither a function nor a free function.
            pub(crate) fn into_core(self) -> Option<$core> {
                if self.callback.is_none() && self.free.is_none() {
                    return None;
                }
                // SAFETY: the struct's invariant (above): C's function and
                // free function may be called with its user_data, given
                // up to us; `self` is consumed, so this happens once.
                Some(unsafe { <$core>::from_c(self.callback, self.user_data, self.free) })
            }
        }
    )*};
}

callback_into_core!(
    nbd_completion_callback => crate::Completion,
    nbd_chunk_callback => crate::Chunk,
    nbd_list_callback => crate::List,
    nbd_context_callback => crate::Context,
    nbd_extent_callback => crate::callback::Extent,
);

// SAFETY: the struct's invariant (above): C's function and free function
// may be called with its user_data from whichever thread drives the handle.
unsafe impl Send for nbd_debug_callback {}

impl nbd_debug_callback {
    /// Whether this is libnbd's NULL closure: neither a function nor a
    /// free function.
    pub(crate) fn is_null(&self) -> bool {
        self.callback.is_none() && self.free.is_none()
    }

    /// Calls C's function, if there is one, with a message and its
    /// context; what it returns means nothing.
    pub(crate) fn call(&self, context: &CStr, msg: &CStr) {
        if let Some(f) = self.callback {
            // SAFETY: the struct's invariant: f may be called with its
            // user_data; both strings live until it returns.
            unsafe { f(self.user_data, context.as_ptr(), msg.as_ptr()) };
        }
    }
}

/// The debug callback is kept as it is (the handle's closure owns it):
/// dropping it, when it is replaced or cleared or the handle closed, or
/// when the call that got it fails, calls the free function.
impl Drop for nbd_debug_callback {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the struct's invariant: free may be called with its
            // user_data, given up to us; this is its one drop (it is
            // neither Clone nor Copy), so free runs once.
            unsafe { free(self.user_data) };
        }
    }
}

// nbd_extent and Extent64 are the same C struct: two uint64_t.
const _: () = assert!(
    std::mem::size_of::<nbd_extent>() == std::mem::size_of::<crate::callback::Extent64>()
        && std::mem::align_of::<nbd_extent>() == std::mem::align_of::<crate::callback::Extent64>()
);

impl nbd_extent64_callback {
    /// As the `into_core` of the other callback structs.
    pub(crate) fn into_core(self) -> Option<crate::callback::Extent64Cb> {
        if self.callback.is_none() && self.free.is_none() {
            return None;
        }
        // SAFETY: C's function takes `nbd_extent *`, which has Extent64's
        // layout (checked above), so it is also an Extent64FnPtr; and then
        // as in `callback_into_core`: the struct's invariant, consumed once.
        Some(unsafe {
            crate::callback::Extent64Cb::from_c(
                std::mem::transmute::<
                    Option<
                        unsafe extern "C" fn(
                            *mut c_void,
                            *const c_char,
                            u64,
                            *mut nbd_extent,
                            usize,
                            *mut c_int,
                        ) -> c_int,
                    >,
                    Option<crate::callback::Extent64FnPtr>,
                >(self.callback),
                self.user_data,
                self.free,
            )
        })
    }
}

// The C constants above are the Rust types' values: cbindgen needs them
// spelled as literals, and these checks keep the two from drifting.
const _: () = {
    use crate::flags::{AllowTransport, CmdFlag, HandshakeFlag, Shutdown, Size, Strict, Tls};
    assert!(LIBNBD_CMD_FLAG_MASK == CmdFlag::all().bits());
    assert!(LIBNBD_CMD_FLAG_FUA == CmdFlag::FUA.bits());
    assert!(LIBNBD_CMD_FLAG_NO_HOLE == CmdFlag::NO_HOLE.bits());
    assert!(LIBNBD_CMD_FLAG_DF == CmdFlag::DF.bits());
    assert!(LIBNBD_CMD_FLAG_REQ_ONE == CmdFlag::REQ_ONE.bits());
    assert!(LIBNBD_CMD_FLAG_FAST_ZERO == CmdFlag::FAST_ZERO.bits());
    assert!(LIBNBD_CMD_FLAG_PAYLOAD_LEN == CmdFlag::PAYLOAD_LEN.bits());
    assert!(LIBNBD_HANDSHAKE_FLAG_MASK == HandshakeFlag::all().bits());
    assert!(LIBNBD_STRICT_MASK == Strict::all().bits());
    assert!(LIBNBD_STRICT_PAYLOAD == Strict::PAYLOAD.bits());
    assert!(LIBNBD_STRICT_AUTO_FLAG == Strict::AUTO_FLAG.bits());
    assert!(LIBNBD_ALLOW_TRANSPORT_MASK == AllowTransport::all().bits());
    assert!(LIBNBD_SHUTDOWN_MASK == Shutdown::all().bits());
    assert!(LIBNBD_TLS_REQUIRE == Tls::Require as c_int);
    assert!(LIBNBD_SIZE_PAYLOAD == Size::Payload as c_int);
};
