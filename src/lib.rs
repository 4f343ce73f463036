//! rust-libnbd: a Network Block Device (NBD) client library.
//!
//! The safe Rust API is [`Handle`]; the C ABI of libnbd (`libnbd.h`,
//! `libnbd.so.0`) is a thin layer over it.
//!
//! Layers, each calling only downwards: [`proto`] (wire format, no I/O) →
//! `conn` (the non-blocking connection state machine) → `transport`
//! (sockets and subprocesses) → [`Handle`] → `capi`.

pub mod abi;
#[cfg(feature = "tokio")]
mod asyncio;
#[cfg(feature = "tokio")]
mod asyncio_multi;
pub mod callback;
mod capi;
mod conn;
mod error;
mod flags;
mod handle;
#[cfg(feature = "log")]
mod logging;
pub mod multiconn;
mod owned;
pub mod proto;
mod spin;
mod transport;
mod uri;

#[cfg(feature = "tokio")]
pub use asyncio::{AsyncHandle, ContextExtents, Export};
#[cfg(feature = "tokio")]
pub use asyncio_multi::AsyncMultiConn;
pub use callback::{Chunk, Completion, Context, Extent, Extent64, Extent64Cb, List};
pub use error::{strerror, Error, Result};
pub use flags::{
    AllowTransport, CmdFlag, Direction, HandshakeFlag, IpFamily, ReadStatus, Shutdown, Size,
    Strict, Tls,
};
pub use handle::{BlockSize, Handle, ServerAddr};
#[cfg(feature = "log")]
pub use logging::log_to_log_crate;
pub use multiconn::{MultiConn, MultiConnBuilder, MultiCookie};
pub use owned::OwnedCommand;
pub use transport::TlsCredentials;
