#![warn(missing_docs)]
//! rust-libnbd: a Network Block Device (NBD) client library, in Rust.
//!
//! The same library serves C programs as a drop-in `libnbd.so.0` (the C
//! symbols are exported, `libnbd.h` describes them) and Rust programs
//! through the safe API here; no C library is needed.
//!
//! # Guide
//!
//! A [`Handle`] is one connection to one export (libnbd's
//! `struct nbd_handle`). Create it, adjust settings, connect, then issue
//! commands; each method names the libnbd call it corresponds to
//! (`Handle::pread` is `nbd_pread`, and so on).
//!
//! ```no_run
//! use nbd::{CmdFlag, Handle, Shutdown};
//!
//! # fn main() -> nbd::Result<()> {
//! let h = Handle::new()?;
//! // Runs nbdkit as a subprocess, speaking NBD over a socket pair.
//! h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])?;
//! // Or: h.connect_uri("nbd://localhost/export")?;
//! assert_eq!(h.size()?, 1024 * 1024);
//! h.pwrite(&[1u8; 512], 0, CmdFlag::FUA)?;
//! let mut buf = [0u8; 512];
//! h.pread(&mut buf, 0, CmdFlag::empty())?;
//! h.shutdown(Shutdown::empty())?;
//! # Ok(())
//! # }
//! ```
//!
//! Flags and modes are types: bit sets ([`CmdFlag`], [`Strict`],
//! [`HandshakeFlag`], [`AllowTransport`], [`Shutdown`], [`Direction`]) and
//! enums ([`Tls`], [`Size`]), with libnbd's values:
//!
//! ```
//! use nbd::{Handle, Strict, Tls};
//!
//! let h = Handle::new().unwrap();
//! assert_eq!(h.tls(), Tls::Disable);
//! h.set_tls(Tls::Allow).unwrap();
//! h.set_strict_mode(Strict::all() - Strict::BOUNDS).unwrap();
//! assert!(!h.strict_mode().contains(Strict::BOUNDS));
//! assert_eq!(Strict::BOUNDS.bits(), 4); // LIBNBD_STRICT_BOUNDS
//! // Nothing connected yet: a typed error with libnbd's errno.
//! let e = h.size().unwrap_err();
//! assert_eq!(e.errno(), libc::ENOTCONN);
//! assert!(!e.is_fatal());
//! ```
//!
//! Values a server may not send are `Option`s ([`Handle::block_size`],
//! [`Handle::export_description`], ...); lists come back as `Vec`s
//! ([`Handle::opt_list_exports`], [`Handle::block_status_extents`]) next
//! to libnbd's callback forms. Errors are [`Error`]: errno, message,
//! [`Error::is_fatal`], and `?` turns them into [`std::io::Error`].
//!
//! Beyond one handle: [`MultiConn`] spreads I/O over several connections
//! to one export; `AsyncHandle` (cargo feature `tokio`, on by default)
//! has `async fn` commands pipelined on one connection; the `aio_*`
//! methods with owned buffers ([`OwnedCommand`]) drive commands from an
//! event loop of your own. With the feature `log`, debug messages go to
//! the `log` crate (`log_to_log_crate`).
//!
//! Examples: `examples/get_size.rs`, `read_first_sector.rs`,
//! `connect_command.rs`, `read_write.rs` and `async_concurrent.rs`.

#[cfg(feature = "tokio")]
mod asyncio;
#[cfg(feature = "tokio")]
mod asyncio_multi;
mod callback;
mod capi;
mod conn;
mod error;
mod flags;
mod handle;
#[cfg(feature = "log")]
mod logging;
pub mod multiconn;
mod owned;
// The whole wire vocabulary, with the server-side encoders the tests'
// scripted servers use (through #[path]): not all of it is used here.
#[allow(dead_code)]
mod proto;
mod spin;
mod transport;
mod uri;

#[cfg(feature = "tokio")]
pub use asyncio::AsyncHandle;
#[cfg(feature = "tokio")]
pub use asyncio_multi::AsyncMultiConn;
pub use callback::{Chunk, Completion, Context, Extent, Extent64, Extent64Cb, List};
pub use error::{strerror, Error, Result};
pub use flags::{
    AllowTransport, CmdFlag, Direction, HandshakeFlag, IpFamily, ReadStatus, Shutdown, Size,
    Strict, Tls,
};
pub use handle::{ContextExtents, Export, Handle, ServerAddr};
#[cfg(feature = "log")]
pub use logging::log_to_log_crate;
pub use multiconn::{MultiConn, MultiConnBuilder, MultiCookie};
pub use owned::OwnedCommand;
pub use transport::TlsCredentials;
