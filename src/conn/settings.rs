//! What the handle layer may ask of a connection and set on it.
//!
//! `Conn`'s state is private to this module tree: the settings the caller
//! chooses, what the server told us, debugging, statistics and the spin
//! policy are reached only through these methods. A setter checks the
//! handle states libnbd allows it in (and the value, where libnbd checks
//! it after the state), so a call cannot change what the handshake is
//! already using.

use super::{Conn, DebugCallback, Perm, Stats};
use crate::flags::raw::{LIBNBD_HANDSHAKE_FLAG_MASK, LIBNBD_STRICT_MASK};
use crate::{proto, Error, Result};

/// States in which only a new handle may change a setting.
const CREATED: &[Perm] = &[Perm::Created];
/// States in which the settings `NBD_OPT_GO` uses may still change.
const BEFORE_GO: &[Perm] = &[Perm::Created, Perm::Negotiating];

/// libnbd's error for bits outside a flags parameter's mask.
pub(crate) fn invalid_flags(param: &str, value: u32) -> Error {
    Error::new(
        libc::EINVAL,
        format!("{param}: invalid value for flag: 0x{value:x}"),
    )
}

/// A boolean setting: its getter, and its setter allowed in `$states`.
macro_rules! bool_setting {
    ($(#[$doc:meta])* $get:ident, $set:ident, $($field:ident).+, $states:expr) => {
        $(#[$doc])*
        pub(crate) fn $get(&self) -> bool {
            self.$($field).+
        }

        /// Changes the setting of the same name; fails outside the
        /// states libnbd allows it in.
        pub(crate) fn $set(&mut self, value: bool) -> Result<()> {
            self.check_state($states)?;
            self.$($field).+ = value;
            Ok(())
        }
    };
}

impl Conn {
    // ---- the caller's handshake settings ----------------------------------

    /// The export name that will be (or was) asked for.
    pub(crate) fn export_name(&self) -> &[u8] {
        &self.settings.export_name
    }

    /// Sets the export name to ask for, before `NBD_OPT_GO`; forgets what
    /// the server said about the old one.
    pub(crate) fn set_export_name(&mut self, name: &[u8]) -> Result<()> {
        self.check_state(BEFORE_GO)?;
        if name.len() > proto::MAX_STRING_LEN {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                "export name too long for NBD protocol",
            ));
        }
        self.settings.export_name = name.to_vec();
        self.reset_export_info();
        self.negotiated.meta_valid = false;
        Ok(())
    }

    bool_setting!(
        /// Whether structured replies will be asked for.
        request_structured_replies,
        set_request_structured_replies,
        settings.request_structured_replies,
        CREATED
    );
    bool_setting!(
        /// Whether `NBD_OPT_GO` asks for the block sizes.
        request_block_size,
        set_request_block_size,
        settings.request_block_size,
        BEFORE_GO
    );
    bool_setting!(
        /// Whether `NBD_OPT_GO` asks for the canonical name and description.
        full_info,
        set_full_info,
        settings.full_info,
        BEFORE_GO
    );
    bool_setting!(
        /// Whether the handshake stops in option mode.
        opt_mode,
        set_opt_mode,
        settings.opt_mode,
        CREATED
    );
    bool_setting!(
        /// Whether GO/INFO first ask for the requested meta contexts.
        request_meta_context,
        set_request_meta_context,
        settings.request_meta_context,
        BEFORE_GO
    );
    bool_setting!(
        /// Whether extended headers will be asked for.
        request_extended_headers,
        set_request_extended_headers,
        settings.request_extended_headers,
        CREATED
    );

    /// The `LIBNBD_HANDSHAKE_FLAG_*` the client offers (before connecting)
    /// or agreed on (after).
    pub(crate) fn handshake_flags(&self) -> u32 {
        self.settings.handshake_flags
    }

    /// Limits the handshake flags, on a new handle only.
    pub(crate) fn set_handshake_flags(&mut self, flags: u32) -> Result<()> {
        self.check_state(CREATED)?;
        if flags & !LIBNBD_HANDSHAKE_FLAG_MASK != 0 {
            return Err(invalid_flags("flags", flags));
        }
        self.settings.handshake_flags = flags;
        Ok(())
    }

    /// The `LIBNBD_STRICT_*` checks in force.
    pub(crate) fn strict_mode(&self) -> u32 {
        self.settings.strict
    }

    /// Whether the `LIBNBD_STRICT_*` check `bit` is in force.
    #[inline]
    pub(crate) fn strict(&self, bit: u32) -> bool {
        self.settings.strict & bit != 0
    }

    /// Chooses the client-side checks, in any state.
    pub(crate) fn set_strict_mode(&mut self, flags: u32) -> Result<()> {
        if flags & !LIBNBD_STRICT_MASK != 0 {
            return Err(invalid_flags("flags", flags));
        }
        self.settings.strict = flags;
        Ok(())
    }

    /// Whether read buffers are zeroed (`nbd_set_pread_initialize`).
    #[inline]
    pub(crate) fn pread_initialize(&self) -> bool {
        self.settings.pread_initialize
    }

    /// Turns the zeroing of read buffers on or off, in any state.
    pub(crate) fn set_pread_initialize(&mut self, on: bool) {
        self.settings.pread_initialize = on;
    }

    /// The meta contexts to ask for, in the order added.
    pub(crate) fn requested_meta_contexts(&self) -> &[String] {
        &self.settings.meta_requests
    }

    /// Adds a meta context to ask for, before `NBD_OPT_GO`.
    pub(crate) fn add_meta_context(&mut self, name: &str) -> Result<()> {
        self.check_state(BEFORE_GO)?;
        self.settings.meta_requests.push(name.to_string());
        Ok(())
    }

    /// Forgets the meta contexts to ask for, before `NBD_OPT_GO`.
    pub(crate) fn clear_meta_contexts(&mut self) -> Result<()> {
        self.check_state(BEFORE_GO)?;
        self.settings.meta_requests.clear();
        Ok(())
    }

    // ---- what the server told us ---------------------------------------------

    /// The handshake style: `"newstyle-fixed"`, `"newstyle"` or `"oldstyle"`.
    pub(crate) fn negotiated_protocol(&self) -> &'static str {
        self.negotiated.protocol
    }

    /// Whether the server agreed to structured replies.
    #[inline]
    pub(crate) fn structured_replies(&self) -> bool {
        self.negotiated.structured_replies
    }

    /// Whether 64-bit headers are in use.
    #[inline]
    pub(crate) fn extended_headers(&self) -> bool {
        self.negotiated.extended_headers
    }

    /// Whether the server has sent the export's size and flags.
    pub(crate) fn export_known(&self) -> bool {
        self.negotiated.export.flags != 0
    }

    /// Fails, as libnbd does, when the server has not sent the export's
    /// flags yet (in option mode before `nbd_opt_info`, or after a failed
    /// `nbd_opt_go`).
    pub(crate) fn check_export_known(&self) -> Result<()> {
        if !self.export_known() {
            return Err(Error::new(
                libc::EINVAL,
                "server has not returned export flags, you need to connect to the server first",
            ));
        }
        Ok(())
    }

    /// The export's size (0 until the server has sent it).
    #[inline]
    pub(crate) fn export_size(&self) -> u64 {
        self.negotiated.export.size
    }

    /// Whether the server advertised the transmission flag `flag`
    /// (`NBD_FLAG_*`).
    #[inline]
    pub(crate) fn can(&self, flag: u16) -> bool {
        self.negotiated.export.flags & flag != 0
    }

    /// The server's minimum block size (0: none given).
    #[inline]
    pub(crate) fn block_minimum(&self) -> u32 {
        self.negotiated.block_minimum
    }

    /// The server's preferred block size (0: none given).
    pub(crate) fn block_preferred(&self) -> u32 {
        self.negotiated.block_preferred
    }

    /// The server's maximum block size (0: none given).
    pub(crate) fn block_maximum(&self) -> u32 {
        self.negotiated.block_maximum
    }

    /// The largest write payload this client sends.
    #[inline]
    pub(crate) fn payload_maximum(&self) -> u64 {
        self.negotiated.payload_maximum()
    }

    /// The export's canonical name, if the server sent one.
    pub(crate) fn canonical_name(&self) -> Option<&[u8]> {
        self.negotiated.canonical_name.as_deref()
    }

    /// The export's description, if the server sent one.
    pub(crate) fn description(&self) -> Option<&[u8]> {
        self.negotiated.description.as_deref()
    }

    /// Whether meta contexts were negotiated and at least one was agreed.
    pub(crate) fn has_meta_contexts(&self) -> bool {
        self.negotiated.meta_valid && !self.negotiated.meta_contexts.is_empty()
    }

    /// The id the server gave meta context `name`, if it was negotiated.
    pub(crate) fn meta_context_id(&self, name: &str) -> Option<u32> {
        if !self.negotiated.meta_valid {
            return None;
        }
        self.negotiated
            .meta_contexts
            .iter()
            .find(|(_, n)| n.as_bytes() == name.as_bytes())
            .map(|(id, _)| *id)
    }

    /// Whether the server agreed to meta context `name`; an error if
    /// contexts were requested and not (successfully) negotiated.
    pub(crate) fn can_meta_context(&self, name: &str) -> Result<bool> {
        if !self.settings.meta_requests.is_empty() && !self.negotiated.meta_valid {
            return Err(Error::new(
                libc::EINVAL,
                "need a successful server meta context request first",
            ));
        }
        Ok(self
            .negotiated
            .meta_contexts
            .iter()
            .any(|(_, n)| n.as_bytes() == name.as_bytes()))
    }

    /// `NBD_CMD_DISC` has been queued: no more commands may be issued.
    #[inline]
    pub(crate) fn disconnect_requested(&self) -> bool {
        self.disconnect_requested
    }

    // ---- debugging, statistics, spinning ---------------------------------------

    /// The handle's name in debug messages.
    pub(crate) fn handle_name(&self) -> &str {
        &self.debug.name
    }

    /// Names the handle in debug messages.
    pub(crate) fn set_handle_name(&mut self, name: &str) {
        self.debug.name = name.to_string();
    }

    /// Turns debug messages on or off.
    pub(crate) fn set_debug(&mut self, on: bool) {
        self.debug.on = on;
    }

    /// Emits the debug message `f` builds, if debugging is on.
    #[inline]
    pub(crate) fn log(&self, f: impl FnOnce() -> String) {
        self.debug.log(f);
    }

    /// Emits `msg` whether or not debugging is on.
    pub(crate) fn debug_emit(&self, msg: &str) {
        self.debug.emit(msg);
    }

    /// Installs (or, with `None`, removes and frees) the debug callback.
    pub(crate) fn set_debug_callback(&mut self, callback: Option<DebugCallback>) {
        self.debug.set_callback(callback);
    }

    /// The traffic counters so far.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// The spin policy of synchronous waits.
    pub(crate) fn spin(&self) -> crate::spin::SpinPolicy {
        self.spin
    }

    /// A new spin budget for synchronous waits, in microseconds.
    pub(crate) fn set_spin_usec(&mut self, usec: u32) {
        self.spin = crate::spin::SpinPolicy::new(usec);
    }

    /// Learns from a wait made with a copy of the policy.
    pub(crate) fn learn_spin(&mut self, waited: &crate::spin::SpinPolicy) {
        self.spin.learn(waited);
    }

    /// Notes that threads contend for the handle (spinning then waits).
    pub(crate) fn note_contention(&mut self) {
        self.spin.note_contention();
    }
}
