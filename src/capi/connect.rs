//! Connecting: `nbd_connect_command` and its subprocess.

use std::ffi::{c_char, c_int, CStr};

use super::{check_nonnull, nbd_handle, with_handle};

/// Runs `argv` as a server subprocess and connects to it.
#[no_mangle]
pub extern "C" fn nbd_connect_command(h: *mut nbd_handle, argv: *mut *mut c_char) -> c_int {
    with_handle("nbd_connect_command", h, -1, |h| {
        check_nonnull(argv, "argv")?;
        // SAFETY: the caller passes a NULL-terminated array of C strings.
        let args = unsafe { argv_from_c(argv) };
        h.connect_command(&args).map(|()| 0)
    })
}

/// The process id of the server subprocess.
#[no_mangle]
pub extern "C" fn nbd_get_subprocess_pid(h: *mut nbd_handle) -> i64 {
    with_handle("nbd_get_subprocess_pid", h, -1, |h| {
        h.subprocess_pid().map(i64::from)
    })
}

/// Sends a signal (SIGTERM if 0) to the server subprocess.
#[no_mangle]
pub extern "C" fn nbd_kill_subprocess(h: *mut nbd_handle, signum: c_int) -> c_int {
    with_handle("nbd_kill_subprocess", h, -1, |h| {
        h.kill_subprocess(signum).map(|()| 0)
    })
}

/// Borrows a NULL-terminated C `argv` as byte strings.
///
/// # Safety
/// `argv` must point to a NULL-terminated array of NUL-terminated strings.
unsafe fn argv_from_c<'a>(argv: *const *mut c_char) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut p = argv;
    while !(*p).is_null() {
        out.push(CStr::from_ptr(*p).to_bytes());
        p = p.add(1);
    }
    out
}
