//! The connection state machine: one non-blocking machine for the handshake
//! and for transmission, driven by socket readiness.
//!
//! [`Conn::progress`] does all the I/O that can be done without blocking and
//! returns; [`Conn::direction`] says what to wait for next. Synchronous calls
//! issue a command and then alternate `poll` and `progress` until it is done,
//! so there is one code path for both styles.
//!
//! Commands live in reusable slots (no allocation per command). The cookie
//! on the wire is the slot index plus a generation count, so a reply finds
//! its command in O(1) and a stale or forged cookie is detected.

use std::collections::VecDeque;
use std::io;

use crate::proto::{self, ExportInfo, ReplyHeader};
use crate::transport::{Subprocess, Transport};
use crate::{Error, Result};

/// Largest read or write payload libnbd allows in one command.
pub(crate) const MAX_REQUEST_SIZE: u64 = 64 * 1024 * 1024;
/// Largest non-data payload (option replies, error chunks) accepted.
const MAX_SMALL_PAYLOAD: usize = 64 * 1024 * 1024;
/// Longest error chunk: error, message length, message, offset.
const MAX_ERROR_CHUNK: u64 = 6 + proto::MAX_STRING_LEN as u64 + 8;
/// Size of the receive buffer that small replies are read into.
const RBUF_SIZE: usize = 16 * 1024;
/// Most requests gathered into one `sendmsg`.
const MAX_IOVS: usize = 64;

/// Where a handle is in its life, as libnbd's public states see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the full set of libnbd's states; not every call uses each
pub(crate) enum Perm {
    Created,
    Connecting,
    Negotiating,
    Connected,
    Closed,
    Dead,
}

impl Perm {
    fn text(self) -> &'static str {
        match self {
            Perm::Created => "newly created",
            Perm::Connecting => "connecting",
            Perm::Negotiating => "negotiating",
            Perm::Connected => "connected with the server",
            Perm::Closed => "shut down",
            Perm::Dead => "dead",
        }
    }
}

/// Steps of the handshake; each waits for bytes from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The 16 bytes of magic.
    Greeting,
    /// The rest of an oldstyle greeting.
    OldstyleRest,
    /// The 16-bit global flags of a newstyle server.
    GlobalFlags,
    /// The reply to an option we sent.
    OptionReply(u32),
    /// The reply to `NBD_OPT_EXPORT_NAME`.
    ExportNameReply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    Handshake(Step),
    Ready,
    Closed,
    Dead,
}

/// Which way the machine waits: `LIBNBD_AIO_DIRECTION_*` values.
pub(crate) const DIRECTION_READ: u32 = 1;
pub(crate) const DIRECTION_WRITE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Waiting to be (fully) written.
    Queued,
    /// Written; waiting for its reply.
    Sent,
    /// Reply complete (or failed); waiting to be retired.
    Done,
}

/// One command, from issue to retirement.
struct Slot {
    generation: u32,
    state: SlotState,
    kind: u16,
    offset: u64,
    count: u64,
    /// Read destination or write source; valid while the command lives
    /// (the caller's promise, as in libnbd).
    buf: *mut u8,
    header: [u8; proto::REQUEST_LEN],
    /// First error seen for this command (an errno), 0 for success.
    error: i32,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            generation: 0,
            state: SlotState::Free,
            kind: 0,
            offset: 0,
            count: 0,
            buf: std::ptr::null_mut(),
            header: [0; proto::REQUEST_LEN],
            error: 0,
        }
    }

    /// Bytes of payload that follow the header on the wire.
    fn payload_len(&self) -> usize {
        if self.kind == proto::NBD_CMD_WRITE {
            self.count as usize
        } else {
            0
        }
    }

    fn wire_len(&self) -> usize {
        self.header.len() + self.payload_len()
    }
}

/// Identifies a command in the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandId {
    index: u32,
    generation: u32,
}

impl CommandId {
    fn cookie(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    fn from_cookie(cookie: u64) -> CommandId {
        CommandId {
            index: cookie as u32,
            generation: (cookie >> 32) as u32,
        }
    }
}

/// What the reply reader is in the middle of.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// Waiting for the next reply header.
    Header,
    /// Reading read data straight into the command's buffer.
    Data {
        id: CommandId,
        dst: *mut u8,
        left: usize,
        done: bool,
    },
    /// Waiting for a whole non-data chunk payload.
    ChunkPayload {
        id: Option<CommandId>,
        flags: u16,
        kind: u16,
        length: usize,
    },
    /// Throwing away payload bytes nobody can use.
    Discard {
        id: Option<CommandId>,
        left: u64,
        done: bool,
    },
}

/// What the handshake has learned about the export.
#[derive(Debug, Clone, Default)]
pub(crate) struct Negotiated {
    pub export: ExportInfo,
    pub protocol: &'static str,
    pub structured_replies: bool,
    pub block_minimum: u32,
    pub block_preferred: u32,
    pub block_maximum: u32,
    pub canonical_name: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
}

/// Settings the user chooses before connecting.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub export_name: Vec<u8>,
    pub request_structured_replies: bool,
    pub request_block_size: bool,
    pub full_info: bool,
    pub pread_initialize: bool,
    pub strict: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            export_name: Vec::new(),
            request_structured_replies: true,
            request_block_size: true,
            full_info: false,
            pread_initialize: true,
            strict: crate::capi::types::LIBNBD_STRICT_MASK,
        }
    }
}

/// One connection: transport, handshake, and commands in flight.
pub(crate) struct Conn {
    phase: Phase,
    transport: Option<Box<dyn Transport>>,
    pub subprocess: Option<Subprocess>,
    pub settings: Settings,
    pub negotiated: Negotiated,
    /// Why the machine died, returned to whoever drives it next.
    fatal: Option<Error>,

    /// Handshake bytes still to send.
    hs_out: Vec<u8>,
    hs_out_pos: usize,
    /// Whether the server's greeting allowed `NBD_FLAG_NO_ZEROES`.
    no_zeroes: bool,
    /// Whether `NBD_OPT_GO` has told us the export's size and flags.
    got_export_info: bool,
    /// Received bytes not yet consumed: `rbuf[rpos..rend]`.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,

    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Commands waiting to be written, oldest first.
    to_issue: VecDeque<u32>,
    /// Bytes of `to_issue.front()` already written.
    issue_pos: usize,
    /// Commands written and awaiting a reply.
    in_flight: usize,
    reading: Reading,
    /// `NBD_CMD_DISC` has been queued; no more commands.
    pub disconnect_requested: bool,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in slots and `reading` point into buffers that
// the caller keeps valid until the command retires (the libnbd contract),
// whichever thread drives the machine; `Conn` is only used under a mutex.
unsafe impl Send for Conn {}

fn protocol_error(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(libc::EPROTO, message)
}

impl Conn {
    pub(crate) fn new() -> Conn {
        Conn {
            phase: Phase::Created,
            transport: None,
            subprocess: None,
            settings: Settings::default(),
            negotiated: Negotiated::default(),
            fatal: None,
            hs_out: Vec::new(),
            hs_out_pos: 0,
            no_zeroes: false,
            got_export_info: false,
            rbuf: vec![0; RBUF_SIZE],
            rpos: 0,
            rend: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            to_issue: VecDeque::new(),
            issue_pos: 0,
            in_flight: 0,
            reading: Reading::Header,
            disconnect_requested: false,
            iovs: Vec::with_capacity(MAX_IOVS * 2),
        }
    }

    // ---- public state ----------------------------------------------------

    pub(crate) fn is_created(&self) -> bool {
        self.phase == Phase::Created
    }
    pub(crate) fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Handshake(_))
    }
    pub(crate) fn is_negotiating(&self) -> bool {
        false
    }
    /// Mid-way through writing a request or reading a reply.
    pub(crate) fn is_processing(&self) -> bool {
        self.phase == Phase::Ready
            && (self.issue_pos > 0
                || !matches!(self.reading, Reading::Header)
                || self.rend > self.rpos)
    }
    pub(crate) fn is_ready(&self) -> bool {
        self.phase == Phase::Ready && !self.is_processing()
    }
    pub(crate) fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// libnbd's short name for the current state, used in error messages.
    pub(crate) fn state_name(&self) -> &'static str {
        let full = self.state_description();
        &full[..full.find(':').unwrap_or(full.len())]
    }

    /// `"NAME: description"` of the current state, NUL-terminated for C.
    pub(crate) fn state_description_nul(&self) -> &'static str {
        macro_rules! st {
            ($name:literal, $comment:literal) => {
                concat!($name, ": ", $comment, "\0")
            };
        }
        match self.phase {
            Phase::Created => st!("START", "Handle after being initially created"),
            Phase::Handshake(Step::Greeting) => st!(
                "MAGIC.RECV_MAGIC",
                "Receive initial magic identification from remote"
            ),
            Phase::Handshake(Step::OldstyleRest) => st!(
                "OLDSTYLE.RECV_REMAINING",
                "Receive remainder of oldstyle header"
            ),
            Phase::Handshake(Step::GlobalFlags) => st!(
                "NEWSTYLE.RECV_GFLAGS",
                "Receive newstyle gflags from remote"
            ),
            Phase::Handshake(Step::OptionReply(proto::NBD_OPT_STRUCTURED_REPLY)) => st!(
                "NEWSTYLE.OPT_STRUCTURED_REPLY.RECV_REPLY",
                "Receive newstyle NBD_OPT_STRUCTURED_REPLY option reply"
            ),
            Phase::Handshake(Step::OptionReply(_)) => st!(
                "NEWSTYLE.OPT_GO.RECV_REPLY",
                "Receive newstyle NBD_OPT_GO reply"
            ),
            Phase::Handshake(Step::ExportNameReply) => st!(
                "NEWSTYLE.OPT_EXPORT_NAME.RECV_REPLY",
                "Receive newstyle NBD_OPT_EXPORT_NAME reply"
            ),
            Phase::Ready if self.is_processing() => st!(
                "REPLY.START",
                "Prepare to receive a reply from the remote server"
            ),
            Phase::Ready => st!("READY", "Connection is ready to process NBD commands"),
            Phase::Closed => st!("CLOSED", "Connection is closed"),
            Phase::Dead => st!(
                "DEAD",
                "Connection is in an unrecoverable error state, can only be closed"
            ),
        }
    }

    /// `"NAME: description"` of the current state.
    pub(crate) fn state_description(&self) -> &'static str {
        let s = self.state_description_nul();
        &s[..s.len() - 1]
    }

    /// Fails unless the handle is in one of the `allowed` states.
    pub(crate) fn check_state(&self, allowed: &[Perm]) -> Result<()> {
        let ok = allowed.iter().any(|p| match p {
            Perm::Created => self.is_created(),
            Perm::Connecting => self.is_connecting(),
            Perm::Negotiating => self.is_negotiating(),
            Perm::Connected => self.phase == Phase::Ready,
            Perm::Closed => self.is_closed(),
            Perm::Dead => self.is_dead(),
        });
        if ok {
            return Ok(());
        }
        let errno = if self.is_created() {
            libc::ENOTCONN
        } else {
            libc::EINVAL
        };
        let wanted: Vec<&str> = allowed.iter().map(|p| p.text()).collect();
        Err(Error::new(
            errno,
            format!(
                "invalid state: {}: the handle must be {}",
                self.state_name(),
                wanted.join(", or ")
            ),
        ))
    }

    /// The fd to poll, if connected.
    pub(crate) fn fd(&self) -> Option<i32> {
        self.transport.as_ref().map(|t| t.fd())
    }

    /// What the machine is waiting for: a mask of `DIRECTION_*`.
    pub(crate) fn direction(&self) -> u32 {
        match self.phase {
            Phase::Created | Phase::Closed | Phase::Dead => 0,
            Phase::Handshake(_) => {
                if self.hs_out_pos < self.hs_out.len() {
                    DIRECTION_WRITE
                } else {
                    DIRECTION_READ
                }
            }
            Phase::Ready => {
                let mut d = DIRECTION_READ;
                if !self.to_issue.is_empty() {
                    d |= DIRECTION_WRITE;
                }
                d
            }
        }
    }

    // ---- connecting --------------------------------------------------------

    /// Starts the handshake over a freshly connected transport.
    pub(crate) fn start_handshake(&mut self, transport: Box<dyn Transport>) {
        self.transport = Some(transport);
        self.phase = Phase::Handshake(Step::Greeting);
    }

    /// Kills the machine: records why and fails every pending command.
    fn die(&mut self, err: Error) -> Error {
        if self.phase != Phase::Dead {
            self.phase = Phase::Dead;
            self.fatal = Some(err.clone());
            self.abort_commands(libc::ENOTCONN);
            // Closing our end lets a server on the other side see EOF.
            self.transport = None;
        }
        err
    }

    fn abort_commands(&mut self, errno: i32) {
        for slot in &mut self.slots {
            if matches!(slot.state, SlotState::Queued | SlotState::Sent) {
                if slot.error == 0 {
                    slot.error = errno;
                }
                slot.state = SlotState::Done;
            }
        }
        self.to_issue.clear();
        self.issue_pos = 0;
        self.in_flight = 0;
        self.reading = Reading::Header;
    }

    /// Makes as much progress as possible without blocking.
    ///
    /// An error kills the handle; the same error is returned to the caller.
    pub(crate) fn progress(&mut self) -> Result<()> {
        if self.phase == Phase::Dead {
            return Err(self
                .fatal
                .clone()
                .unwrap_or_else(|| Error::new(0, "connection is dead")));
        }
        loop {
            let wrote = match self.write_some() {
                Ok(w) => w,
                Err(e) => return Err(self.die(e)),
            };
            let read = match self.read_some() {
                Ok(r) => r,
                Err(e) => return Err(self.die(e)),
            };
            if !wrote && !read {
                return Ok(());
            }
        }
    }

    // ---- writing -------------------------------------------------------------

    /// Writes what is pending; true if anything was written.
    fn write_some(&mut self) -> Result<bool> {
        match self.phase {
            Phase::Handshake(_) => self.write_handshake(),
            Phase::Ready => self.write_commands(),
            _ => Ok(false),
        }
    }

    fn write_handshake(&mut self) -> Result<bool> {
        if self.hs_out_pos >= self.hs_out.len() {
            return Ok(false);
        }
        let t = self
            .transport
            .as_mut()
            .expect("handshake without transport");
        let pending = &self.hs_out[self.hs_out_pos..];
        match t.send(&[io::IoSlice::new(pending)]) {
            Ok(n) => {
                self.hs_out_pos += n;
                if self.hs_out_pos == self.hs_out.len() {
                    self.hs_out.clear();
                    self.hs_out_pos = 0;
                }
                Ok(n > 0)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(Error::io("send", &e)),
        }
    }

    /// Writes queued requests, several per `sendmsg`: each header and, for
    /// writes, the caller's buffer, without copying either.
    fn write_commands(&mut self) -> Result<bool> {
        if self.to_issue.is_empty() {
            return Ok(false);
        }
        let mut progressed = false;
        while !self.to_issue.is_empty() {
            self.iovs.clear();
            let mut skip = self.issue_pos;
            for &index in self.to_issue.iter().take(MAX_IOVS) {
                let slot = &self.slots[index as usize];
                let parts: [(*const u8, usize); 2] = [
                    (slot.header.as_ptr(), slot.header.len()),
                    (slot.buf as *const u8, slot.payload_len()),
                ];
                for (ptr, len) in parts {
                    if len == 0 {
                        continue;
                    }
                    if skip >= len {
                        skip -= len;
                        continue;
                    }
                    // SAFETY: skip < len, so the pointer stays in the buffer.
                    let base = unsafe { ptr.add(skip) };
                    self.iovs.push(libc::iovec {
                        iov_base: base as *mut libc::c_void,
                        iov_len: len - skip,
                    });
                    skip = 0;
                }
            }
            // SAFETY: IoSlice is documented to be ABI-compatible with iovec;
            // every iovec points into a slot header or a live caller buffer.
            let slices: &[io::IoSlice<'_>] = unsafe {
                std::slice::from_raw_parts(
                    self.iovs.as_ptr() as *const io::IoSlice<'_>,
                    self.iovs.len(),
                )
            };
            let t = self.transport.as_mut().expect("ready without transport");
            let mut sent = match t.send(slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(progressed),
                Err(e) => return Err(Error::io("send", &e)),
            };
            progressed |= sent > 0;
            while sent > 0 {
                let index = *self.to_issue.front().unwrap();
                let left = self.slots[index as usize].wire_len() - self.issue_pos;
                if sent < left {
                    self.issue_pos += sent;
                    break;
                }
                sent -= left;
                self.issue_pos = 0;
                self.to_issue.pop_front();
                self.command_written(index)?;
            }
        }
        Ok(progressed)
    }

    fn command_written(&mut self, index: u32) -> Result<()> {
        let slot = &mut self.slots[index as usize];
        if slot.kind == proto::NBD_CMD_DISC {
            // No reply comes to a disconnect: retire it now and tell the
            // server nothing more follows.
            self.free_slot(index);
            if let Some(t) = self.transport.as_mut() {
                let _ = t.shutdown_write();
            }
        } else {
            slot.state = SlotState::Sent;
            self.in_flight += 1;
        }
        Ok(())
    }

    // ---- reading -------------------------------------------------------------

    fn buffered(&self) -> usize {
        self.rend - self.rpos
    }

    /// Makes sure `n` unconsumed bytes are in `rbuf`; false if the socket
    /// has no more for now.
    fn fill(&mut self, n: usize) -> Result<bool> {
        if self.buffered() >= n {
            return Ok(true);
        }
        if n > self.rbuf.len() {
            self.rbuf.resize(n.next_power_of_two(), 0);
        }
        if self.rpos + n > self.rbuf.len() {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        while self.buffered() < n {
            let t = self.transport.as_mut().expect("reading without transport");
            match t.recv(&mut self.rbuf[self.rend..]) {
                Ok(0) if self.at_clean_end() => {
                    self.note_closed();
                    return Ok(false);
                }
                Ok(0) => return Err(self.eof()),
                Ok(got) => self.rend += got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(Error::io("recv", &e)),
            }
        }
        Ok(true)
    }

    /// True when the server may close now: after our disconnect, with
    /// nothing pending and no partial reply.
    fn at_clean_end(&self) -> bool {
        self.phase == Phase::Ready
            && self.disconnect_requested
            && self.pending() == 0
            && self.buffered() == 0
            && matches!(self.reading, Reading::Header)
    }

    fn eof(&mut self) -> Error {
        Error::new(0, "recv: server disconnected unexpectedly")
    }

    fn consume(&mut self, n: usize) {
        self.rpos += n;
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
    }

    /// Reads and handles what the server sent; true if anything was consumed.
    fn read_some(&mut self) -> Result<bool> {
        let mut progressed = false;
        loop {
            let step = match self.phase {
                Phase::Handshake(step) => {
                    if self.hs_out_pos < self.hs_out.len() {
                        // Let the request go out before waiting for its reply.
                        return Ok(progressed);
                    }
                    self.read_handshake(step)?
                }
                Phase::Ready => self.read_reply()?,
                _ => false,
            };
            if !step {
                return Ok(progressed);
            }
            progressed = true;
        }
    }

    // ---- handshake -------------------------------------------------------------

    fn read_handshake(&mut self, step: Step) -> Result<bool> {
        match step {
            Step::Greeting => {
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
            }
            Step::OldstyleRest => {
                if !self.fill(proto::OLDSTYLE_REST_LEN)? {
                    return Ok(false);
                }
                let info = proto::decode_oldstyle_rest(&self.rbuf[self.rpos..self.rend]);
                self.consume(proto::OLDSTYLE_REST_LEN);
                self.finish_handshake(info)?;
            }
            Step::GlobalFlags => {
                if !self.fill(2)? {
                    return Ok(false);
                }
                let gflags = u16::from_be_bytes([self.rbuf[self.rpos], self.rbuf[self.rpos + 1]]);
                self.consume(2);
                let fixed = gflags & proto::NBD_FLAG_FIXED_NEWSTYLE != 0;
                self.no_zeroes = gflags & proto::NBD_FLAG_NO_ZEROES != 0;
                let mut cflags = 0;
                if fixed {
                    cflags |= proto::NBD_FLAG_C_FIXED_NEWSTYLE;
                }
                if self.no_zeroes {
                    cflags |= proto::NBD_FLAG_C_NO_ZEROES;
                }
                self.hs_out.extend_from_slice(&cflags.to_be_bytes());
                if fixed {
                    self.negotiated.protocol = "newstyle-fixed";
                    if self.settings.request_structured_replies {
                        self.send_option(proto::NBD_OPT_STRUCTURED_REPLY, &[]);
                    } else {
                        self.send_go();
                    }
                } else {
                    self.negotiated.protocol = "newstyle";
                    self.send_export_name();
                }
            }
            Step::OptionReply(option) => {
                if !self.fill(proto::OPTION_REPLY_LEN)? {
                    return Ok(false);
                }
                let mut h = [0u8; proto::OPTION_REPLY_LEN];
                h.copy_from_slice(&self.rbuf[self.rpos..self.rpos + proto::OPTION_REPLY_LEN]);
                let reply = proto::decode_option_reply(&h)
                    .ok_or_else(|| protocol_error("handshake: invalid option reply magic"))?;
                if reply.option != option {
                    return Err(protocol_error(format!(
                        "handshake: reply to option {} when option {} was sent",
                        reply.option, option
                    )));
                }
                let len = reply.length as usize;
                if len > MAX_SMALL_PAYLOAD {
                    return Err(protocol_error("handshake: option reply payload too large"));
                }
                if !self.fill(proto::OPTION_REPLY_LEN + len)? {
                    return Ok(false);
                }
                let start = self.rpos + proto::OPTION_REPLY_LEN;
                let payload = self.rbuf[start..start + len].to_vec();
                self.consume(proto::OPTION_REPLY_LEN + len);
                self.handle_option_reply(option, reply.reply_type, &payload)?;
            }
            Step::ExportNameReply => {
                let len = proto::EXPORT_NAME_REPLY_LEN + if self.no_zeroes { 0 } else { 124 };
                if !self.fill(len)? {
                    return Ok(false);
                }
                let info = proto::decode_export_name_reply(&self.rbuf[self.rpos..self.rend]);
                self.consume(len);
                self.finish_handshake(info)?;
            }
        }
        Ok(true)
    }

    fn send_option(&mut self, option: u32, payload: &[u8]) {
        proto::encode_option(&mut self.hs_out, option, payload);
        self.phase = Phase::Handshake(Step::OptionReply(option));
    }

    fn send_go(&mut self) {
        let mut infos = Vec::with_capacity(3);
        if self.settings.request_block_size {
            infos.push(proto::NBD_INFO_BLOCK_SIZE);
        }
        if self.settings.full_info {
            infos.push(proto::NBD_INFO_NAME);
            infos.push(proto::NBD_INFO_DESCRIPTION);
        }
        let name = self.settings.export_name.clone();
        proto::encode_opt_go(&mut self.hs_out, proto::NBD_OPT_GO, &name, &infos);
        self.phase = Phase::Handshake(Step::OptionReply(proto::NBD_OPT_GO));
        self.negotiated.export = ExportInfo::default();
        self.got_export_info = false;
    }

    fn send_export_name(&mut self) {
        let name = self.settings.export_name.clone();
        proto::encode_option(&mut self.hs_out, proto::NBD_OPT_EXPORT_NAME, &name);
        self.phase = Phase::Handshake(Step::ExportNameReply);
    }

    fn handle_option_reply(&mut self, option: u32, reply_type: u32, payload: &[u8]) -> Result<()> {
        match option {
            proto::NBD_OPT_STRUCTURED_REPLY => {
                match reply_type {
                    proto::NBD_REP_ACK => self.negotiated.structured_replies = true,
                    t if t & proto::NBD_REP_FLAG_ERROR != 0 => {
                        self.negotiated.structured_replies = false
                    }
                    t => {
                        return Err(protocol_error(format!(
                            "handshake: unexpected reply to NBD_OPT_STRUCTURED_REPLY: 0x{t:x}"
                        )))
                    }
                }
                self.send_go();
                Ok(())
            }
            proto::NBD_OPT_GO => self.handle_go_reply(reply_type, payload),
            _ => Err(protocol_error("handshake: reply to an unknown option")),
        }
    }

    fn handle_go_reply(&mut self, reply_type: u32, payload: &[u8]) -> Result<()> {
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
                        self.negotiated.block_minimum = minimum;
                        self.negotiated.block_preferred = preferred;
                        self.negotiated.block_maximum = maximum;
                    }
                    Some(proto::Info::Name(n)) => self.negotiated.canonical_name = Some(n),
                    Some(proto::Info::Description(d)) => self.negotiated.description = Some(d),
                    Some(proto::Info::Unknown(_)) => {}
                    None => {
                        return Err(protocol_error(
                            "handshake: incorrect NBD_REP_INFO option reply length",
                        ))
                    }
                }
                Ok(())
            }
            proto::NBD_REP_ACK => {
                if !self.got_export_info {
                    return Err(protocol_error(
                        "handshake: server omitted NBD_INFO_EXPORT reply to NBD_OPT_GO",
                    ));
                }
                let info = self.negotiated.export;
                self.finish_handshake(info)
            }
            proto::NBD_REP_ERR_UNSUP => {
                // An old server without NBD_OPT_GO: fall back.
                self.send_export_name();
                Ok(())
            }
            t => Err(go_error(t, &self.settings.export_name, payload)),
        }
    }

    fn finish_handshake(&mut self, info: ExportInfo) -> Result<()> {
        if info.size > i64::MAX as u64 {
            return Err(protocol_error(format!(
                "handshake: server export size {} is too large",
                info.size
            )));
        }
        self.negotiated.export = info;
        self.phase = Phase::Ready;
        Ok(())
    }

    // ---- transmission --------------------------------------------------------

    /// Queues a command and tries to write it at once.
    ///
    /// # Safety contract
    /// `buf` must be valid for `count` bytes (read for writes, written for
    /// reads) until the command is retired.
    pub(crate) fn issue(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        count: u64,
        buf: *mut u8,
    ) -> Result<CommandId> {
        let index = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::empty());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let id = CommandId {
            index,
            generation: slot.generation,
        };
        slot.state = SlotState::Queued;
        slot.kind = kind;
        slot.offset = offset;
        slot.count = count;
        slot.buf = buf;
        slot.error = 0;
        let req = proto::Request {
            flags,
            kind,
            cookie: id.cookie(),
            offset,
            count,
        };
        proto::encode_request(&req, &mut slot.header);
        self.to_issue.push_back(index);
        if kind == proto::NBD_CMD_DISC {
            self.disconnect_requested = true;
        }
        // Send now if the socket takes it; if it doesn't, the poll loop will.
        if let Err(e) = self.write_commands() {
            return Err(self.die(e));
        }
        Ok(id)
    }

    /// The result of a finished command: `None` while it is still running.
    pub(crate) fn command_result(&self, id: CommandId) -> Option<i32> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        match slot.state {
            SlotState::Done => Some(slot.error),
            _ => None,
        }
    }

    /// Frees a finished command's slot for reuse.
    pub(crate) fn retire(&mut self, id: CommandId) {
        if let Some(slot) = self.slots.get(id.index as usize) {
            if slot.generation == id.generation && slot.state == SlotState::Done {
                self.free_slot(id.index);
            }
        }
    }

    fn free_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.state = SlotState::Free;
        slot.buf = std::ptr::null_mut();
        self.free_slots.push(index);
    }

    /// Commands issued and not yet finished (queued or in flight).
    pub(crate) fn pending(&self) -> usize {
        self.in_flight + self.to_issue.len()
    }

    /// Looks up the command a reply's cookie names, if it awaits a reply.
    fn lookup(&self, cookie: u64) -> Option<CommandId> {
        let id = CommandId::from_cookie(cookie);
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation && slot.state == SlotState::Sent).then_some(id)
    }

    fn complete(&mut self, id: CommandId) {
        let slot = &mut self.slots[id.index as usize];
        slot.state = SlotState::Done;
        self.in_flight -= 1;
    }

    fn set_command_error(&mut self, id: CommandId, errno: i32) {
        let slot = &mut self.slots[id.index as usize];
        if slot.error == 0 {
            slot.error = errno;
        }
    }

    /// Handles one step of reply reading; false if it needs more bytes.
    fn read_reply(&mut self) -> Result<bool> {
        match self.reading {
            Reading::Header => self.read_reply_header(),
            Reading::Data {
                id,
                dst,
                left,
                done,
            } => self.read_data(id, dst, left, done),
            Reading::ChunkPayload {
                id,
                flags,
                kind,
                length,
            } => self.read_chunk_payload(id, flags, kind, length),
            Reading::Discard { id, left, done } => self.discard(id, left, done),
        }
    }

    fn read_reply_header(&mut self) -> Result<bool> {
        if !self.fill(4)? {
            return Ok(false);
        }
        let magic = proto::reply_magic(&self.rbuf[self.rpos..self.rend]);
        let Some(hlen) = proto::reply_header_len(magic) else {
            return Err(protocol_error(format!("invalid reply magic 0x{magic:x}")));
        };
        if !self.fill(hlen)? {
            return Ok(false);
        }
        let header = proto::decode_reply_header(&self.rbuf[self.rpos..self.rpos + hlen])
            .expect("length checked");
        self.consume(hlen);
        match header {
            ReplyHeader::Simple { error, cookie } => {
                let Some(id) = self.lookup(cookie) else {
                    // A simple reply's length depends on the command, so
                    // one for an unknown cookie cannot be skipped.
                    return Err(protocol_error(format!(
                        "no matching cookie 0x{cookie:x} found for server reply, \
                         this is probably a server bug"
                    )));
                };
                let slot = &self.slots[id.index as usize];
                if error == 0 && slot.kind == proto::NBD_CMD_READ {
                    self.reading = Reading::Data {
                        id,
                        dst: slot.buf,
                        left: slot.count as usize,
                        done: true,
                    };
                } else {
                    self.set_command_error(id, proto::errno_of_nbd_error(error));
                    self.complete(id);
                }
            }
            ReplyHeader::Chunk {
                flags,
                kind,
                cookie,
                length,
                ..
            } => {
                if !self.negotiated.structured_replies {
                    return Err(protocol_error(
                        "server sent a structured reply without negotiating it",
                    ));
                }
                self.start_chunk(flags, kind, cookie, length)?;
            }
        }
        Ok(true)
    }

    fn start_chunk(&mut self, flags: u16, kind: u16, cookie: u64, length: u64) -> Result<()> {
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        let id = self.lookup(cookie);
        let Some(id) = id else {
            // Framing is intact: skip the chunk, other commands go on.
            self.reading = Reading::Discard {
                id: None,
                left: length,
                done: false,
            };
            return Ok(());
        };
        let (cmd_kind, cmd_offset, cmd_count, cmd_buf) = {
            let s = &self.slots[id.index as usize];
            (s.kind, s.offset, s.count, s.buf)
        };
        match kind {
            proto::NBD_REPLY_TYPE_NONE => {
                if length != 0 {
                    self.set_command_error(id, libc::EPROTO);
                    self.reading = Reading::Discard {
                        id: Some(id),
                        left: length,
                        done,
                    };
                } else if done {
                    self.complete(id);
                } else {
                    // NONE must end the reply.
                    self.set_command_error(id, libc::EPROTO);
                }
            }
            proto::NBD_REPLY_TYPE_OFFSET_DATA if cmd_kind == proto::NBD_CMD_READ && length > 8 => {
                if !self.fill(8)? {
                    // Come back when the offset has arrived.
                    self.reading = Reading::ChunkPayload {
                        id: Some(id),
                        flags,
                        kind,
                        length: length as usize,
                    };
                    return Ok(());
                }
                let offset = proto::decode_data_offset(&self.rbuf[self.rpos..self.rend]);
                self.consume(8);
                self.start_data(id, offset, length - 8, done, cmd_offset, cmd_count, cmd_buf);
            }
            proto::NBD_REPLY_TYPE_OFFSET_HOLE if length == 12 => {
                self.reading = Reading::ChunkPayload {
                    id: Some(id),
                    flags,
                    kind,
                    length: length as usize,
                };
            }
            proto::NBD_REPLY_TYPE_ERROR | proto::NBD_REPLY_TYPE_ERROR_OFFSET
                if (6..=MAX_ERROR_CHUNK).contains(&length) =>
            {
                self.reading = Reading::ChunkPayload {
                    id: Some(id),
                    flags,
                    kind,
                    length: length as usize,
                };
            }
            _ => {
                // Unknown, unexpected for this command, or absurdly long:
                // the command fails, the chunk is skipped.
                let errno = if kind & proto::NBD_REPLY_TYPE_ERROR_BIT != 0 {
                    libc::EIO
                } else {
                    libc::EPROTO
                };
                self.set_command_error(id, errno);
                self.reading = Reading::Discard {
                    id: Some(id),
                    left: length,
                    done,
                };
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start_data(
        &mut self,
        id: CommandId,
        offset: u64,
        len: u64,
        done: bool,
        cmd_offset: u64,
        cmd_count: u64,
        cmd_buf: *mut u8,
    ) {
        let in_range =
            offset >= cmd_offset && len <= cmd_count && offset - cmd_offset <= cmd_count - len;
        if in_range {
            // SAFETY: offset-cmd_offset+len <= cmd_count, the buffer's length.
            let dst = unsafe { cmd_buf.add((offset - cmd_offset) as usize) };
            self.reading = Reading::Data {
                id,
                dst,
                left: len as usize,
                done,
            };
        } else {
            self.set_command_error(id, libc::EPROTO);
            self.reading = Reading::Discard {
                id: Some(id),
                left: len,
                done,
            };
        }
    }

    /// Moves payload into the caller's buffer: first what `rbuf` already
    /// holds, then straight from the socket.
    fn read_data(&mut self, id: CommandId, dst: *mut u8, left: usize, done: bool) -> Result<bool> {
        let mut dst = dst;
        let mut left = left;
        let take = left.min(self.buffered());
        if take > 0 {
            // SAFETY: dst has `left` writable bytes (checked at start_data or
            // the command's own count); rbuf holds `take` bytes at rpos.
            unsafe {
                std::ptr::copy_nonoverlapping(self.rbuf.as_ptr().add(self.rpos), dst, take);
                dst = dst.add(take);
            }
            self.consume(take);
            left -= take;
        }
        let mut progressed = take > 0;
        while left > 0 {
            let t = self.transport.as_mut().expect("reading without transport");
            // SAFETY: as above, dst has `left` writable bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(dst, left) };
            match t.recv(out) {
                Ok(0) => return Err(self.eof()),
                Ok(got) => {
                    // SAFETY: got <= left.
                    dst = unsafe { dst.add(got) };
                    left -= got;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.reading = Reading::Data {
                        id,
                        dst,
                        left,
                        done,
                    };
                    return Ok(progressed);
                }
                Err(e) => return Err(Error::io("recv", &e)),
            }
        }
        self.reading = Reading::Header;
        if done {
            self.complete(id);
        }
        Ok(true)
    }

    fn read_chunk_payload(
        &mut self,
        id: Option<CommandId>,
        flags: u16,
        kind: u16,
        length: usize,
    ) -> Result<bool> {
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        let id = id.expect("payload kept only for known commands");
        if kind == proto::NBD_REPLY_TYPE_OFFSET_DATA {
            // The data offset had not arrived when the header did.
            if !self.fill(8)? {
                return Ok(false);
            }
            let offset = proto::decode_data_offset(&self.rbuf[self.rpos..self.rend]);
            self.consume(8);
            let s = &self.slots[id.index as usize];
            let (o, c, b) = (s.offset, s.count, s.buf);
            self.start_data(id, offset, length as u64 - 8, done, o, c, b);
            return Ok(true);
        }
        if !self.fill(length)? {
            return Ok(false);
        }
        let payload = &self.rbuf[self.rpos..self.rpos + length];
        let (cmd_kind, cmd_offset, cmd_count, cmd_buf) = {
            let s = &self.slots[id.index as usize];
            (s.kind, s.offset, s.count, s.buf)
        };
        let decoded = if kind == proto::NBD_REPLY_TYPE_OFFSET_HOLE {
            proto::decode_hole_chunk(payload)
        } else {
            proto::decode_error_chunk(kind, payload)
        };
        self.consume(length);
        match decoded {
            Some(proto::ChunkPrefix::Hole {
                offset,
                length: hole,
            }) if cmd_kind == proto::NBD_CMD_READ
                && hole > 0
                && offset >= cmd_offset
                && hole as u64 <= cmd_count
                && offset - cmd_offset <= cmd_count - hole as u64 =>
            {
                // SAFETY: the hole lies within the command's buffer (checked).
                unsafe {
                    std::ptr::write_bytes(
                        cmd_buf.add((offset - cmd_offset) as usize),
                        0,
                        hole as usize,
                    )
                };
            }
            Some(proto::ChunkPrefix::Error { error, .. }) => {
                let errno = match proto::errno_of_nbd_error(error) {
                    0 => libc::EPROTO,
                    e => e,
                };
                self.set_command_error(id, errno);
            }
            _ => self.set_command_error(id, libc::EPROTO),
        }
        self.reading = Reading::Header;
        if done {
            self.complete(id);
        }
        Ok(true)
    }

    fn discard(&mut self, id: Option<CommandId>, left: u64, done: bool) -> Result<bool> {
        let mut left = left;
        let mut progressed = false;
        loop {
            let take = (self.buffered() as u64).min(left) as usize;
            self.consume(take);
            left -= take as u64;
            progressed |= take > 0;
            if left == 0 {
                break;
            }
            let want = (left as usize).min(self.rbuf.len());
            if !self.fill(want)? {
                self.reading = Reading::Discard { id, left, done };
                return Ok(progressed);
            }
        }
        self.reading = Reading::Header;
        if let (Some(id), true) = (id, done) {
            self.complete(id);
        }
        Ok(true)
    }

    // ---- teardown -------------------------------------------------------------

    /// Marks the connection closed once the server has gone after a disconnect.
    fn note_closed(&mut self) {
        self.phase = Phase::Closed;
        self.abort_commands(libc::ENOTCONN);
        self.transport = None;
    }

    /// Drops the transport and reaps the subprocess (at close).
    pub(crate) fn close(&mut self) {
        self.transport = None;
        if let Some(mut child) = self.subprocess.take() {
            child.reap();
        }
    }
}

fn go_error(reply_type: u32, export_name: &[u8], payload: &[u8]) -> Error {
    let _ = payload;
    match reply_type {
        proto::NBD_REP_ERR_POLICY | proto::NBD_REP_ERR_PLATFORM => {
            Error::new(0, "handshake: server policy prevents NBD_OPT_GO")
        }
        proto::NBD_REP_ERR_INVALID | proto::NBD_REP_ERR_TOO_BIG => Error::new(
            libc::EINVAL,
            "handshake: server rejected NBD_OPT_GO as invalid",
        ),
        proto::NBD_REP_ERR_TLS_REQD => Error::new(
            libc::ENOTSUP,
            "handshake: server requires TLS encryption first",
        ),
        proto::NBD_REP_ERR_UNKNOWN => Error::new(
            libc::ENOENT,
            format!(
                "handshake: server has no export named '{}'",
                String::from_utf8_lossy(export_name)
            ),
        ),
        proto::NBD_REP_ERR_SHUTDOWN => {
            Error::new(libc::ESHUTDOWN, "handshake: server is shutting down")
        }
        proto::NBD_REP_ERR_BLOCK_SIZE_REQD => Error::new(
            libc::EINVAL,
            "handshake: server requires specific block sizes",
        ),
        t => Error::new(
            0,
            format!("handshake: unknown reply from NBD_OPT_GO: 0x{t:x}"),
        ),
    }
}
