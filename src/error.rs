//! The error type of the safe API.

use std::borrow::Cow;
use std::fmt;

/// An error from a libnbd call: a message, the errno that goes with it
/// (`nbd_get_error` and `nbd_get_errno` in C), and whether the handle is
/// dead now.
///
/// `Display` gives libnbd's shape without the call name:
/// the message, then `": "` and `strerror(errno)` when errno is non-zero.
///
/// ```
/// let e = nbd::Error::new(libc::EINVAL, "flags: invalid value for flag: 0x4");
/// assert_eq!(e.errno(), libc::EINVAL);
/// assert_eq!(e.to_string(), "flags: invalid value for flag: 0x4: Invalid argument");
/// assert!(!e.is_fatal());
/// // Into std::io::Error, keeping the errno.
/// let io: std::io::Error = e.into();
/// assert_eq!(io.raw_os_error(), Some(libc::EINVAL));
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    errno: i32,
    message: Cow<'static, str>,
    fatal: bool,
}

impl Error {
    /// An error with this errno (0 for none) and message.
    pub fn new(errno: i32, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            errno,
            message: message.into(),
            fatal: false,
        }
    }

    /// The same error, marked as one after which the handle is dead.
    pub(crate) fn into_fatal(mut self) -> Error {
        self.fatal = true;
        self
    }

    /// Whether the handle was dead when the call returned this error
    /// (`nbd_aio_is_dead` would say so): the connection is lost or broken
    /// and only closing the handle remains. An error that leaves the
    /// connection usable (a bad argument, a command the server failed) is
    /// not fatal.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// An error from an I/O error, prefixed with what was being done (`"recv"`, `"send"`).
    pub fn io(what: &str, err: &std::io::Error) -> Error {
        Error::new(err.raw_os_error().unwrap_or(libc::EIO), what.to_string())
    }

    /// The errno libnbd would report (0 when libnbd reports none).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The message, without the strerror suffix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.errno != 0 {
            write!(f, ": {}", strerror(self.errno))?;
        }
        Ok(())
    }
}

impl From<Error> for std::io::Error {
    /// An I/O error carrying the errno ([`std::io::Error::raw_os_error`],
    /// and so its [`std::io::ErrorKind`]); its text is then `strerror`'s,
    /// not the message, so log the [`Error`] first where the message
    /// matters. An error without errno becomes `ErrorKind::Other` with the
    /// error inside.
    fn from(e: Error) -> std::io::Error {
        if e.errno != 0 {
            std::io::Error::from_raw_os_error(e.errno)
        } else {
            std::io::Error::other(e)
        }
    }
}

/// The result type of the safe API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The C library's text for an errno, as `strerror(3)` gives it.
pub fn strerror(errno: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length; strerror_r (XSI form,
    // which libc binds on glibc) writes at most that much.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) };
    match std::ffi::CStr::from_bytes_until_nul(&buf) {
        Ok(text) if rc == 0 => text.to_string_lossy().into_owned(),
        _ => format!("Unknown error {errno}"),
    }
}

#[cfg(test)]
mod tests {
    use super::strerror;

    #[test]
    fn strerror_gives_the_c_library_text() {
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(libc::EINVAL), "Invalid argument");
        assert_eq!(strerror(123456), "Unknown error 123456");
    }
}
