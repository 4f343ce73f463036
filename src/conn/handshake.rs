//! The handshake: greeting, global flags, options, export information.

use super::{protocol_error, Conn, Phase, Step};
use crate::proto::{self, ExportInfo, OptionReply};
use crate::{Error, Result};

/// Longest option reply payload kept. The largest meaningful one is an
/// export list entry (4 + 4096 + 4096 bytes); a longer `NBD_REP_INFO`,
/// `NBD_REP_SERVER` or `NBD_REP_META_CONTEXT` is skipped unread (as
/// libnbd does), any other is refused.
const MAX_OPTION_PAYLOAD: usize = 2 * proto::MAX_STRING_LEN + 8;

impl Conn {
    // ---- handshake -------------------------------------------------------------

    /// Handles one step of the handshake; false if it needs more bytes.
    pub(super) fn read_handshake(&mut self, step: Step) -> Result<bool> {
        match step {
            Step::Greeting => self.read_greeting(),
            Step::OldstyleRest => self.read_oldstyle_rest(),
            Step::GlobalFlags => self.read_global_flags(),
            Step::OptionReply(option) if self.opt_skip.is_some() => {
                self.skip_option_payload(option)
            }
            Step::OptionReply(option) => self.read_option_reply(option),
            Step::TlsHandshake => self.tls_handshake_step(),
            Step::ExportNameReply => self.read_export_name_reply(),
        }
    }

    /// The server's first 16 bytes: `NBDMAGIC`, then `IHAVEOPT` for
    /// newstyle or the oldstyle magic.
    fn read_greeting(&mut self) -> Result<bool> {
        if !self.fill(proto::GREETING_LEN)? {
            return Ok(false);
        }
        let mut g = [0u8; proto::GREETING_LEN];
        g.copy_from_slice(&self.rbuf[self.rpos..self.rpos + proto::GREETING_LEN]);
        self.consume(proto::GREETING_LEN);
        match proto::decode_greeting(&g) {
            Some(proto::Greeting::Oldstyle) => {
                self.negotiated.protocol = "oldstyle";
                self.phase = Phase::Handshake(Step::OldstyleRest);
            }
            Some(proto::Greeting::Newstyle) => {
                self.phase = Phase::Handshake(Step::GlobalFlags);
            }
            None => {
                return Err(protocol_error(
                    "handshake: server did not send expected NBD magic",
                ))
            }
        }
        Ok(true)
    }

    /// Oldstyle: the export's size, 32 bits of flags and 124 zero bytes.
    fn read_oldstyle_rest(&mut self) -> Result<bool> {
        if !self.fill(proto::OLDSTYLE_REST_LEN)? {
            return Ok(false);
        }
        // An oldstyle server cannot do TLS.
        self.check_tls_not_required("is oldstyle")?;
        let rest = &self.rbuf[self.rpos..self.rend];
        let info = proto::decode_oldstyle_rest(rest);
        // The high half of the 32 flag bits is global flags, which
        // an oldstyle server must leave zero.
        if proto::be16(rest, 8) != 0 {
            return Err(protocol_error(
                "handshake: oldstyle server should not set gflags",
            ));
        }
        self.consume(proto::OLDSTYLE_REST_LEN);
        self.settings.handshake_flags = 0;
        self.finish_handshake(info)?;
        Ok(true)
    }

    /// Newstyle: the server's 16 bits of global flags, answered with the
    /// client's 32; then option haggling (fixed newstyle) or the export
    /// name.
    fn read_global_flags(&mut self) -> Result<bool> {
        if !self.fill(2)? {
            return Ok(false);
        }
        let gflags = proto::be16(&self.rbuf, self.rpos);
        self.consume(2);
        // Use only what both sides want (the caller may mask bits
        // with nbd_set_handshake_flags); the setting then reads
        // back as what was used, as in libnbd.
        let used = self.settings.handshake_flags & u32::from(gflags);
        self.settings.handshake_flags = used;
        let fixed = used & proto::NBD_FLAG_C_FIXED_NEWSTYLE != 0;
        if !fixed {
            self.check_tls_not_required("is not using fixed newstyle")?;
        }
        self.no_zeroes = used & proto::NBD_FLAG_C_NO_ZEROES != 0;
        self.hs_out.extend_from_slice(&used.to_be_bytes());
        if fixed {
            self.negotiated.protocol = "newstyle-fixed";
            self.next_auto_option();
        } else {
            self.negotiated.protocol = "newstyle";
            if self.settings.opt_mode {
                // The caller may still set the export name; only
                // nbd_opt_go (and nbd_opt_abort) can follow.
                self.phase = Phase::Negotiating;
            } else {
                self.send_export_name();
            }
        }
        Ok(true)
    }

    /// An option reply: its 20-byte header, checked, then its payload,
    /// handled whole (or skipped when too long to matter).
    fn read_option_reply(&mut self, option: u32) -> Result<bool> {
        if !self.fill(proto::OPTION_REPLY_LEN)? {
            return Ok(false);
        }
        let mut h = [0u8; proto::OPTION_REPLY_LEN];
        h.copy_from_slice(&self.rbuf[self.rpos..self.rpos + proto::OPTION_REPLY_LEN]);
        let reply = check_option_reply(option, &h)?;
        let len = reply.length as usize;
        if len > MAX_OPTION_PAYLOAD {
            self.consume(proto::OPTION_REPLY_LEN);
            self.opt_skip = Some((reply.reply_type, len));
            return self.skip_option_payload(option);
        }
        if !self.fill(proto::OPTION_REPLY_LEN + len)? {
            return Ok(false);
        }
        let start = self.rpos + proto::OPTION_REPLY_LEN;
        let payload = self.rbuf[start..start + len].to_vec();
        self.consume(proto::OPTION_REPLY_LEN + len);
        self.handle_option_reply(option, reply.reply_type, &payload)?;
        Ok(true)
    }

    /// Skips the payload of an option reply too long to keep: fine for
    /// the types that may be ignored, fatal for the others.
    fn skip_option_payload(&mut self, option: u32) -> Result<bool> {
        let (reply_type, mut left) = self.opt_skip.expect("skipping a payload");
        while left > 0 {
            if !self.fill(1)? {
                self.opt_skip = Some((reply_type, left));
                return Ok(false);
            }
            let take = self.buffered().min(left);
            self.consume(take);
            left -= take;
        }
        self.opt_skip = None;
        match reply_type {
            proto::NBD_REP_INFO | proto::NBD_REP_SERVER | proto::NBD_REP_META_CONTEXT => {
                self.debug.log(|| {
                    format!("skipping large reply of type {reply_type} to option {option}")
                });
                Ok(true)
            }
            _ => Err(protocol_error("handshake: option reply payload too large")),
        }
    }

    /// The reply to `NBD_OPT_EXPORT_NAME`: size, flags and (unless both
    /// sides agreed to `NO_ZEROES`) 124 zero bytes.
    fn read_export_name_reply(&mut self) -> Result<bool> {
        let len = proto::EXPORT_NAME_REPLY_LEN + if self.no_zeroes { 0 } else { 124 };
        if !self.fill(len)? {
            return Ok(false);
        }
        let info = proto::decode_export_name_reply(&self.rbuf[self.rpos..self.rend]);
        self.consume(len);
        self.finish_handshake(info)?;
        // A caller's nbd_opt_go (plain newstyle, option mode) ends here.
        self.finish_option(Ok(0));
        Ok(true)
    }

    pub(super) fn send_export_name(&mut self) {
        let name = self.settings.export_name.clone();
        proto::encode_option(&mut self.hs_out, proto::NBD_OPT_EXPORT_NAME, &name);
        self.phase = Phase::Handshake(Step::ExportNameReply);
    }

    pub(super) fn handle_go_reply(&mut self, reply_type: u32, payload: &[u8]) -> Result<()> {
        match reply_type {
            proto::NBD_REP_INFO => {
                match proto::decode_info(payload) {
                    Some(proto::Info::Export(info)) => {
                        self.negotiated.export = info;
                        self.got_export_info = true;
                    }
                    Some(proto::Info::BlockSize {
                        minimum,
                        preferred,
                        maximum,
                    }) => {
                        if block_sizes_valid(minimum, preferred, maximum) {
                            self.negotiated.block_minimum = minimum;
                            self.negotiated.block_preferred = preferred;
                            self.negotiated.block_maximum = maximum;
                        } else {
                            self.debug.log(|| {
                                format!(
                                    "ignoring improper server size constraints: min: \
                                     {minimum} preferred: {preferred} max: {maximum}"
                                )
                            });
                        }
                    }
                    Some(proto::Info::Name(n)) => self.negotiated.canonical_name = Some(n),
                    Some(proto::Info::Description(d)) => self.negotiated.description = Some(d),
                    Some(proto::Info::Unknown(_)) => {}
                    None => return Err(bad_info_length(payload)),
                }
                Ok(())
            }
            proto::NBD_REP_ACK => {
                if self.phase == Phase::Handshake(Step::OptionReply(proto::NBD_OPT_INFO)) {
                    // NBD_OPT_INFO: negotiation goes on.
                    return Ok(());
                }
                if !self.got_export_info {
                    // A server that never said NBD_INFO_EXPORT: connected,
                    // but size and flags stay unknown (the info calls fail
                    // with EINVAL), as in libnbd.
                    self.negotiated.meta_valid = true;
                    self.enter_ready();
                    return Ok(());
                }
                let info = self.negotiated.export;
                self.finish_handshake(info)
            }
            // Error replies are handled by the option engine.
            t => Err(unexpected_reply(t)),
        }
    }

    fn finish_handshake(&mut self, info: ExportInfo) -> Result<()> {
        let mut info = info;
        // A size above i64::MAX is kept: nbd_get_size reports EOVERFLOW.
        // libnbd's checks of the transmission flags.
        if info.flags == 0 {
            return Err(Error::new(
                libc::EINVAL,
                "handshake: invalid eflags == 0 from server",
            ));
        }
        if !self.negotiated.structured_replies {
            // DF only means something with structured replies.
            info.flags &= !proto::NBD_FLAG_SEND_DF;
        }
        if info.flags & proto::NBD_FLAG_SEND_WRITE_ZEROES == 0 {
            info.flags &= !proto::NBD_FLAG_SEND_FAST_ZERO;
        }
        self.negotiated.export = info;
        // Entering transmission without a meta context request (none was
        // wanted, or no structured replies): the agreed set is known to be
        // empty, so can_meta_context answers 0 rather than failing.
        self.negotiated.meta_valid = true;
        self.enter_ready();
        Ok(())
    }
}

/// Checks an option reply header against the option on the wire and
/// the lengths the protocol fixes (as libnbd checks them).
fn check_option_reply(option: u32, h: &[u8; proto::OPTION_REPLY_LEN]) -> Result<OptionReply> {
    let reply = proto::decode_option_reply(h)
        .filter(|r| r.option == option)
        .ok_or_else(|| protocol_error("handshake: invalid option reply magic or option"))?;
    let len = reply.length as usize;
    if len as u64 > super::MAX_REQUEST_SIZE {
        return Err(protocol_error("handshake: invalid option reply length"));
    }
    if reply.reply_type == proto::NBD_REP_ACK && len != 0 {
        return Err(protocol_error(
            "handshake: invalid NBD_REP_ACK option reply length",
        ));
    }
    if reply.reply_type & proto::NBD_REP_FLAG_ERROR != 0 && len > proto::MAX_STRING_LEN {
        return Err(protocol_error("handshake: option error string too long"));
    }
    Ok(reply)
}

/// The error a refused option reports, as libnbd words it: what the
/// error reply means, then the server's own message (non-printable bytes
/// escaped), if it sent one.
pub(super) fn reply_error(reply_type: u32, export_name: &[u8], message: &[u8]) -> Error {
    let (errno, mut text) = match reply_type {
        proto::NBD_REP_ERR_UNSUP => (
            libc::ENOTSUP,
            "the operation is not supported by the server".to_string(),
        ),
        proto::NBD_REP_ERR_POLICY => (0, "server policy prevents the operation".to_string()),
        proto::NBD_REP_ERR_PLATFORM => (
            0,
            "the operation is not supported by the server platform".to_string(),
        ),
        proto::NBD_REP_ERR_INVALID => (
            libc::EINVAL,
            "the server rejected this operation as invalid".to_string(),
        ),
        proto::NBD_REP_ERR_TOO_BIG => (
            libc::EINVAL,
            "the operation is too large to process".to_string(),
        ),
        proto::NBD_REP_ERR_TLS_REQD => (
            libc::ENOTSUP,
            "the server requires TLS encryption first".to_string(),
        ),
        proto::NBD_REP_ERR_UNKNOWN => (
            libc::ENOENT,
            format!(
                "the server has no export named '{}'",
                String::from_utf8_lossy(export_name)
            ),
        ),
        proto::NBD_REP_ERR_SHUTDOWN => (libc::ESHUTDOWN, "the server is shutting down".to_string()),
        proto::NBD_REP_ERR_BLOCK_SIZE_REQD => (
            libc::EINVAL,
            "the server requires specific block sizes".to_string(),
        ),
        t => (
            0,
            format!("handshake: unknown reply from the server: 0x{t:x}"),
        ),
    };
    if !message.is_empty() {
        text.push_str(": ");
        for &b in message {
            if (0x20..0x7f).contains(&b) {
                text.push(b as char);
            } else {
                text.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    Error::new(errno, text)
}

/// Whether the server's block size constraints are sane enough to use
/// (the checks libnbd makes; otherwise they are ignored): minimum and
/// preferred powers of two, minimum at most 64K and at most preferred,
/// preferred at least 512 and at most maximum, and maximum a multiple of
/// minimum unless it is 0xffffffff.
fn block_sizes_valid(min: u32, pref: u32, max: u32) -> bool {
    min != 0
        && min <= 64 * 1024
        && min <= pref
        && pref >= 512
        && pref <= max
        && min.is_power_of_two()
        && pref.is_power_of_two()
        && (max == u32::MAX || max % min == 0)
}

/// libnbd's error for an option reply of a type the option does not
/// expect (not an error reply): the connection cannot go on.
pub(super) fn unexpected_reply(reply_type: u32) -> Error {
    protocol_error(format!(
        "handshake: unexpected option reply type {reply_type}"
    ))
}

/// The error for an `NBD_REP_INFO` whose length does not fit its kind.
fn bad_info_length(payload: &[u8]) -> Error {
    if payload.len() < 2 {
        return protocol_error("handshake: NBD_REP_INFO reply length too small");
    }
    let what = match proto::be16(payload, 0) {
        proto::NBD_INFO_EXPORT => "NBD_INFO_EXPORT",
        proto::NBD_INFO_BLOCK_SIZE => "NBD_INFO_BLOCK_SIZE",
        proto::NBD_INFO_NAME => "NBD_INFO_NAME",
        _ => "NBD_INFO_DESCRIPTION",
    };
    protocol_error(format!("handshake: incorrect {what} option reply length"))
}

#[cfg(test)]
mod tests {
    use super::super::testwire::Wire;
    use super::*;
    use crate::proto::*;

    const EXPORT: ExportInfo = ExportInfo {
        size: 1 << 30,
        flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH,
    };

    fn feed(c: &mut Conn, wire: &Wire, bytes: &[u8]) -> Option<Error> {
        wire.push(bytes);
        c.progress().err()
    }

    fn reply(option: u32, reply_type: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_option_reply(&mut v, option, reply_type, payload);
        v
    }

    fn assert_error(err: Option<Error>, errno: i32, message: &str) {
        let err = err.expect("the handshake should fail");
        assert_eq!((err.errno(), err.message()), (errno, message));
    }

    /// A fixed-newstyle server with `NO_ZEROES`: the client answers the
    /// flags and asks for extended headers.
    fn at_first_option() -> (Conn, Wire) {
        let (mut c, wire) = Conn::test_handshake();
        let mut g = encode_greeting(Greeting::Newstyle).to_vec();
        g.extend_from_slice(&(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES).to_be_bytes());
        assert!(feed(&mut c, &wire, &g).is_none());
        let mut expect = 3u32.to_be_bytes().to_vec();
        encode_option(&mut expect, NBD_OPT_EXTENDED_HEADERS, &[]);
        assert_eq!(wire.take_sent(), expect);
        (c, wire)
    }

    #[test]
    fn fixed_newstyle_to_ready() {
        let (mut c, wire) = at_first_option();
        let ack = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, &[]);
        assert!(feed(&mut c, &wire, &ack).is_none());
        let mut go = Vec::new();
        encode_opt_go(&mut go, NBD_OPT_GO, b"", &[NBD_INFO_BLOCK_SIZE]);
        assert_eq!(wire.take_sent(), go);
        let mut r = reply(
            NBD_OPT_GO,
            NBD_REP_INFO,
            &encode_info(&Info::Export(EXPORT)),
        );
        let sizes = Info::BlockSize {
            minimum: 512,
            preferred: 4096,
            maximum: 1 << 25,
        };
        r.extend(reply(NBD_OPT_GO, NBD_REP_INFO, &encode_info(&sizes)));
        r.extend(reply(
            NBD_OPT_GO,
            NBD_REP_INFO,
            &encode_info(&Info::Unknown(77)),
        ));
        r.extend(reply(NBD_OPT_GO, NBD_REP_ACK, &[]));
        assert!(feed(&mut c, &wire, &r).is_none());
        assert!(c.is_ready());
        assert_eq!(c.negotiated.protocol, "newstyle-fixed");
        assert!(c.negotiated.extended_headers && c.negotiated.structured_replies);
        assert_eq!(c.negotiated.export, EXPORT);
        assert_eq!(c.negotiated.block_preferred, 4096);
    }

    #[test]
    fn oldstyle() {
        let (mut c, wire) = Conn::test_handshake();
        let mut g = encode_greeting(Greeting::Oldstyle).to_vec();
        g.extend_from_slice(&encode_oldstyle_rest(EXPORT, 0));
        assert!(feed(&mut c, &wire, &g).is_none());
        assert!(c.is_ready());
        assert_eq!(c.negotiated.protocol, "oldstyle");
        assert_eq!(c.negotiated.export, EXPORT);

        let (mut c, wire) = Conn::test_handshake();
        let mut g = encode_greeting(Greeting::Oldstyle).to_vec();
        g.extend_from_slice(&encode_oldstyle_rest(EXPORT, 1));
        assert_error(
            feed(&mut c, &wire, &g),
            libc::EPROTO,
            "handshake: oldstyle server should not set gflags",
        );

        let (mut c, wire) = Conn::test_handshake();
        let mut g = encode_greeting(Greeting::Oldstyle).to_vec();
        let no_flags = ExportInfo { size: 1, flags: 0 };
        g.extend_from_slice(&encode_oldstyle_rest(no_flags, 0));
        assert_error(
            feed(&mut c, &wire, &g),
            libc::EINVAL,
            "handshake: invalid eflags == 0 from server",
        );
    }

    #[test]
    fn bad_greeting() {
        let (mut c, wire) = Conn::test_handshake();
        let mut g = encode_greeting(Greeting::Newstyle);
        g[15] ^= 1;
        assert_error(
            feed(&mut c, &wire, &g),
            libc::EPROTO,
            "handshake: server did not send expected NBD magic",
        );
        assert!(c.is_dead());
    }

    #[test]
    fn plain_newstyle_sends_the_export_name() {
        let (mut c, wire) = Conn::test_handshake();
        let mut g = encode_greeting(Greeting::Newstyle).to_vec();
        g.extend_from_slice(&0u16.to_be_bytes());
        assert!(feed(&mut c, &wire, &g).is_none());
        let mut expect = 0u32.to_be_bytes().to_vec();
        encode_option(&mut expect, NBD_OPT_EXPORT_NAME, b"");
        assert_eq!(wire.take_sent(), expect);
        // Without NO_ZEROES, 124 zeros follow size and flags.
        let r = encode_export_name_reply(EXPORT, false);
        assert!(feed(&mut c, &wire, &r[..r.len() - 1]).is_none());
        assert!(!c.is_ready());
        assert!(feed(&mut c, &wire, &r[r.len() - 1..]).is_none());
        assert!(c.is_ready());
        assert_eq!(c.negotiated.protocol, "newstyle");
        assert_eq!(c.negotiated.export, EXPORT);
    }

    #[test]
    fn malformed_option_replies() {
        let mut bad_magic = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, &[]);
        bad_magic[0] ^= 1;
        let mut too_long = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_SERVER, &[]);
        too_long[16..20]
            .copy_from_slice(&(super::super::MAX_REQUEST_SIZE as u32 + 1).to_be_bytes());
        let long_error = vec![b'e'; MAX_STRING_LEN + 1];
        let big = vec![0; MAX_OPTION_PAYLOAD + 1];
        for (bytes, message) in [
            (bad_magic, "handshake: invalid option reply magic or option"),
            (
                reply(NBD_OPT_GO, NBD_REP_ACK, &[]),
                "handshake: invalid option reply magic or option",
            ),
            (too_long, "handshake: invalid option reply length"),
            (
                reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, &[0]),
                "handshake: invalid NBD_REP_ACK option reply length",
            ),
            (
                reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_POLICY, &long_error),
                "handshake: option error string too long",
            ),
            (
                reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_SERVER, &[]),
                "handshake: unexpected option reply type 2",
            ),
            (
                reply(NBD_OPT_EXTENDED_HEADERS, 99, &big),
                "handshake: option reply payload too large",
            ),
        ] {
            let (mut c, wire) = at_first_option();
            assert_error(feed(&mut c, &wire, &bytes), libc::EPROTO, message);
            assert!(c.is_dead());
        }
    }

    #[test]
    fn long_info_reply_is_skipped() {
        let (mut c, wire) = at_first_option();
        let big = vec![0; MAX_OPTION_PAYLOAD + 1];
        let r = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_INFO, &big);
        // In pieces: the skip resumes.
        assert!(feed(&mut c, &wire, &r[..100]).is_none());
        assert!(feed(&mut c, &wire, &r[100..]).is_none());
        assert!(!c.is_dead());
        assert_eq!(wire.unread(), 0);
        let ack = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, &[]);
        assert!(feed(&mut c, &wire, &ack).is_none());
        assert!(c.negotiated.extended_headers);
    }

    #[test]
    fn refused_options() {
        // Extended headers refused: structured replies are asked next.
        let (mut c, wire) = at_first_option();
        let no = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP, b"");
        assert!(feed(&mut c, &wire, &no).is_none());
        let mut expect = Vec::new();
        encode_option(&mut expect, NBD_OPT_STRUCTURED_REPLY, &[]);
        assert_eq!(wire.take_sent(), expect);
        assert!(!c.negotiated.extended_headers);

        // GO refused: the handshake fails with the reply's meaning and
        // the server's message, escaped.
        let ack = reply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, &[]);
        assert!(feed(&mut c, &wire, &ack).is_none());
        wire.take_sent();
        let no = reply(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, b"gone\x01");
        assert_error(
            feed(&mut c, &wire, &no),
            libc::ENOENT,
            "the server has no export named '': gone\\x01",
        );
    }

    #[test]
    fn go_unsupported_falls_back_to_export_name() {
        let (mut c, wire) = at_first_option();
        let ack = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, &[]);
        assert!(feed(&mut c, &wire, &ack).is_none());
        wire.take_sent();
        let no = reply(NBD_OPT_GO, NBD_REP_ERR_UNSUP, &[]);
        assert!(feed(&mut c, &wire, &no).is_none());
        let mut expect = Vec::new();
        encode_option(&mut expect, NBD_OPT_EXPORT_NAME, b"");
        assert_eq!(wire.take_sent(), expect);
        // NO_ZEROES was agreed: size and flags alone.
        assert!(feed(&mut c, &wire, &encode_export_name_reply(EXPORT, true)).is_none());
        assert!(c.is_ready());
        assert_eq!(c.negotiated.export, EXPORT);
    }

    #[test]
    fn bad_info_lengths() {
        let mut short_export = encode_info(&Info::Export(EXPORT));
        short_export.pop();
        let mut long_sizes = encode_info(&Info::BlockSize {
            minimum: 1,
            preferred: 1,
            maximum: 1,
        });
        long_sizes.push(0);
        let mut long_name = encode_info(&Info::Name(vec![b'n'; MAX_STRING_LEN]));
        long_name.push(b'n');
        for (payload, message) in [
            (vec![0], "handshake: NBD_REP_INFO reply length too small"),
            (
                short_export,
                "handshake: incorrect NBD_INFO_EXPORT option reply length",
            ),
            (
                long_sizes,
                "handshake: incorrect NBD_INFO_BLOCK_SIZE option reply length",
            ),
            (
                long_name,
                "handshake: incorrect NBD_INFO_NAME option reply length",
            ),
        ] {
            let (mut c, wire) = at_first_option();
            let ack = reply(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, &[]);
            assert!(feed(&mut c, &wire, &ack).is_none());
            let r = reply(NBD_OPT_GO, NBD_REP_INFO, &payload);
            assert_error(feed(&mut c, &wire, &r), libc::EPROTO, message);
        }
    }

    /// A hostile server's random option replies (plausible types and
    /// payloads mixed with random ones, cut at random points) may fail the
    /// handshake but never panic.
    #[test]
    fn random_option_replies_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let options = [
            NBD_OPT_EXTENDED_HEADERS,
            NBD_OPT_STRUCTURED_REPLY,
            NBD_OPT_GO,
        ];
        let types = [
            NBD_REP_ACK,
            NBD_REP_INFO,
            NBD_REP_SERVER,
            NBD_REP_META_CONTEXT,
            NBD_REP_ERR_UNSUP,
            NBD_REP_ERR_UNKNOWN,
            NBD_REP_FLAG_ERROR | 99,
            77,
        ];
        for _ in 0..2000 {
            let (mut c, wire) = at_first_option();
            let mut bytes = Vec::new();
            for _ in 0..1 + rnd(5) {
                let option = options[rnd(options.len() as u64) as usize];
                let reply_type = types[rnd(types.len() as u64) as usize];
                let payload = match (reply_type, rnd(3)) {
                    (NBD_REP_ACK, 0) => vec![],
                    (NBD_REP_INFO, 0) => encode_info(&Info::Export(EXPORT)),
                    (NBD_REP_INFO, 1) => {
                        let mut p = encode_info(&Info::BlockSize {
                            minimum: 1 << rnd(20),
                            preferred: 1 << rnd(20),
                            maximum: rnd(u64::from(u32::MAX)) as u32,
                        });
                        p.truncate(rnd(16) as usize);
                        p
                    }
                    (_, 2) => vec![0x44; rnd(2 * MAX_OPTION_PAYLOAD as u64) as usize],
                    _ => vec![0x55; rnd(24) as usize],
                };
                encode_option_reply(&mut bytes, option, reply_type, &payload);
            }
            let mut rest = &bytes[..];
            while !rest.is_empty() && !c.is_dead() {
                let n = 1 + rnd(rest.len() as u64) as usize;
                let _ = feed(&mut c, &wire, &rest[..n]);
                rest = &rest[n..];
            }
        }
    }

    #[test]
    fn option_reply_header_checks() {
        let h = |option, reply_type, length: u32| {
            let mut v = reply(option, reply_type, &[]);
            v[16..20].copy_from_slice(&length.to_be_bytes());
            <[u8; OPTION_REPLY_LEN]>::try_from(v).unwrap()
        };
        let ok = check_option_reply(NBD_OPT_GO, &h(NBD_OPT_GO, NBD_REP_INFO, 12)).unwrap();
        assert_eq!(
            ok,
            OptionReply {
                option: NBD_OPT_GO,
                reply_type: NBD_REP_INFO,
                length: 12
            }
        );
        let msg = |option, header| {
            check_option_reply(option, &header)
                .unwrap_err()
                .message()
                .to_string()
        };
        assert_eq!(
            msg(NBD_OPT_INFO, h(NBD_OPT_GO, NBD_REP_ACK, 0)),
            "handshake: invalid option reply magic or option"
        );
        assert_eq!(
            msg(NBD_OPT_GO, h(NBD_OPT_GO, NBD_REP_ACK, 4)),
            "handshake: invalid NBD_REP_ACK option reply length"
        );
        assert!(check_option_reply(NBD_OPT_GO, &h(NBD_OPT_GO, NBD_REP_ERR_POLICY, 4096)).is_ok());
        assert_eq!(
            msg(NBD_OPT_GO, h(NBD_OPT_GO, NBD_REP_ERR_POLICY, 4097)),
            "handshake: option error string too long"
        );
        assert_eq!(
            msg(NBD_OPT_GO, h(NBD_OPT_GO, NBD_REP_INFO, 64 << 20 | 1)),
            "handshake: invalid option reply length"
        );
    }
}
