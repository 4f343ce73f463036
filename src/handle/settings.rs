//! Handshake and strictness settings, export introspection, debug
//! callbacks and traffic statistics.

use super::{Handle, INFO_STATES};
use crate::conn::DebugCallback;
use crate::flags::raw::{
    LIBNBD_SIZE_MAXIMUM, LIBNBD_SIZE_MINIMUM, LIBNBD_SIZE_PAYLOAD, LIBNBD_SIZE_PREFERRED,
};
use crate::proto;
use crate::{Error, Result};

/// A block size constraint ([`Handle::block_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSize {
    /// The smallest block the server handles without read-modify-write;
    /// requests should be aligned to it (`LIBNBD_SIZE_MINIMUM`).
    Minimum,
    /// The size the server prefers for efficient I/O (`LIBNBD_SIZE_PREFERRED`).
    Preferred,
    /// The largest read or write the server accepts (`LIBNBD_SIZE_MAXIMUM`).
    Maximum,
    /// The largest payload this client will send (`LIBNBD_SIZE_PAYLOAD`).
    Payload,
}

impl BlockSize {
    /// The `LIBNBD_SIZE_*` value.
    pub fn to_c(self) -> i32 {
        match self {
            BlockSize::Minimum => LIBNBD_SIZE_MINIMUM,
            BlockSize::Preferred => LIBNBD_SIZE_PREFERRED,
            BlockSize::Maximum => LIBNBD_SIZE_MAXIMUM,
            BlockSize::Payload => LIBNBD_SIZE_PAYLOAD,
        }
    }

    /// The constraint a `LIBNBD_SIZE_*` value names, if any.
    pub fn from_c(size_type: i32) -> Option<BlockSize> {
        match size_type {
            LIBNBD_SIZE_MINIMUM => Some(BlockSize::Minimum),
            LIBNBD_SIZE_PREFERRED => Some(BlockSize::Preferred),
            LIBNBD_SIZE_MAXIMUM => Some(BlockSize::Maximum),
            LIBNBD_SIZE_PAYLOAD => Some(BlockSize::Payload),
            _ => None,
        }
    }
}

impl Handle {
    // ---- handshake settings ---------------------------------------------------

    /// Limits the handshake flags the client will use
    /// (`LIBNBD_HANDSHAKE_FLAG_*`; default both). Only before connecting.
    pub fn set_handshake_flags(&self, flags: u32) -> Result<()> {
        self.lock().set_handshake_flags(flags)
    }

    /// The handshake flags: those the client will offer before connecting,
    /// those agreed with the server after.
    pub fn handshake_flags(&self) -> u32 {
        self.lock().handshake_flags()
    }

    /// Chooses which `LIBNBD_STRICT_*` checks are done client-side
    /// (default all).
    pub fn set_strict_mode(&self, flags: u32) -> Result<()> {
        self.lock().set_strict_mode(flags)
    }

    /// The `LIBNBD_STRICT_*` checks in force.
    pub fn strict_mode(&self) -> u32 {
        self.lock().strict_mode()
    }

    /// Whether read buffers are zeroed before each read (default true).
    pub fn set_pread_initialize(&self, request: bool) -> Result<()> {
        self.lock().set_pread_initialize(request);
        Ok(())
    }

    /// Whether read buffers are zeroed before each read.
    pub fn pread_initialize(&self) -> bool {
        self.lock().pread_initialize()
    }

    /// Sets how long a synchronous command may spin, checking the socket
    /// without sleeping, before it sleeps in `poll` (microseconds; 0 never
    /// spins). Spinning is opt-in: the default is 0, or
    /// `LIBNBD_SPIN_USEC` from the environment on machines with more than
    /// one CPU online. About 50 suits a server on the same machine when
    /// CPUs are idle: 4 KiB operations then ran 1.1-1.2 times as fast for
    /// about 1.7 times the client CPU each (slower when the CPUs are busy,
    /// BENCHMARKS.md). An extension: libnbd always sleeps.
    pub fn set_spin_usec(&self, usec: u32) {
        self.lock().set_spin_usec(usec);
    }

    /// The spin budget of synchronous commands, in microseconds.
    pub fn spin_usec(&self) -> u32 {
        self.lock().spin().usec()
    }

    /// Whether `NBD_OPT_GO` asks the server for its block sizes (default true).
    pub fn set_request_block_size(&self, request: bool) -> Result<()> {
        self.lock().set_request_block_size(request)
    }

    /// Whether block sizes will be asked for.
    pub fn request_block_size(&self) -> bool {
        self.lock().request_block_size()
    }

    /// Whether `NBD_OPT_GO` also asks for the export's canonical name and
    /// description (default false).
    pub fn set_full_info(&self, request: bool) -> Result<()> {
        self.lock().set_full_info(request)
    }

    /// Whether the canonical name and description will be asked for.
    pub fn full_info(&self) -> bool {
        self.lock().full_info()
    }

    // ---- export introspection -------------------------------------------------

    /// A block size constraint; 0 when the server gave none.
    /// [`BlockSize::Payload`] is never 0: the largest payload this client
    /// sends, between 1M and 64M, the server's maximum when possible.
    pub fn block_size(&self, which: BlockSize) -> Result<u64> {
        self.block_size_c(which.to_c()).map(|v| v as u64)
    }

    /// [`Handle::block_size`] with a `LIBNBD_SIZE_*` value, checked after
    /// the handle's state as libnbd does.
    pub(crate) fn block_size_c(&self, size_type: i32) -> Result<i64> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        let Some(which) = BlockSize::from_c(size_type) else {
            return Err(Error::new(
                libc::EINVAL,
                format!("size_type: invalid value for parameter: {size_type}"),
            ));
        };
        c.check_export_known()?;
        Ok(match which {
            BlockSize::Minimum => c.block_minimum() as i64,
            BlockSize::Preferred => c.block_preferred() as i64,
            BlockSize::Maximum => c.block_maximum() as i64,
            BlockSize::Payload => c.payload_maximum() as i64,
        })
    }

    /// The export's canonical name, if the server sent one (ENOTSUP if not).
    pub fn canonical_export_name(&self) -> Result<Vec<u8>> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        c.check_export_known()?;
        c.canonical_name()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::new(libc::ENOTSUP, "server did not advertise a canonical name"))
    }

    /// The export's description, if the server sent one (ENOTSUP if not).
    pub fn export_description(&self) -> Result<Vec<u8>> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        c.check_export_known()?;
        c.description()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::new(libc::ENOTSUP, "server did not advertise a description"))
    }

    /// The export is on a rotational medium (seeks are costly).
    pub fn is_rotational(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_ROTATIONAL)
    }

    /// The server supports `LIBNBD_CMD_FLAG_DF` on structured reads.
    pub fn can_df(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_DF)
    }

    /// The server supports `LIBNBD_CMD_FLAG_FAST_ZERO` on zero requests.
    pub fn can_fast_zero(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_FAST_ZERO)
    }

    /// The server supports `LIBNBD_CMD_FLAG_PAYLOAD_LEN` on block status
    /// (never without extended headers).
    pub fn can_block_status_payload(&self) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        c.check_export_known()?;
        Ok(c.extended_headers() && c.can(proto::NBD_FLAG_BLOCK_STAT_PAYLOAD))
    }

    // ---- debug ------------------------------------------------------------------

    /// Sends debug messages to `f(context, message)` instead of stderr.
    /// Replaces (and frees) any previous callback. `f` runs with the handle
    /// locked: it must not call methods on this handle.
    pub fn set_debug_callback(&self, f: impl Fn(&str, &str) + Send + 'static) -> Result<()> {
        self.lock().set_debug_callback(Some(DebugCallback::new(f)));
        Ok(())
    }

    /// Removes (and frees) the debug callback, if any; messages go to stderr.
    pub fn clear_debug_callback(&self) -> Result<()> {
        self.lock().set_debug_callback(None);
        Ok(())
    }

    /// Emits a debug message even if debugging has just been turned off.
    pub(crate) fn debug_emit(&self, msg: &str) {
        self.lock().debug_emit(msg);
    }

    // ---- statistics ---------------------------------------------------------------

    /// Bytes sent to the server so far.
    pub fn stats_bytes_sent(&self) -> u64 {
        self.lock().stats().bytes_sent
    }

    /// Protocol chunks (options, requests) sent to the server so far.
    pub fn stats_chunks_sent(&self) -> u64 {
        self.lock().stats().chunks_sent
    }

    /// Bytes received from the server so far.
    pub fn stats_bytes_received(&self) -> u64 {
        self.lock().stats().bytes_received
    }

    /// Protocol chunks (greeting, option replies, replies and reply
    /// chunks) received from the server so far.
    pub fn stats_chunks_received(&self) -> u64 {
        self.lock().stats().chunks_received
    }
}
