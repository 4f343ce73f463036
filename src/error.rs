//! The error type of the safe API.

use std::borrow::Cow;
use std::fmt;

/// An error from a libnbd call: a message and the errno that goes with it.
///
/// `Display` gives libnbd's shape without the call name:
/// the message, then `": "` and `strerror(errno)` when errno is non-zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    errno: i32,
    message: Cow<'static, str>,
}

impl Error {
    /// An error with this errno (0 for none) and message.
    pub fn new(errno: i32, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            errno,
            message: message.into(),
        }
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
