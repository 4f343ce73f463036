//! The flags and modes of the NBD API as Rust types: libnbd's
//! `LIBNBD_CMD_FLAG_*`, `LIBNBD_STRICT_*`, `LIBNBD_TLS_*`, ... with the
//! same values, so the C layer converts at its edge with `bits()` /
//! `from_bits` and checks nothing else.

use bitflags::bitflags;

bitflags! {
    /// Flags of a command (`LIBNBD_CMD_FLAG_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CmdFlag: u32 {
        /// Force unit access: the write is on stable storage when it
        /// completes (`LIBNBD_CMD_FLAG_FUA`).
        const FUA = 0x01;
        /// Write zeroes without punching a hole (`LIBNBD_CMD_FLAG_NO_HOLE`).
        const NO_HOLE = 0x02;
        /// A structured read in one data chunk, not fragmented
        /// (`LIBNBD_CMD_FLAG_DF`).
        const DF = 0x04;
        /// Block status: one extent is enough (`LIBNBD_CMD_FLAG_REQ_ONE`).
        const REQ_ONE = 0x08;
        /// Write zeroes only if the server can do it fast
        /// (`LIBNBD_CMD_FLAG_FAST_ZERO`).
        const FAST_ZERO = 0x10;
        /// Send the payload length with extended headers
        /// (`LIBNBD_CMD_FLAG_PAYLOAD_LEN`).
        const PAYLOAD_LEN = 0x20;
    }
}

bitflags! {
    /// The handshake flags the client accepts (`LIBNBD_HANDSHAKE_FLAG_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct HandshakeFlag: u32 {
        /// Fixed newstyle negotiation.
        const FIXED_NEWSTYLE = 0x01;
        /// No 124 bytes of zeroes after the export flags.
        const NO_ZEROES = 0x02;
    }
}

bitflags! {
    /// What the client checks before sending a command (`LIBNBD_STRICT_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Strict: u32 {
        /// Refuse commands the server did not advertise.
        const COMMANDS = 0x01;
        /// Refuse flags the server did not advertise.
        const FLAGS = 0x02;
        /// Refuse requests past the end of the export.
        const BOUNDS = 0x04;
        /// Refuse zero-length requests.
        const ZERO_SIZE = 0x08;
        /// Refuse requests not aligned to the minimum block size.
        const ALIGN = 0x10;
        /// Refuse payloads above the server's maximum.
        const PAYLOAD = 0x20;
        /// Add or drop `PAYLOAD_LEN` as the negotiated headers need.
        const AUTO_FLAG = 0x40;
    }
}

bitflags! {
    /// Which transports an NBD URI may use (`LIBNBD_ALLOW_TRANSPORT_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct AllowTransport: u32 {
        /// `nbd://` and `nbds://`.
        const TCP = 0x01;
        /// `nbd+unix://` and `nbds+unix://`.
        const UNIX = 0x02;
        /// `nbd+vsock://` and `nbds+vsock://`.
        const VSOCK = 0x04;
        /// `nbd+ssh://` and `nbds+ssh://`.
        const SSH = 0x08;
    }
}

bitflags! {
    /// Flags of `shutdown` (`LIBNBD_SHUTDOWN_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Shutdown: u32 {
        /// Fail the commands not yet sent instead of sending them first.
        const ABANDON_PENDING = 0x10000;
    }
}

bitflags! {
    /// Which way the connection waits (`LIBNBD_AIO_DIRECTION_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Direction: u32 {
        /// For the socket to become readable.
        const READ = 1;
        /// For the socket to become writable.
        const WRITE = 2;
    }
}

/// The TLS setting of a handle (`LIBNBD_TLS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tls {
    /// No TLS (the default).
    #[default]
    Disable = 0,
    /// TLS if the server offers it, else plaintext; a certificate that
    /// fails verification is an error, never a reason for plaintext.
    Allow = 1,
    /// TLS or nothing.
    Require = 2,
}

impl Tls {
    /// The setting for libnbd's value, if it is one.
    pub fn from_raw(value: i32) -> Option<Tls> {
        match value {
            0 => Some(Tls::Disable),
            1 => Some(Tls::Allow),
            2 => Some(Tls::Require),
            _ => None,
        }
    }
}

/// Which block size constraint (`LIBNBD_SIZE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// The smallest block the server handles.
    Minimum = 0,
    /// The block size the server prefers.
    Preferred = 1,
    /// The largest request the server takes (for trim, zero, cache).
    Maximum = 2,
    /// The largest payload of a read or write.
    Payload = 3,
}

impl Size {
    /// The constraint for libnbd's value, if it is one.
    pub fn from_raw(value: i32) -> Option<Size> {
        match value {
            0 => Some(Size::Minimum),
            1 => Some(Size::Preferred),
            2 => Some(Size::Maximum),
            3 => Some(Size::Payload),
            _ => None,
        }
    }
}

/// Which IP addresses a TCP connect tries (beyond libnbd, which tries
/// every address the name resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpFamily {
    /// IPv4 and IPv6, in the order the resolver gives them (the default).
    #[default]
    Any = 0,
    /// IPv4 only.
    V4 = 4,
    /// IPv6 only.
    V6 = 6,
}

/// What a chunk of a structured read holds (`LIBNBD_READ_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadStatus {
    /// Data from the server.
    Data = 1,
    /// A hole: zeroes.
    Hole = 2,
    /// An error for part of the read.
    Error = 3,
}

/// libnbd's constants as plain numbers, for the core code that still works
/// with raw flag words and modes (`u32` flags, `i32` modes, as the C API
/// takes them). Each is defined by the typed value above, so the two cannot
/// disagree; the C layer's literal copies (for cbindgen) are checked
/// against the same types.
pub(crate) mod raw {
    use super::{
        AllowTransport, CmdFlag, Direction, HandshakeFlag, ReadStatus, Shutdown, Strict, Tls,
    };

    pub(crate) const LIBNBD_TLS_DISABLE: i32 = Tls::Disable as i32;
    pub(crate) const LIBNBD_TLS_ALLOW: i32 = Tls::Allow as i32;
    pub(crate) const LIBNBD_TLS_REQUIRE: i32 = Tls::Require as i32;

    pub(crate) const LIBNBD_CMD_FLAG_FUA: u32 = CmdFlag::FUA.bits();
    pub(crate) const LIBNBD_CMD_FLAG_NO_HOLE: u32 = CmdFlag::NO_HOLE.bits();
    pub(crate) const LIBNBD_CMD_FLAG_DF: u32 = CmdFlag::DF.bits();
    pub(crate) const LIBNBD_CMD_FLAG_REQ_ONE: u32 = CmdFlag::REQ_ONE.bits();
    pub(crate) const LIBNBD_CMD_FLAG_FAST_ZERO: u32 = CmdFlag::FAST_ZERO.bits();
    pub(crate) const LIBNBD_CMD_FLAG_PAYLOAD_LEN: u32 = CmdFlag::PAYLOAD_LEN.bits();

    pub(crate) const LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE: u32 =
        HandshakeFlag::FIXED_NEWSTYLE.bits();
    pub(crate) const LIBNBD_HANDSHAKE_FLAG_NO_ZEROES: u32 = HandshakeFlag::NO_ZEROES.bits();
    pub(crate) const LIBNBD_HANDSHAKE_FLAG_MASK: u32 = HandshakeFlag::all().bits();

    pub(crate) const LIBNBD_STRICT_COMMANDS: u32 = Strict::COMMANDS.bits();
    pub(crate) const LIBNBD_STRICT_FLAGS: u32 = Strict::FLAGS.bits();
    pub(crate) const LIBNBD_STRICT_BOUNDS: u32 = Strict::BOUNDS.bits();
    pub(crate) const LIBNBD_STRICT_ZERO_SIZE: u32 = Strict::ZERO_SIZE.bits();
    pub(crate) const LIBNBD_STRICT_ALIGN: u32 = Strict::ALIGN.bits();
    pub(crate) const LIBNBD_STRICT_PAYLOAD: u32 = Strict::PAYLOAD.bits();
    pub(crate) const LIBNBD_STRICT_AUTO_FLAG: u32 = Strict::AUTO_FLAG.bits();
    pub(crate) const LIBNBD_STRICT_MASK: u32 = Strict::all().bits();

    pub(crate) const LIBNBD_ALLOW_TRANSPORT_TCP: u32 = AllowTransport::TCP.bits();
    pub(crate) const LIBNBD_ALLOW_TRANSPORT_UNIX: u32 = AllowTransport::UNIX.bits();
    pub(crate) const LIBNBD_ALLOW_TRANSPORT_VSOCK: u32 = AllowTransport::VSOCK.bits();
    pub(crate) const LIBNBD_ALLOW_TRANSPORT_SSH: u32 = AllowTransport::SSH.bits();
    pub(crate) const LIBNBD_ALLOW_TRANSPORT_MASK: u32 = AllowTransport::all().bits();

    pub(crate) const LIBNBD_SHUTDOWN_ABANDON_PENDING: u32 = Shutdown::ABANDON_PENDING.bits();
    pub(crate) const LIBNBD_SHUTDOWN_MASK: u32 = Shutdown::all().bits();

    pub(crate) const LIBNBD_AIO_DIRECTION_READ: u32 = Direction::READ.bits();
    pub(crate) const LIBNBD_AIO_DIRECTION_WRITE: u32 = Direction::WRITE.bits();

    pub(crate) const LIBNBD_READ_DATA: i32 = ReadStatus::Data as i32;
    pub(crate) const LIBNBD_READ_HOLE: i32 = ReadStatus::Hole as i32;
    pub(crate) const LIBNBD_READ_ERROR: i32 = ReadStatus::Error as i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_libnbds() {
        assert_eq!(CmdFlag::all().bits(), 0x3f);
        assert_eq!(HandshakeFlag::all().bits(), 0x03);
        assert_eq!(Strict::all().bits(), 0x7f);
        assert_eq!(AllowTransport::all().bits(), 0x0f);
        assert_eq!(Shutdown::all().bits(), 0x10000);
        assert_eq!(Direction::all().bits(), 3);
        for v in 0..3 {
            assert_eq!(Tls::from_raw(v).unwrap() as i32, v);
        }
        assert_eq!(Tls::from_raw(3), None);
        for v in 0..4 {
            assert_eq!(Size::from_raw(v).unwrap() as i32, v);
        }
        assert_eq!(Size::from_raw(-1), None);
    }
}
