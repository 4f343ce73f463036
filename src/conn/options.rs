//! Option haggling in the fixed-newstyle handshake: the options a plain
//! connect sends by itself (extended headers, structured replies, meta
//! contexts, GO), and the ones a caller runs one at a time in option mode.
//!
//! One option is on the wire at a time; its replies are handled here as
//! they arrive, and a caller's option ends by calling its completion
//! callback and going back to the negotiating state.

use std::ffi::CString;

use super::{protocol_error, Conn, Phase, Step};
use crate::callback::{Completion, Context, List};
use crate::proto;
use crate::{Error, Result};

/// An option a caller can run in option mode.
pub(crate) enum UserOption {
    Go,
    Info,
    List,
    /// Query strings; `None` means the handle's requested contexts.
    ListMetaContext(Option<Vec<String>>),
    SetMetaContext(Option<Vec<String>>),
    StructuredReply,
    ExtendedHeaders,
    StartTls,
    Abort,
}

/// The option being run now.
#[derive(Default)]
pub(super) struct OptionRun {
    /// Started by the caller (option mode), not by the handshake itself.
    user: bool,
    /// `NBD_OPT_GO` or `NBD_OPT_INFO` to send once meta contexts are set.
    then: Option<u32>,
    /// Entries reported (exports, contexts).
    count: i32,
    /// The first error the option's replies brought.
    error: Option<Error>,
    /// Contexts agreed in this `NBD_OPT_SET_META_CONTEXT`.
    contexts: Vec<(u32, CString)>,
    completion: Option<Completion>,
    list: Option<List>,
    context: Option<Context>,
}

impl OptionRun {
    /// Started by the caller rather than by the handshake.
    pub(super) fn is_user(&self) -> bool {
        self.user
    }
}

/// The errno a refused option reports, for options other than GO/INFO.
fn refused(reply_type: u32) -> i32 {
    match reply_type {
        proto::NBD_REP_ERR_POLICY => libc::EPERM,
        proto::NBD_REP_ERR_INVALID => libc::EINVAL,
        proto::NBD_REP_ERR_UNKNOWN => libc::ENOENT,
        proto::NBD_REP_ERR_SHUTDOWN => libc::ESHUTDOWN,
        proto::NBD_REP_ERR_TOO_BIG => libc::ERANGE,
        _ => libc::ENOTSUP,
    }
}

fn option_name(option: u32) -> &'static str {
    match option {
        proto::NBD_OPT_GO => "opt_go",
        proto::NBD_OPT_INFO => "opt_info",
        proto::NBD_OPT_LIST => "list",
        proto::NBD_OPT_LIST_META_CONTEXT | proto::NBD_OPT_SET_META_CONTEXT => "meta context",
        proto::NBD_OPT_STRUCTURED_REPLY => "opt_structured_reply",
        proto::NBD_OPT_EXTENDED_HEADERS => "opt_extended_headers",
        proto::NBD_OPT_STARTTLS => "opt_starttls",
        _ => "option",
    }
}

/// Appends the payload of a meta-context option: export name and queries.
fn meta_payload(export: &[u8], queries: &[String]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(export.len() as u32).to_be_bytes());
    p.extend_from_slice(export);
    p.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        p.extend_from_slice(&(q.len() as u32).to_be_bytes());
        p.extend_from_slice(q.as_bytes());
    }
    p
}

impl Conn {
    /// Sends the next option of a plain connect, or stops to let the
    /// caller negotiate (option mode), or asks for the export.
    pub(super) fn next_auto_option(&mut self) {
        if self.take_auto_starttls() {
            // TLS first: everything after it is negotiated encrypted.
            self.send_option_run(proto::NBD_OPT_STARTTLS, &[], OptionRun::default());
        } else if self.settings.request_extended_headers
            // Extended headers imply structured replies: not asked for
            // when those are not wanted (as libnbd).
            && self.settings.request_structured_replies
            && !self.tried_extended_headers
        {
            self.tried_extended_headers = true;
            self.send_option_run(proto::NBD_OPT_EXTENDED_HEADERS, &[], OptionRun::default());
        } else if self.settings.request_structured_replies
            && !self.negotiated.structured_replies
            && !self.tried_structured_replies
        {
            self.tried_structured_replies = true;
            self.send_option_run(proto::NBD_OPT_STRUCTURED_REPLY, &[], OptionRun::default());
        } else if self.settings.opt_mode {
            self.phase = Phase::Negotiating;
        } else {
            self.start_go(proto::NBD_OPT_GO, OptionRun::default());
        }
    }

    fn send_option_run(&mut self, option: u32, payload: &[u8], run: OptionRun) {
        proto::encode_option(&mut self.hs_out, option, payload);
        self.option_run = Some(run);
        self.phase = Phase::Handshake(Step::OptionReply(option));
    }

    /// GO or INFO, preceded by `NBD_OPT_SET_META_CONTEXT` when contexts
    /// are requested, even if the caller already set them (the export
    /// name may have changed since), as libnbd does.
    fn start_go(&mut self, option: u32, mut run: OptionRun) {
        let want_meta = self.settings.request_meta_context
            && !self.settings.meta_requests.is_empty()
            && self.negotiated.structured_replies;
        if want_meta {
            run.then = Some(option);
            let payload = meta_payload(&self.settings.export_name, &self.settings.meta_requests);
            self.send_option_run(proto::NBD_OPT_SET_META_CONTEXT, &payload, run);
        } else {
            self.send_go_or_info(option, run);
        }
    }

    fn send_go_or_info(&mut self, option: u32, run: OptionRun) {
        let mut infos = Vec::with_capacity(3);
        if self.settings.request_block_size {
            infos.push(proto::NBD_INFO_BLOCK_SIZE);
        }
        if self.settings.full_info {
            infos.push(proto::NBD_INFO_NAME);
            infos.push(proto::NBD_INFO_DESCRIPTION);
        }
        let name = self.settings.export_name.clone();
        proto::encode_opt_go(&mut self.hs_out, option, &name, &infos);
        self.option_run = Some(run);
        self.phase = Phase::Handshake(Step::OptionReply(option));
        self.reset_export_info();
    }

    /// Forgets what the server said about the export (size, flags, block
    /// sizes, name, description), as libnbd does before GO/INFO, after
    /// a refused one, after STARTTLS and on a new export name.
    pub(crate) fn reset_export_info(&mut self) {
        let n = &mut self.negotiated;
        n.export = Default::default();
        n.block_minimum = 0;
        n.block_preferred = 0;
        n.block_maximum = 0;
        n.canonical_name = None;
        n.description = None;
        self.got_export_info = false;
    }

    /// Starts an option the caller asked for; the handle must be negotiating.
    pub(crate) fn start_user_option(
        &mut self,
        option: UserOption,
        completion: Option<Completion>,
        list: Option<List>,
        context: Option<Context>,
    ) -> Result<()> {
        if self.negotiated.protocol != "newstyle-fixed" {
            return self.start_plain_newstyle_option(option, completion);
        }
        self.option_result = None;
        let run = OptionRun {
            user: true,
            completion,
            list,
            context,
            ..OptionRun::default()
        };
        let name = self.settings.export_name.clone();
        match option {
            UserOption::Go => self.start_go(proto::NBD_OPT_GO, run),
            UserOption::Info => self.start_go(proto::NBD_OPT_INFO, run),
            UserOption::List => self.send_option_run(proto::NBD_OPT_LIST, &[], run),
            UserOption::ListMetaContext(queries) => {
                let q = queries.unwrap_or_else(|| self.settings.meta_requests.clone());
                let payload = meta_payload(&name, &q);
                self.send_option_run(proto::NBD_OPT_LIST_META_CONTEXT, &payload, run);
            }
            UserOption::SetMetaContext(queries) => {
                let q = queries.unwrap_or_else(|| self.settings.meta_requests.clone());
                let payload = meta_payload(&name, &q);
                self.send_option_run(proto::NBD_OPT_SET_META_CONTEXT, &payload, run);
            }
            UserOption::StructuredReply => {
                self.send_option_run(proto::NBD_OPT_STRUCTURED_REPLY, &[], run)
            }
            UserOption::ExtendedHeaders => {
                self.send_option_run(proto::NBD_OPT_EXTENDED_HEADERS, &[], run)
            }
            UserOption::StartTls => self.send_option_run(proto::NBD_OPT_STARTTLS, &[], run),
            UserOption::Abort => {
                self.send_option_run(proto::NBD_OPT_ABORT, &[], run);
            }
        }
        // Send at once if the socket takes it.
        self.progress()
    }

    /// Plain newstyle knows only `NBD_OPT_EXPORT_NAME` (as libnbd): GO
    /// sends it, ABORT kills the handle, anything else is refused.
    fn start_plain_newstyle_option(
        &mut self,
        option: UserOption,
        completion: Option<Completion>,
    ) -> Result<()> {
        match option {
            UserOption::Go => {
                self.option_result = None;
                self.option_run = Some(OptionRun {
                    user: true,
                    completion,
                    ..OptionRun::default()
                });
                self.send_export_name();
                self.progress()
            }
            UserOption::Abort => {
                // There is no way to say it: the handle dies, and the
                // call itself reports success, as in libnbd 1.22.
                self.option_result = None;
                self.die(Error::new(
                    libc::ENOTSUP,
                    "handshake: server is not using fixed newstyle",
                ));
                self.option_result = Some(Ok(0));
                Ok(())
            }
            _ => Err(Error::new(
                libc::ENOTSUP,
                "server is not using fixed newstyle protocol",
            )),
        }
    }

    /// The result of the caller's last option, once it has finished.
    pub(crate) fn take_option_result(&mut self) -> Option<Result<i32>> {
        self.option_result.take()
    }

    /// Ends the current option: a caller's option reports `result` (its
    /// completion callback sees the errno) and the handle goes back to
    /// negotiating unless the option moved it on.
    pub(super) fn finish_option(&mut self, result: Result<i32>) {
        let errno = match &result {
            Ok(_) => 0,
            Err(e) if e.errno() != 0 => e.errno(),
            Err(_) => libc::ENOTSUP,
        };
        self.finish_option_errno(result, errno);
    }

    /// As [`Conn::finish_option`], with the errno the completion callback
    /// sees given separately (a refusal the call itself reports as false).
    pub(super) fn finish_option_errno(&mut self, result: Result<i32>, errno: i32) {
        let Some(mut run) = self.option_run.take() else {
            return;
        };
        if matches!(self.phase, Phase::Handshake(_)) {
            self.phase = Phase::Negotiating;
        }
        let mut errno = errno;
        let mut result = result;
        if let Some(cb) = run.completion.as_mut().filter(|cb| cb.is_callable()) {
            if cb.call(&mut errno) == -1 && errno != 0 && result.is_ok() {
                result = Err(Error::new(errno, "option failed in completion callback"));
            }
        }
        // Free the callbacks now: mid-option ones, then completion.
        run.list = None;
        run.context = None;
        run.completion = None;
        self.option_result = Some(result);
    }

    /// Handles one option reply. Errors returned here kill the handle.
    pub(super) fn handle_option_reply(
        &mut self,
        option: u32,
        reply_type: u32,
        payload: &[u8],
    ) -> Result<()> {
        if option == proto::NBD_OPT_ABORT {
            // Whatever the server says, the connection is over.
            self.note_closed();
            self.finish_option(Ok(0));
            return Ok(());
        }
        let user = self.option_run.as_ref().is_some_and(|r| r.user);
        if reply_type & proto::NBD_REP_FLAG_ERROR != 0 {
            return self.option_refused(option, reply_type, user, payload);
        }
        match option {
            proto::NBD_OPT_EXTENDED_HEADERS | proto::NBD_OPT_STRUCTURED_REPLY => {
                expect_ack(reply_type)?;
                if option == proto::NBD_OPT_EXTENDED_HEADERS {
                    self.negotiated.extended_headers = true;
                }
                self.negotiated.structured_replies = true;
                self.option_over(user, 1);
                Ok(())
            }
            proto::NBD_OPT_STARTTLS => {
                expect_ack(reply_type)?;
                self.start_tls_session()
            }
            proto::NBD_OPT_LIST => self.list_reply(reply_type, payload),
            proto::NBD_OPT_LIST_META_CONTEXT | proto::NBD_OPT_SET_META_CONTEXT => {
                self.meta_context_reply(option, reply_type, payload)
            }
            proto::NBD_OPT_GO | proto::NBD_OPT_INFO => {
                self.handle_go_reply(reply_type, payload)?;
                if reply_type == proto::NBD_REP_ACK {
                    // INFO, or a caller's GO, reports back; the handshake's
                    // own GO just ends.
                    if option == proto::NBD_OPT_INFO || user {
                        self.finish_option(Ok(0));
                    } else {
                        self.option_run = None;
                    }
                }
                Ok(())
            }
            _ => Err(protocol_error("handshake: reply to an unknown option")),
        }
    }

    /// An option that needs nothing more is over: a caller's reports
    /// `result`, the handshake's own goes on to the next option.
    fn option_over(&mut self, user: bool, result: i32) {
        if user {
            self.finish_option(Ok(result));
        } else {
            self.option_run = None;
            self.next_auto_option();
        }
    }

    /// A reply to `NBD_OPT_LIST`: one export, or the ACK that ends the list.
    fn list_reply(&mut self, reply_type: u32, payload: &[u8]) -> Result<()> {
        match reply_type {
            proto::NBD_REP_SERVER => {
                let (name, desc) = decode_rep_server(payload)?;
                if let Some(run) = self.option_run.as_mut() {
                    run.count += 1;
                    if let Some(cb) = run.list.as_mut().filter(|cb| cb.is_callable()) {
                        cb.call(&name, &desc);
                    }
                }
                Ok(())
            }
            proto::NBD_REP_ACK => {
                let count = self.option_run.as_ref().map_or(0, |r| r.count);
                self.finish_option(Ok(count));
                Ok(())
            }
            t => Err(super::handshake::unexpected_reply(t)),
        }
    }

    /// A reply to `NBD_OPT_LIST_META_CONTEXT` or `NBD_OPT_SET_META_CONTEXT`:
    /// one context, or the ACK that ends the list.
    fn meta_context_reply(&mut self, option: u32, reply_type: u32, payload: &[u8]) -> Result<()> {
        match reply_type {
            proto::NBD_REP_META_CONTEXT => {
                let (id, name) = decode_rep_meta_context(payload)?;
                if let Some(run) = self.option_run.as_mut() {
                    run.count += 1;
                    if option == proto::NBD_OPT_SET_META_CONTEXT {
                        let c = CString::new(name.replace('\0', "")).unwrap_or_default();
                        run.contexts.push((id, c));
                    }
                    if let Some(cb) = run.context.as_mut().filter(|cb| cb.is_callable()) {
                        cb.call(&name);
                    }
                }
                Ok(())
            }
            proto::NBD_REP_ACK => {
                let (count, then, contexts) = match self.option_run.as_mut() {
                    Some(run) => (
                        run.count,
                        run.then.take(),
                        std::mem::take(&mut run.contexts),
                    ),
                    None => (0, None, Vec::new()),
                };
                if option == proto::NBD_OPT_SET_META_CONTEXT {
                    self.negotiated.meta_contexts = contexts;
                    self.negotiated.meta_valid = true;
                }
                match then {
                    Some(next) => {
                        let run = self.option_run.take().unwrap_or_default();
                        self.send_go_or_info(next, run);
                    }
                    None => self.finish_option(Ok(count)),
                }
                Ok(())
            }
            t => Err(super::handshake::unexpected_reply(t)),
        }
    }

    /// The server refused `option` with error reply `reply_type`.
    fn option_refused(
        &mut self,
        option: u32,
        reply_type: u32,
        user: bool,
        payload: &[u8],
    ) -> Result<()> {
        match option {
            proto::NBD_OPT_GO | proto::NBD_OPT_INFO => {
                self.go_refused(option, reply_type, user, payload)
            }
            proto::NBD_OPT_SET_META_CONTEXT if !user => {
                // No contexts: carry on with GO/INFO without them.
                self.negotiated.meta_contexts.clear();
                self.negotiated.meta_valid = true;
                let mut run = self.option_run.take().unwrap_or_default();
                let next = run.then.take().unwrap_or(proto::NBD_OPT_GO);
                self.send_go_or_info(next, run);
                Ok(())
            }
            proto::NBD_OPT_STARTTLS => self.starttls_refused(reply_type, user),
            proto::NBD_OPT_EXTENDED_HEADERS | proto::NBD_OPT_STRUCTURED_REPLY => {
                self.option_over(user, 0);
                Ok(())
            }
            _ => {
                if let Some(run) = self.option_run.as_mut() {
                    run.error
                        .get_or_insert_with(|| Error::new(refused(reply_type), "refused"));
                }
                self.finish_option(Err(Error::new(
                    refused(reply_type),
                    format!(
                        "server replied with error to {} request",
                        option_name(option)
                    ),
                )));
                Ok(())
            }
        }
    }

    /// The server refused `NBD_OPT_GO` or `NBD_OPT_INFO`.
    fn go_refused(
        &mut self,
        option: u32,
        reply_type: u32,
        user: bool,
        payload: &[u8],
    ) -> Result<()> {
        if option == proto::NBD_OPT_GO && reply_type == proto::NBD_REP_ERR_UNSUP {
            // An old server without NBD_OPT_GO: fall back to
            // NBD_OPT_EXPORT_NAME (a caller's GO too, as libnbd;
            // its end is reported when the export arrives).
            self.debug
                .log(|| "server is confused by NBD_OPT_GO, continuing anyway".into());
            if !user {
                self.option_run = None;
            }
            self.send_export_name();
            return Ok(());
        }
        let err = super::handshake::reply_error(reply_type, &self.settings.export_name, payload);
        if !user {
            return Err(err);
        }
        // Whatever INFO replies came before the refusal are void.
        self.reset_export_info();
        self.negotiated.meta_valid = false;
        // The call reports the error as it is (errno 0 for some
        // refusals); the completion callback never sees 0.
        let errno = if err.errno() != 0 {
            err.errno()
        } else {
            libc::ENOTSUP
        };
        self.finish_option_errno(Err(err), errno);
        Ok(())
    }

    /// The server refused `NBD_OPT_STARTTLS`: fatal if the handshake
    /// needs TLS, else the connection goes on unencrypted.
    fn starttls_refused(&mut self, reply_type: u32, user: bool) -> Result<()> {
        if !user {
            if let Some(err) = self.starttls_refused_error() {
                return Err(err);
            }
        }
        let why = match reply_type {
            proto::NBD_REP_ERR_POLICY => "policy",
            proto::NBD_REP_ERR_INVALID => "invalid request",
            _ => "not supported",
        };
        self.debug.log(|| format!("server refused TLS ({why})"));
        let errno = if reply_type == proto::NBD_REP_ERR_INVALID {
            libc::EINVAL
        } else {
            libc::ENOTSUP
        };
        if user {
            self.finish_option_errno(Ok(0), errno);
        } else {
            self.debug
                .log(|| "continuing with unencrypted connection".into());
            self.option_run = None;
            self.next_auto_option();
        }
        Ok(())
    }
}

/// Options that are only ever acknowledged: anything but an ACK (or an
/// error, handled before) is fatal.
fn expect_ack(reply_type: u32) -> Result<()> {
    if reply_type != proto::NBD_REP_ACK {
        return Err(super::handshake::unexpected_reply(reply_type));
    }
    Ok(())
}

/// Decodes an `NBD_REP_SERVER` payload: the export's name (length
/// first), then its description.
fn decode_rep_server(payload: &[u8]) -> Result<(String, String)> {
    if payload.len() < 4 {
        return Err(protocol_error("handshake: invalid NBD_REP_SERVER length"));
    }
    let n = proto::be32(payload, 0) as usize;
    if n > payload.len() - 4 || n > proto::MAX_STRING_LEN {
        return Err(protocol_error("invalid export length"));
    }
    let name = String::from_utf8_lossy(&payload[4..4 + n]).into_owned();
    let desc = String::from_utf8_lossy(&payload[4 + n..]).into_owned();
    Ok((name, desc))
}

/// Decodes an `NBD_REP_META_CONTEXT` payload: the context's id, then its
/// name (not empty, at most 4096 bytes).
fn decode_rep_meta_context(payload: &[u8]) -> Result<(u32, String)> {
    if payload.len() <= 4 || payload.len() - 4 > proto::MAX_STRING_LEN {
        return Err(protocol_error(
            "handshake: invalid NBD_REP_META_CONTEXT reply length",
        ));
    }
    let id = proto::be32(payload, 0);
    Ok((id, String::from_utf8_lossy(&payload[4..]).into_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::testwire::Wire;
    use super::*;
    use crate::proto::*;

    fn feed(c: &mut Conn, wire: &Wire, bytes: &[u8]) -> Option<Error> {
        wire.push(bytes);
        c.progress().err()
    }

    fn reply(option: u32, reply_type: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_option_reply(&mut v, option, reply_type, payload);
        v
    }

    /// A fixed-newstyle connection in option mode, negotiating, with
    /// structured replies agreed.
    fn negotiating() -> (Conn, Wire) {
        let (mut c, wire) = Conn::test_handshake();
        c.settings.opt_mode = true;
        c.settings.request_extended_headers = false;
        let mut g = encode_greeting(Greeting::Newstyle).to_vec();
        g.extend_from_slice(&NBD_FLAG_FIXED_NEWSTYLE.to_be_bytes());
        g.extend(reply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, &[]));
        assert!(feed(&mut c, &wire, &g).is_none());
        assert!(c.is_negotiating());
        wire.take_sent();
        (c, wire)
    }

    fn server(name: &[u8], desc: &[u8]) -> Vec<u8> {
        let mut p = (name.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(name);
        p.extend_from_slice(desc);
        p
    }

    #[test]
    fn list_exports() {
        let (mut c, wire) = negotiating();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let list = List::new(move |name, desc| {
            s.lock().unwrap().push((name.to_string(), desc.to_string()));
            0
        });
        c.start_user_option(UserOption::List, None, Some(list), None)
            .unwrap();
        let mut expect = Vec::new();
        encode_option(&mut expect, NBD_OPT_LIST, &[]);
        assert_eq!(wire.take_sent(), expect);
        let mut r = reply(NBD_OPT_LIST, NBD_REP_SERVER, &server(b"a", b"first"));
        r.extend(reply(NBD_OPT_LIST, NBD_REP_SERVER, &server(b"", b"")));
        r.extend(reply(NBD_OPT_LIST, NBD_REP_ACK, &[]));
        assert!(feed(&mut c, &wire, &r).is_none());
        assert_eq!(c.take_option_result().unwrap().unwrap(), 2);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![("a".into(), "first".into()), ("".into(), "".into())]
        );
        assert!(c.is_negotiating());
    }

    #[test]
    fn refused_list() {
        let (mut c, wire) = negotiating();
        c.start_user_option(UserOption::List, None, None, None)
            .unwrap();
        let r = reply(NBD_OPT_LIST, NBD_REP_ERR_POLICY, b"no");
        assert!(feed(&mut c, &wire, &r).is_none());
        let err = c.take_option_result().unwrap().unwrap_err();
        assert_eq!(err.errno(), libc::EPERM);
        assert_eq!(err.message(), "server replied with error to list request");
        assert!(c.is_negotiating());
    }

    #[test]
    fn malformed_list_replies_kill_the_handle() {
        let mut long_name = server(&[b'n'; MAX_STRING_LEN + 1], b"");
        long_name.truncate(4 + MAX_STRING_LEN + 1);
        for (payload, reply_type, message) in [
            (
                vec![0, 0, 0],
                NBD_REP_SERVER,
                "handshake: invalid NBD_REP_SERVER length",
            ),
            (
                vec![0, 0, 0, 9, b'x'],
                NBD_REP_SERVER,
                "invalid export length",
            ),
            (long_name, NBD_REP_SERVER, "invalid export length"),
            (
                vec![],
                NBD_REP_INFO,
                "handshake: unexpected option reply type 3",
            ),
        ] {
            let (mut c, wire) = negotiating();
            c.start_user_option(UserOption::List, None, None, None)
                .unwrap();
            let err =
                feed(&mut c, &wire, &reply(NBD_OPT_LIST, reply_type, &payload)).expect("fatal");
            assert_eq!((err.errno(), err.message()), (libc::EPROTO, message));
            assert!(c.is_dead());
        }
    }

    #[test]
    fn set_meta_context() {
        let (mut c, wire) = negotiating();
        let queries = vec!["base:allocation".to_string()];
        c.start_user_option(UserOption::SetMetaContext(Some(queries)), None, None, None)
            .unwrap();
        let mut expect = Vec::new();
        let payload = meta_payload(b"", &["base:allocation".to_string()]);
        encode_option(&mut expect, NBD_OPT_SET_META_CONTEXT, &payload);
        assert_eq!(wire.take_sent(), expect);
        let mut p = 7u32.to_be_bytes().to_vec();
        p.extend_from_slice(b"base:allocation");
        let mut r = reply(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, &p);
        r.extend(reply(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK, &[]));
        assert!(feed(&mut c, &wire, &r).is_none());
        assert_eq!(c.take_option_result().unwrap().unwrap(), 1);
        assert_eq!(c.negotiated.meta_contexts.len(), 1);
        assert_eq!(c.negotiated.meta_contexts[0].0, 7);
        assert_eq!(
            c.negotiated.meta_contexts[0].1.to_str().unwrap(),
            "base:allocation"
        );
    }

    #[test]
    fn reply_payload_decoders() {
        assert_eq!(
            decode_rep_server(&server(b"exp", b"desc")).unwrap(),
            ("exp".to_string(), "desc".to_string())
        );
        assert_eq!(
            decode_rep_server(&[0, 0, 0]).unwrap_err().message(),
            "handshake: invalid NBD_REP_SERVER length"
        );
        assert_eq!(
            decode_rep_server(&[0, 0, 0, 2, b'x'])
                .unwrap_err()
                .message(),
            "invalid export length"
        );
        assert_eq!(
            decode_rep_meta_context(&[0, 0, 0, 3, b'a', b':', b'b']).unwrap(),
            (3, "a:b".to_string())
        );
        let mut long = vec![0, 0, 0, 1];
        long.resize(4 + MAX_STRING_LEN + 1, b'x');
        for bad in [&[0u8, 0, 0, 1][..], &[0, 0], &long] {
            let err = decode_rep_meta_context(bad).unwrap_err();
            assert_eq!(err.errno(), libc::EPROTO);
            assert_eq!(
                err.message(),
                "handshake: invalid NBD_REP_META_CONTEXT reply length"
            );
        }
        assert!(expect_ack(NBD_REP_ACK).is_ok());
        assert_eq!(
            expect_ack(NBD_REP_SERVER).unwrap_err().message(),
            "handshake: unexpected option reply type 2"
        );
    }
}
