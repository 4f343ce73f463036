//! Handshake and strictness settings, export introspection, debug
//! callbacks and traffic statistics.

use super::{Handle, INFO_STATES};
use crate::conn::{Conn, DebugCallback, Perm};
use crate::flags::raw::{LIBNBD_HANDSHAKE_FLAG_MASK, LIBNBD_STRICT_MASK};
use crate::proto;
use crate::{Error, HandshakeFlag, Result, Size, Strict};

/// States in which the handshake settings may still change.
const BEFORE_GO: &[Perm] = &[Perm::Created, Perm::Negotiating];

/// libnbd's error for bits outside a flags parameter's mask.
fn invalid_flags(param: &str, value: u32) -> Error {
    Error::new(
        libc::EINVAL,
        format!("{param}: invalid value for flag: 0x{value:x}"),
    )
}

/// Fails when the server has not told us the export's flags yet (in option
/// mode before `nbd_opt_info`, or after a failed `nbd_opt_go`).
pub(super) fn check_export_known(c: &Conn) -> Result<()> {
    if c.negotiated.export.flags == 0 {
        return Err(Error::new(
            libc::EINVAL,
            "server has not returned export flags, you need to connect to the server first",
        ));
    }
    Ok(())
}

impl Handle {
    // ---- handshake settings ---------------------------------------------------

    /// Limits the handshake flags the client will use
    /// (`LIBNBD_HANDSHAKE_FLAG_*`; default both). Only before connecting.
    ///
    /// libnbd: `nbd_set_handshake_flags`.
    pub fn set_handshake_flags(&self, flags: HandshakeFlag) -> Result<()> {
        let flags = flags.bits();
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        if flags & !LIBNBD_HANDSHAKE_FLAG_MASK != 0 {
            return Err(invalid_flags("flags", flags));
        }
        c.settings.handshake_flags = flags;
        Ok(())
    }

    /// The handshake flags: those the client will offer before connecting,
    /// those agreed with the server after.
    ///
    /// libnbd: `nbd_get_handshake_flags`.
    pub fn handshake_flags(&self) -> HandshakeFlag {
        HandshakeFlag::from_bits_retain(self.lock().settings.handshake_flags)
    }

    /// Chooses which `LIBNBD_STRICT_*` checks are done client-side
    /// (default all).
    ///
    /// libnbd: `nbd_set_strict_mode`.
    pub fn set_strict_mode(&self, flags: Strict) -> Result<()> {
        let flags = flags.bits();
        let mut c = self.lock();
        if flags & !LIBNBD_STRICT_MASK != 0 {
            return Err(invalid_flags("flags", flags));
        }
        c.settings.strict = flags;
        Ok(())
    }

    /// The `LIBNBD_STRICT_*` checks in force.
    ///
    /// libnbd: `nbd_get_strict_mode`.
    pub fn strict_mode(&self) -> Strict {
        Strict::from_bits_retain(self.lock().settings.strict)
    }

    /// Whether read buffers are zeroed before each read (default true).
    ///
    /// libnbd: `nbd_set_pread_initialize`.
    pub fn set_pread_initialize(&self, request: bool) -> Result<()> {
        self.lock().settings.pread_initialize = request;
        Ok(())
    }

    /// Whether read buffers are zeroed before each read.
    ///
    /// libnbd: `nbd_get_pread_initialize`.
    pub fn pread_initialize(&self) -> bool {
        self.lock().settings.pread_initialize
    }

    /// Sets how long a synchronous command may spin, checking the socket
    /// without sleeping, before it sleeps in `poll` (microseconds; 0 never
    /// spins). Spinning is opt-in: the default is 0, or
    /// `LIBNBD_SPIN_USEC` from the environment on machines with more than
    /// one CPU online. About 50 suits a server on the same machine when
    /// CPUs are idle: 4 KiB operations then ran 1.1-1.2 times as fast for
    /// about 1.7 times the client CPU each (slower when the CPUs are busy,
    /// BENCHMARKS.md). An extension: libnbd always sleeps.
    ///
    /// Beyond libnbd (no C call).
    pub fn set_spin_usec(&self, usec: u32) {
        self.lock().spin = crate::spin::SpinPolicy::new(usec);
    }

    /// The spin budget of synchronous commands, in microseconds.
    ///
    /// Beyond libnbd (no C call).
    pub fn spin_usec(&self) -> u32 {
        self.lock().spin.usec()
    }

    /// Whether `NBD_OPT_GO` asks the server for its block sizes (default true).
    ///
    /// libnbd: `nbd_set_request_block_size`.
    pub fn set_request_block_size(&self, request: bool) -> Result<()> {
        let mut c = self.lock();
        c.check_state(BEFORE_GO)?;
        c.settings.request_block_size = request;
        Ok(())
    }

    /// Whether block sizes will be asked for.
    ///
    /// libnbd: `nbd_get_request_block_size`.
    pub fn request_block_size(&self) -> bool {
        self.lock().settings.request_block_size
    }

    /// Whether `NBD_OPT_GO` also asks for the export's canonical name and
    /// description (default false).
    ///
    /// libnbd: `nbd_set_full_info`.
    pub fn set_full_info(&self, request: bool) -> Result<()> {
        let mut c = self.lock();
        c.check_state(BEFORE_GO)?;
        c.settings.full_info = request;
        Ok(())
    }

    /// Whether the canonical name and description will be asked for.
    ///
    /// libnbd: `nbd_get_full_info`.
    pub fn full_info(&self) -> bool {
        self.lock().settings.full_info
    }

    // ---- export introspection -------------------------------------------------

    /// A block size constraint (`nbd_get_block_size`); `None` when the
    /// server gave none. [`Size::Payload`] is always given: the largest
    /// payload this client sends, between 1M and 64M, the server's maximum
    /// when possible.
    pub fn block_size(&self, which: Size) -> Result<Option<u64>> {
        self.block_size_c(which as i32)
            .map(|v| if v == 0 { None } else { Some(v as u64) })
    }

    /// [`Handle::block_size`] with a `LIBNBD_SIZE_*` value, checked after
    /// the handle's state as libnbd does; 0 when the server gave none.
    pub(crate) fn block_size_c(&self, size_type: i32) -> Result<i64> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        let Some(which) = Size::from_raw(size_type) else {
            return Err(Error::new(
                libc::EINVAL,
                format!("size_type: invalid value for parameter: {size_type}"),
            ));
        };
        check_export_known(&c)?;
        let n = &c.negotiated;
        Ok(match which {
            Size::Minimum => n.block_minimum as i64,
            Size::Preferred => n.block_preferred as i64,
            Size::Maximum => n.block_maximum as i64,
            Size::Payload => n.payload_maximum() as i64,
        })
    }

    /// The export's canonical name (`nbd_get_canonical_export_name`);
    /// `None` when the server did not send one (servers send it when asked:
    /// [`Handle::set_full_info`]). Fails before the handshake.
    pub fn canonical_export_name(&self) -> Result<Option<Vec<u8>>> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        check_export_known(&c)?;
        Ok(c.negotiated.canonical_name.clone())
    }

    /// The export's description (`nbd_get_export_description`); `None`
    /// when the server did not send one. Fails before the handshake.
    pub fn export_description(&self) -> Result<Option<Vec<u8>>> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        check_export_known(&c)?;
        Ok(c.negotiated.description.clone())
    }

    /// The export is on a rotational medium (seeks are costly).
    ///
    /// libnbd: `nbd_is_rotational`.
    pub fn is_rotational(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_ROTATIONAL)
    }

    /// The server supports `LIBNBD_CMD_FLAG_DF` on structured reads.
    ///
    /// libnbd: `nbd_can_df`.
    pub fn can_df(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_DF)
    }

    /// The server supports `LIBNBD_CMD_FLAG_FAST_ZERO` on zero requests.
    ///
    /// libnbd: `nbd_can_fast_zero`.
    pub fn can_fast_zero(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_FAST_ZERO)
    }

    /// The server supports `LIBNBD_CMD_FLAG_PAYLOAD_LEN` on block status
    /// (never without extended headers).
    ///
    /// libnbd: `nbd_can_block_status_payload`.
    pub fn can_block_status_payload(&self) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        check_export_known(&c)?;
        Ok(c.negotiated.extended_headers
            && c.negotiated.export.flags & proto::NBD_FLAG_BLOCK_STAT_PAYLOAD != 0)
    }

    // ---- debug ------------------------------------------------------------------

    /// Sends debug messages to `f(context, message)` instead of stderr.
    /// Replaces (and frees) any previous callback. `f` runs with the handle
    /// locked: it must not call methods on this handle.
    ///
    /// libnbd: `nbd_set_debug_callback`.
    pub fn set_debug_callback(&self, f: impl Fn(&str, &str) + Send + 'static) -> Result<()> {
        self.lock().debug.set_callback(Some(DebugCallback::new(f)));
        Ok(())
    }

    /// Removes (and frees) the debug callback, if any; messages go to stderr.
    ///
    /// libnbd: `nbd_clear_debug_callback`.
    pub fn clear_debug_callback(&self) -> Result<()> {
        self.lock().debug.set_callback(None);
        Ok(())
    }

    /// Emits a debug message even if debugging has just been turned off.
    pub(crate) fn debug_emit(&self, msg: &str) {
        self.lock().debug.emit(msg);
    }

    // ---- statistics ---------------------------------------------------------------

    /// Bytes sent to the server so far.
    ///
    /// libnbd: `nbd_stats_bytes_sent`.
    pub fn stats_bytes_sent(&self) -> u64 {
        self.lock().stats.bytes_sent
    }

    /// Protocol chunks (options, requests) sent to the server so far.
    ///
    /// libnbd: `nbd_stats_chunks_sent`.
    pub fn stats_chunks_sent(&self) -> u64 {
        self.lock().stats.chunks_sent
    }

    /// Bytes received from the server so far.
    ///
    /// libnbd: `nbd_stats_bytes_received`.
    pub fn stats_bytes_received(&self) -> u64 {
        self.lock().stats.bytes_received
    }

    /// Protocol chunks (greeting, option replies, replies and reply
    /// chunks) received from the server so far.
    ///
    /// libnbd: `nbd_stats_chunks_received`.
    pub fn stats_chunks_received(&self) -> u64 {
        self.lock().stats.chunks_received
    }
}
