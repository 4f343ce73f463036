//! rust-libnbd: a Network Block Device (NBD) client library.
//!
//! The safe Rust API is [`Handle`]; the C ABI of libnbd (`libnbd.h`,
//! `libnbd.so.0`) is a thin layer over it.
//!
//! Layers, each calling only downwards: [`proto`] (wire format, no I/O) →
//! `conn` (the non-blocking connection state machine) → `transport`
//! (sockets and subprocesses) → [`Handle`] → `capi`.

pub mod abi;
pub mod callback;
mod capi;
mod conn;
mod error;
mod flags;
mod handle;
pub mod multiconn;
pub mod proto;
mod spin;
mod transport;
mod uri;

pub use callback::{Chunk, Completion, Context, Extent, Extent64, Extent64Cb, List};
pub use error::{strerror, Error, Result};
pub use flags::{
    AllowTransport, CmdFlag, Direction, HandshakeFlag, ReadStatus, Shutdown, Size, Strict, Tls,
};
pub use handle::{BlockSize, Handle};
pub use multiconn::{MultiConn, MultiConnBuilder, MultiCookie};
pub use transport::TlsCredentials;
