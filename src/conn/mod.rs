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

use crate::callback::{Chunk, Completion};
use crate::proto::{self, ExportInfo};
use crate::transport::{Subprocess, Transport};
use crate::{Error, Result};
use callerbuf::CallerBuf;

mod block_status;
mod callerbuf;
mod connect;
mod debug;
mod handshake;
mod net;
mod options;
mod settings;
#[cfg(test)]
mod testwire;
mod tls;

pub(crate) use block_status::ExtentCallback;
pub(crate) use debug::{ApiContext, Debug, DebugCallback, Stats};
pub(crate) use net::c_strings;
pub use net::ServerAddr;
pub(crate) use options::UserOption;
pub(crate) use settings::invalid_flags;
mod reply;

/// How long a broken connection waits for its subprocess to finish
/// printing why (the child closing its stderr ends the wait sooner).
const CHILD_STDERR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Largest read or write payload libnbd allows in one command.
pub(crate) const MAX_REQUEST_SIZE: u64 = 64 * 1024 * 1024;
/// Longest error chunk: error, message length, message, offset.
const MAX_ERROR_CHUNK: u64 = 6 + proto::MAX_STRING_LEN as u64 + 8;
/// Most bytes asked of the socket when a reply header is wanted: a 4 KiB
/// read reply with its chunk header and offset, or many small replies.
const RECV_CHUNK: usize = 4096 + 64;
/// Size of the receive buffer that small replies are read into while
/// several commands are in flight (room for a few 4 KiB read replies).
const RBUF_SIZE: usize = 16 * 1024;
/// Its size while at most one command is in flight: one receive of
/// [`RECV_CHUNK`], a 4 KiB read reply with its header. The buffer is
/// allocated at the first receive and grows only when needed, so an idle
/// or queue-depth-1 handle keeps its resident memory low (the buffer is
/// zeroed, which touches every page): issue 20, the `handle-rss` row.
const RBUF_SMALL: usize = RECV_CHUNK;
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
    /// The TLS handshake after `NBD_OPT_STARTTLS` (either direction).
    TlsHandshake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    /// A non-blocking connect(2) is in progress (see `connect.rs`).
    Connecting,
    Handshake(Step),
    /// Option mode: waiting for the caller's next option.
    Negotiating,
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
    buf: CallerBuf,
    /// The request header: compact (28 bytes) or extended (32).
    header: [u8; proto::EXTENDED_REQUEST_LEN],
    header_len: u8,
    /// The cookie the caller knows this command by.
    cookie: u64,
    /// First error seen for this command (an errno), 0 for success.
    error: i32,
    /// Bytes of a read's range the server has covered with data or holes.
    data_seen: u64,
    /// `pread_initialize` done lazily: bytes from `unzeroed_from` to the
    /// end of a read's buffer may still hold the caller's old contents and
    /// are zeroed when the command finishes. Everything before it is
    /// server data, in order; the first chunk out of order zeroes the rest
    /// at once. The caller sees what an eager memset would have left.
    zero_unfilled: bool,
    unzeroed_from: u64,
    /// Mid-command callback of a structured read.
    chunk: Option<Chunk>,
    /// Extent callback of a block status command.
    extent: Option<ExtentCallback>,
    completion: Option<Completion>,
    /// A request payload the command owns (a filtered block status's
    /// context list); its capacity is kept for the slot's next use.
    payload: Vec<u8>,
    /// Its caller gave up waiting (timeout, cancellation): `buf` is
    /// forgotten, the reply is read and discarded, and the slot frees
    /// itself when the reply is complete.
    abandoned: bool,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            generation: 0,
            state: SlotState::Free,
            kind: 0,
            offset: 0,
            count: 0,
            buf: CallerBuf::none(),
            header: [0; proto::EXTENDED_REQUEST_LEN],
            header_len: proto::REQUEST_LEN as u8,
            cookie: 0,
            error: 0,
            data_seen: 0,
            zero_unfilled: false,
            unzeroed_from: 0,
            chunk: None,
            extent: None,
            completion: None,
            payload: Vec::new(),
            abandoned: false,
        }
    }

    /// Drops the callbacks, calling their free functions: the mid-command
    /// one first, then the completion one, as libnbd orders them.
    fn free_callbacks(&mut self) {
        self.chunk = None;
        self.extent = None;
        self.completion = None;
    }

    /// Zeroes what the server has not filled of a lazily initialized read.
    fn zero_rest(&mut self) {
        if self.zero_unfilled {
            self.zero_unfilled = false;
            if self.unzeroed_from < self.count {
                let from = self.unzeroed_from;
                self.buf
                    .zero_range(from as usize, (self.count - from) as usize);
            }
        }
    }

    /// The server is about to write from `start` of a read's buffer. In
    /// order, zeroing can wait; out of order, the rest is zeroed now.
    fn claim(&mut self, start: u64) {
        if self.zero_unfilled && start != self.unzeroed_from {
            self.zero_rest();
        }
    }

    /// `[start, start + len)` of a read's buffer now holds server data (or
    /// a hole's zeros). Until this point a partly received chunk lies in
    /// the range `zero_rest` would clear.
    fn filled(&mut self, start: u64, len: u64) {
        if self.zero_unfilled && start == self.unzeroed_from {
            self.unzeroed_from = start + len;
        }
    }

    /// The payload that follows the header on the wire: a write's data
    /// (the caller's buffer), else the payload the command owns.
    fn wire_payload(&self) -> &[u8] {
        if self.kind == proto::NBD_CMD_WRITE {
            self.buf.as_slice()
        } else {
            &self.payload
        }
    }

    /// Bytes of payload that follow the header on the wire.
    fn payload_len(&self) -> usize {
        if self.kind == proto::NBD_CMD_WRITE {
            self.count as usize
        } else {
            self.payload.len()
        }
    }

    fn wire_len(&self) -> usize {
        self.header_len as usize + self.payload_len()
    }
}

/// The callbacks a command may carry.
#[derive(Default)]
pub(crate) struct CommandCallbacks {
    /// Per-chunk callback of a structured read.
    pub chunk: Option<Chunk>,
    /// Extent callback of a block status command.
    pub extent: Option<ExtentCallback>,
    /// Called once when the command completes.
    pub completion: Option<Completion>,
    /// Payload to send after the header (other than a write's data); the
    /// header's length then gives its size.
    pub payload: Vec<u8>,
    /// For a read: bytes the server does not fill are zeroed by the time
    /// the command finishes (`pread_initialize`, without a memset up front).
    pub zero_unfilled: bool,
}

/// Identifies a command in the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandId {
    index: u32,
    generation: u32,
}

impl CommandId {
    /// The cookie on the wire: slot index and generation, so a reply finds
    /// its command at once. Callers see libnbd's numbering instead
    /// ([`Conn::cookie`]).
    pub(crate) fn wire_cookie(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    fn from_wire_cookie(cookie: u64) -> CommandId {
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
        /// Where the next byte goes in the command's buffer.
        at: usize,
        /// Bytes still to come.
        left: usize,
        /// Length of the whole data chunk (for the chunk callback).
        len: usize,
        /// Whether the reply ends with this data.
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
    export: ExportInfo,
    protocol: &'static str,
    structured_replies: bool,
    block_minimum: u32,
    block_preferred: u32,
    block_maximum: u32,
    canonical_name: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    /// 64-bit request and reply headers are in use.
    extended_headers: bool,
    /// The meta contexts the server agreed to: id and name.
    meta_contexts: Vec<(u32, std::ffi::CString)>,
    /// `NBD_OPT_SET_META_CONTEXT` has been answered (contexts may be none).
    meta_valid: bool,
}

impl Negotiated {
    /// The largest write payload sent under `LIBNBD_STRICT_PAYLOAD`: the
    /// server's maximum, but at least 1M (the protocol allows that much
    /// whatever it says) and at most 64M (what this client allocates);
    /// 32M when the server says nothing.
    pub(crate) fn payload_maximum(&self) -> u64 {
        if self.block_maximum == 0 {
            32 * 1024 * 1024
        } else {
            (self.block_maximum as u64).clamp(1024 * 1024, MAX_REQUEST_SIZE)
        }
    }
}

/// Settings the user chooses before connecting.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    export_name: Vec<u8>,
    request_structured_replies: bool,
    request_block_size: bool,
    full_info: bool,
    pread_initialize: bool,
    strict: u32,
    /// `LIBNBD_HANDSHAKE_FLAG_*` the client is willing to use.
    handshake_flags: u32,
    /// Stop after the handshake's first options for the caller to negotiate.
    opt_mode: bool,
    /// Ask for the meta contexts in `meta_requests` before GO/INFO.
    request_meta_context: bool,
    request_extended_headers: bool,
    /// Meta contexts to ask for (`nbd_add_meta_context`).
    meta_requests: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            export_name: Vec::new(),
            request_structured_replies: true,
            request_block_size: true,
            full_info: false,
            pread_initialize: true,
            strict: crate::flags::raw::LIBNBD_STRICT_MASK,
            handshake_flags: crate::flags::raw::LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE
                | crate::flags::raw::LIBNBD_HANDSHAKE_FLAG_NO_ZEROES,
            opt_mode: false,
            request_meta_context: true,
            request_extended_headers: true,
            meta_requests: Vec::new(),
        }
    }
}

/// One connection: transport, handshake, and commands in flight.
pub(crate) struct Conn {
    phase: Phase,
    transport: Option<Box<dyn Transport>>,
    subprocess: Option<Subprocess>,
    /// Where and how to connect, and the URI settings.
    net: connect::Net,
    settings: Settings,
    /// TLS settings, and whether TLS was negotiated.
    tls: tls::Tls,
    negotiated: Negotiated,
    /// Debug messages: on/off, handle name, callback.
    debug: Debug,
    /// How synchronous calls wait for the server.
    spin: crate::spin::SpinPolicy,
    /// A thread is polling the fd with the handle unlocked: the fd must
    /// stay open (not be reused) until it is back, so a transport dropped
    /// meanwhile is shut down and parked here instead of closed.
    unlocked_poller: bool,
    parked_transport: Option<Box<dyn Transport>>,
    /// An eventfd the unlocked poller also polls: another thread that runs
    /// the machine (and may read its reply) or leaves a request half
    /// written (the poller must also wait for POLLOUT) signals it.
    waker: Option<std::sync::Arc<crate::transport::Waker>>,
    /// The waker has been written to since it was last drained.
    waker_signalled: bool,
    /// Traffic counters (`nbd_stats_*`).
    stats: Stats,
    /// Why the machine died, returned to whoever drives it next.
    fatal: Option<Error>,
    /// Called once when the connection reaches READY (error 0), or fails
    /// before it (beyond libnbd).
    on_ready: Option<crate::callback::Completion>,

    /// Handshake bytes still to send.
    hs_out: Vec<u8>,
    hs_out_pos: usize,
    /// Whether the server's greeting allowed `NBD_FLAG_NO_ZEROES`.
    no_zeroes: bool,
    /// An option reply too long to keep is being skipped: its type and
    /// the payload bytes left.
    opt_skip: Option<(u32, usize)>,
    /// Whether `NBD_OPT_GO` has told us the export's size and flags.
    got_export_info: bool,
    /// The option on the wire, if any.
    option_run: Option<options::OptionRun>,
    /// How the caller's last option ended, until collected.
    option_result: Option<Result<i32>>,
    tried_extended_headers: bool,
    tried_structured_replies: bool,
    /// The last receive found the socket empty; reading waits for the next
    /// readiness (the next `progress`).
    drained: bool,
    /// The least `fill` asks the socket for: RECV_CHUNK, or after a large
    /// data payload just the next reply's header (its payload is likely
    /// large too, and is better received straight into the caller's buffer).
    recv_least: usize,
    /// A public call (`nbd_poll`, `nbd_aio_notify_*`) is running the
    /// machine: it handles at most one reply (chunk) and reads no more of
    /// the socket than that needs, as libnbd does (see [`Conn::progress_one`]).
    one_reply: bool,
    /// Set when a reply (chunk) has been handled during a `one_reply` run.
    reply_handled: bool,
    /// Received bytes not yet consumed: `rbuf[rpos..rend]`.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,

    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Commands waiting to be written, oldest first.
    to_issue: VecDeque<u32>,
    /// The cookie the next command gets (libnbd starts at 1).
    next_cookie: u64,
    /// Finished commands not yet retired, oldest first.
    done: VecDeque<u32>,
    /// Bytes of `to_issue.front()` already written.
    issue_pos: usize,
    /// Commands written and awaiting a reply.
    in_flight: usize,
    reading: Reading,
    /// `NBD_CMD_DISC` has been queued; no more commands.
    disconnect_requested: bool,
    /// Scratch space for decoding block status extents.
    extents64: Vec<crate::callback::Extent64>,
    extents32: Vec<u32>,
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
            net: connect::Net::default(),
            settings: Settings::default(),
            tls: tls::Tls::default(),
            negotiated: Negotiated::default(),
            debug: Debug::default(),
            spin: crate::spin::SpinPolicy::from_env(),
            unlocked_poller: false,
            parked_transport: None,
            waker: None,
            waker_signalled: false,
            stats: Stats::default(),
            fatal: None,
            on_ready: None,
            hs_out: Vec::new(),
            hs_out_pos: 0,
            no_zeroes: false,
            opt_skip: None,
            got_export_info: false,
            drained: false,
            recv_least: RECV_CHUNK,
            one_reply: false,
            reply_handled: false,
            option_run: None,
            option_result: None,
            tried_extended_headers: false,
            tried_structured_replies: false,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            to_issue: VecDeque::new(),
            done: VecDeque::new(),
            next_cookie: 1,
            issue_pos: 0,
            in_flight: 0,
            reading: Reading::Header,
            disconnect_requested: false,
            extents64: Vec::new(),
            extents32: Vec::new(),
        }
    }

    // ---- public state ----------------------------------------------------

    pub(crate) fn is_created(&self) -> bool {
        self.phase == Phase::Created
    }
    pub(crate) fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Handshake(_))
    }
    pub(crate) fn is_negotiating(&self) -> bool {
        self.phase == Phase::Negotiating
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
    /// The error that killed the connection, once it is dead.
    pub(crate) fn fatal_error(&self) -> Option<Error> {
        self.fatal.clone().filter(|_| self.is_dead())
    }
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// libnbd's short name for the current state, used in error messages.
    pub(crate) fn state_name(&self) -> &'static str {
        let full = self.state_description();
        &full[..full.find(':').unwrap_or(full.len())]
    }

    /// `"NAME: description"` of the current state.
    pub(crate) fn state_description(&self) -> &'static str {
        macro_rules! st {
            ($name:literal, $comment:literal) => {
                concat!($name, ": ", $comment)
            };
        }
        match self.phase {
            Phase::Created => st!("START", "Handle after being initially created"),
            Phase::Connecting => self.connect_state_description(),
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
            Phase::Handshake(Step::OptionReply(proto::NBD_OPT_STARTTLS)) => st!(
                "NEWSTYLE.OPT_STARTTLS.RECV_REPLY",
                "Receive newstyle NBD_OPT_STARTTLS reply"
            ),
            Phase::Handshake(Step::TlsHandshake) if self.transport_wants_write() => st!(
                "NEWSTYLE.OPT_STARTTLS.TLS_HANDSHAKE_WRITE",
                "TLS handshake (writing)"
            ),
            Phase::Handshake(Step::TlsHandshake) => st!(
                "NEWSTYLE.OPT_STARTTLS.TLS_HANDSHAKE_READ",
                "TLS handshake (reading)"
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
            Phase::Negotiating => st!(
                "NEGOTIATING",
                "Connection is ready to negotiate an NBD option"
            ),
            Phase::Closed => st!("CLOSED", "Connection is closed"),
            Phase::Dead => st!(
                "DEAD",
                "Connection is in an unrecoverable error state, can only be closed"
            ),
        }
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
        Err(self.mark_if_dead(Error::new(
            errno,
            format!(
                "invalid state: {}: the handle must be {}",
                self.state_name(),
                wanted.join(", or ")
            ),
        )))
    }

    /// `err`, marked fatal ([`Error::is_fatal`]) when the machine is dead.
    pub(crate) fn mark_if_dead(&self, err: Error) -> Error {
        if self.is_dead() {
            err.into_fatal()
        } else {
            err
        }
    }

    /// Received bytes are waiting to be handled (in our buffer or inside TLS).
    pub(crate) fn input_buffered(&self) -> bool {
        self.buffered() > 0 || self.transport.as_ref().is_some_and(|t| t.pending())
    }

    /// The fd to poll, if connected.
    pub(crate) fn fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.borrow_fd().map(|fd| fd.as_raw_fd())
    }

    /// The fd to poll, if connected, borrowed from its owner.
    pub(crate) fn borrow_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.transport
            .as_ref()
            .map(|t| t.fd())
            .or_else(|| self.net.pending_fd())
    }

    /// What the machine is waiting for: a mask of `DIRECTION_*`.
    pub(crate) fn direction(&self) -> u32 {
        match self.phase {
            Phase::Created | Phase::Negotiating | Phase::Closed | Phase::Dead => 0,
            Phase::Connecting => DIRECTION_WRITE,
            Phase::Handshake(_) => {
                // The TLS handshake waits the way OpenSSL asks.
                if self.hs_out_pos < self.hs_out.len() || self.transport_wants_write() {
                    DIRECTION_WRITE
                } else {
                    DIRECTION_READ
                }
            }
            Phase::Ready => {
                let mut d = DIRECTION_READ;
                if !self.to_issue.is_empty() || self.transport_wants_write() {
                    d |= DIRECTION_WRITE;
                }
                d
            }
        }
    }

    /// Fails unless the machine waits for the socket in direction `dir`
    /// (a `DIRECTION_*`), as libnbd's `nbd_aio_notify_read`/`_write` do:
    /// the event is invalid in the current state.
    pub(crate) fn check_notify(&self, dir: u32) -> Result<()> {
        if self.direction() & dir != 0 {
            return Ok(());
        }
        // libnbd's external event numbers: 0 for read, 1 for write.
        let event = u32::from(dir == DIRECTION_WRITE);
        Err(Error::new(
            libc::EINVAL,
            format!(
                "external event {event} is invalid in state {}",
                self.state_name()
            ),
        ))
    }

    // ---- connecting --------------------------------------------------------

    /// Starts the handshake over a freshly connected transport.
    pub(crate) fn start_handshake(&mut self, transport: Box<dyn Transport>) {
        self.transport = Some(transport);
        self.phase = Phase::Handshake(Step::Greeting);
    }

    /// Kills the machine from above, when a caller cannot wait for a
    /// command whose buffer it is about to give back (see [`Conn::die`]).
    pub(crate) fn kill(&mut self, err: Error) {
        self.die(err);
    }

    /// Kills the machine after a panic unwound through a call: first
    /// forgets every command's buffer (a synchronous caller's buffer may
    /// be gone with its frame, so nothing, not even the zeroing of an
    /// unfilled read, may write to it), then dies as [`Conn::kill`].
    pub(crate) fn kill_after_panic(&mut self, err: Error) {
        for slot in &mut self.slots {
            slot.zero_unfilled = false;
            slot.buf = CallerBuf::none();
        }
        // A reply being read into one of those buffers stops at once.
        self.reading = Reading::Header;
        self.die(err);
    }

    /// Kills the machine: records why and fails every pending command.
    /// The handshake is over: the connection is ready for commands, and
    /// the caller's ready callback hears it.
    pub(super) fn enter_ready(&mut self) {
        self.phase = Phase::Ready;
        if let Some(mut cb) = self.on_ready.take() {
            cb.call(&mut 0);
        }
    }

    fn die(&mut self, err: Error) -> Error {
        let err = err.into_fatal();
        if self.phase != Phase::Dead {
            self.phase = Phase::Dead;
            self.fatal = Some(err.clone());
            // The connection will never be ready.
            if let Some(mut cb) = self.on_ready.take() {
                let mut errno = if err.errno() != 0 {
                    err.errno()
                } else {
                    libc::EIO
                };
                cb.call(&mut errno);
            }
            self.abort_commands(libc::ENOTCONN);
            // An option on the wire fails with the same error.
            self.finish_option(Err(err.clone()));
            // Closing our end lets a server on the other side see EOF.
            self.drop_transport();
            self.trace_state();
        }
        err
    }

    /// A data chunk cut short stays where it landed: the bytes received
    /// count as filled, so only the rest of the buffer is zeroed.
    fn keep_partial_data(&mut self) {
        if let Reading::Data {
            id, at, left, len, ..
        } = self.reading
        {
            let slot = &mut self.slots[id.index as usize];
            let received = len - left;
            slot.filled((at - received) as u64, received as u64);
        }
    }

    /// Fails every queued or in-flight command with `errno` (unless it
    /// already has an error), calling completion callbacks as libnbd does.
    fn abort_commands(&mut self, errno: i32) {
        self.to_issue.clear();
        self.issue_pos = 0;
        self.in_flight = 0;
        self.keep_partial_data();
        self.reading = Reading::Header;
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if matches!(slot.state, SlotState::Queued | SlotState::Sent) {
                if slot.error == 0 {
                    slot.error = errno;
                }
                self.finish(index as u32);
            }
        }
    }

    /// Makes as much progress as possible without blocking.
    ///
    /// An error kills the handle; the same error is returned to the caller.
    pub(crate) fn progress(&mut self) -> Result<()> {
        let result = self.progress_inner();
        // Another thread waits for the socket unlocked: this may have read
        // its reply.
        self.wake_unlocked_poller();
        result
    }

    /// As [`Conn::progress`], for the public calls that run the machine
    /// (`nbd_poll`, `nbd_aio_notify_read`/`_write`): at most one reply (or
    /// structured reply chunk) is handled, so at most one command completes,
    /// as in libnbd. Programs count their commands around these calls
    /// (nbdfuse does). The socket is read for no more than that reply plus
    /// fewer bytes than the smallest reply, so nothing complete is left
    /// waiting in our buffer while the caller polls the socket. Received
    /// input that does hold more (inside TLS, or left by a synchronous
    /// call) is handled at once, as libnbd does with TLS.
    pub(crate) fn progress_one(&mut self) -> Result<()> {
        self.one_reply = true;
        self.reply_handled = false;
        let result = self.progress();
        self.one_reply = false;
        result
    }

    /// Commands await replies and the last receive did not find the
    /// socket empty: the next reply may be readable without waiting.
    pub(crate) fn reply_may_be_waiting(&self) -> bool {
        self.phase == Phase::Ready && !self.drained && self.in_flight > 0
    }

    /// Whether the last [`Conn::progress_one`] handled a reply (chunk).
    pub(crate) fn handled_reply(&self) -> bool {
        self.reply_handled
    }

    /// The size of the smallest reply a server can send (a simple reply;
    /// with extended headers only a faulty server sends one, but it must
    /// not be left unseen in our buffer either).
    pub(super) fn min_reply_len(&self) -> usize {
        proto::SIMPLE_REPLY_LEN
    }

    /// In a `one_reply` run, bytes that may be read past what the current
    /// reply needs: fewer than the smallest reply (0 otherwise).
    pub(super) fn read_ahead(&self) -> usize {
        if self.one_reply && self.phase == Phase::Ready {
            self.min_reply_len() - 1
        } else {
            0
        }
    }

    fn progress_inner(&mut self) -> Result<()> {
        if self.phase == Phase::Dead {
            return Err(self
                .fatal
                .clone()
                .unwrap_or_else(|| Error::new(0, "connection is dead")));
        }
        self.trace_state();
        // Called because the socket may be readable: try it again.
        self.drained = false;
        if self.phase == Phase::Connecting {
            // Handles its own failures (some leave the handle "created").
            self.connect_progress()?;
        }
        loop {
            let connecting = self.is_connecting();
            let wrote = match self.write_some() {
                Ok(w) => w,
                Err(e) => return Err(self.die(e)),
            };
            let read = match self.read_some() {
                Ok(r) => r,
                Err(e) => return Err(self.die(e)),
            };
            // Stop where the handshake (or a caller's option) ends, as
            // libnbd returns at READY/NEGOTIATING: whatever the server does
            // next belongs to the next call.
            if !wrote && !read || connecting && !self.is_connecting() || self.reply_handled {
                return Ok(());
            }
        }
    }

    // ---- writing -------------------------------------------------------------

    /// Writes what is pending; true if anything was written.
    fn write_some(&mut self) -> Result<bool> {
        // Bytes a TLS transport accepted earlier go out first.
        let flushed = self.flush_transport()?;
        let wrote = match self.phase {
            // Negotiating: the client flags a plain newstyle server is
            // owed before option mode stops.
            Phase::Handshake(_) | Phase::Negotiating => self.write_handshake()?,
            Phase::Ready => self.write_commands()?,
            _ => false,
        };
        Ok(flushed || wrote)
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
                self.stats.bytes_sent += n as u64;
                self.hs_out_pos += n;
                if self.hs_out_pos == self.hs_out.len() {
                    self.hs_out.clear();
                    self.hs_out_pos = 0;
                }
                Ok(n > 0)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(self.peer_gone(Error::io("send", &e))),
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
            let mut iovs = [io::IoSlice::new(&[]); 2 * MAX_IOVS];
            let mut n = 0;
            let mut skip = self.issue_pos;
            for &index in self.to_issue.iter().take(MAX_IOVS) {
                let slot = &self.slots[index as usize];
                for part in [
                    &slot.header[..slot.header_len as usize],
                    slot.wire_payload(),
                ] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    iovs[n] = io::IoSlice::new(&part[skip..]);
                    n += 1;
                    skip = 0;
                }
            }
            let t = self.transport.as_mut().expect("ready without transport");
            let mut sent = match t.send(&iovs[..n]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(progressed),
                Err(e) => return Err(self.peer_gone(Error::io("send", &e))),
            };
            progressed |= sent > 0;
            self.stats.bytes_sent += sent as u64;
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
                self.stats.chunks_sent += 1;
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

    /// Gives `rbuf` its working size (never shrinking it): allocated at the
    /// first receive, grown to [`RBUF_SIZE`] once several commands are in
    /// flight, when many replies may be waiting.
    #[inline]
    fn size_rbuf(&mut self) {
        let want = if self.in_flight > 1 {
            RBUF_SIZE
        } else {
            RBUF_SMALL
        };
        if self.rbuf.len() < want {
            self.rbuf.resize(want, 0);
        }
    }

    /// Makes sure `n` unconsumed bytes are in `rbuf`; false if the socket
    /// has no more for now.
    fn fill(&mut self, n: usize) -> Result<bool> {
        if self.buffered() >= n {
            return Ok(true);
        }
        self.size_rbuf();
        if n > self.rbuf.len() {
            self.rbuf.resize(n.next_power_of_two(), 0);
        }
        if self.rpos + n > self.rbuf.len() {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        while self.buffered() < n {
            if self.drained {
                return Ok(false);
            }
            // Ask for what is needed, or at least `recv_least`: enough for
            // several small replies or one 4 KiB read reply in one call,
            // while a large payload is left for `read_data` to receive
            // straight into the caller's buffer. A public call reads only
            // what this reply needs (and less than another reply).
            let need = n - (self.rend - self.rpos);
            let least = if self.one_reply && self.phase == Phase::Ready {
                need + self.read_ahead()
            } else {
                self.recv_least
            };
            let want = need.max(least).min(self.rbuf.len() - self.rend);
            let t = self.transport.as_mut().expect("reading without transport");
            let got = t.recv(&mut self.rbuf[self.rend..self.rend + want]);
            // Fewer bytes than asked for (and none held inside TLS): the
            // socket is empty, so the next read waits for poll.
            self.drained = match &got {
                Ok(g) => *g < want && !t.pending(),
                Err(_) => true,
            };
            match got {
                Ok(0) if self.at_clean_end() || self.at_reply_boundary() => {
                    // Between replies the server may go: the handle is
                    // closed and commands in flight fail with ENOTCONN
                    // (as in libnbd); inside a reply it is an error.
                    self.note_closed();
                    return Ok(false);
                }
                Ok(0) => return Err(self.eof()),
                Ok(got) => {
                    self.rend += got;
                    self.stats.bytes_received += got as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(self.peer_gone(Error::io("recv", &e))),
            }
        }
        Ok(true)
    }

    /// True when the server may close now: after our disconnect, with
    /// nothing pending and no partial reply.
    fn at_clean_end(&self) -> bool {
        let after_disc = self.phase == Phase::Ready
            && self.disconnect_requested
            && self.pending() == 0
            && self.buffered() == 0
            && matches!(self.reading, Reading::Header);
        // A server may close instead of answering NBD_OPT_ABORT.
        after_disc || self.phase == Phase::Handshake(Step::OptionReply(proto::NBD_OPT_ABORT))
    }

    /// No reply is partly received: a close by the server here loses no
    /// reply half-way.
    fn at_reply_boundary(&self) -> bool {
        self.phase == Phase::Ready
            && self.buffered() == 0
            && matches!(self.reading, Reading::Header)
    }

    fn eof(&mut self) -> Error {
        self.peer_gone(Error::new(0, "recv: server disconnected unexpectedly"))
    }

    /// The connection broke: a subprocess whose stderr we keep (the ssh
    /// tunnel, or a command when asked) has most likely said why, so how
    /// it ended and its last lines are added.
    pub(super) fn peer_gone(&mut self, err: Error) -> Error {
        let Some(child) = self.subprocess.as_mut() else {
            return err;
        };
        let Some(tail) = child.stderr().cloned() else {
            return err;
        };
        let said = tail.last_lines(CHILD_STDERR_WAIT);
        // Closing its stderr is most often exiting: a moment more for that.
        let ended = child.exit_description(std::time::Duration::from_millis(100));
        let mut message = err.message().to_string();
        for part in [ended, said].into_iter().flatten() {
            message.push_str(": ");
            message.push_str(&part);
        }
        Error::new(err.errno(), message)
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
                    let done = self.read_handshake(step)?;
                    // The greeting and each option reply are one chunk.
                    if done && matches!(step, Step::Greeting | Step::OptionReply(_)) {
                        self.stats.chunks_received += 1;
                    }
                    if done && !matches!(self.phase, Phase::Handshake(_)) {
                        return Ok(true);
                    }
                    done
                }
                Phase::Ready => {
                    let header = matches!(self.reading, Reading::Header);
                    let done = self.read_reply()?;
                    // A step from `Header` has consumed a reply (chunk) header.
                    if done && header {
                        self.stats.chunks_received += 1;
                    }
                    // Back at a header: a reply (chunk) has been handled. A
                    // public call stops there unless what was received
                    // already holds more (which a poll would not see).
                    if done
                        && self.one_reply
                        && matches!(self.reading, Reading::Header)
                        && self.buffered() < self.min_reply_len()
                        && !self.transport_pending()
                    {
                        self.reply_handled = true;
                        self.trace_state();
                        return Ok(true);
                    }
                    done
                }
                _ => false,
            };
            self.trace_state();
            if !step {
                return Ok(progressed);
            }
            progressed = true;
        }
    }

    // ---- transmission --------------------------------------------------------

    /// Queues a command and tries to write it at once.
    ///
    /// # Safety contract
    /// `buf` must be valid for `count` bytes (read for writes, written for
    /// reads) until the command is retired.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn issue(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        count: u64,
        buf: *mut u8,
        callbacks: CommandCallbacks,
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
        slot.cookie = self.next_cookie;
        self.next_cookie += 1;
        slot.kind = kind;
        slot.offset = offset;
        slot.count = count;
        // SAFETY: the caller's promise (above): `buf` holds `count` bytes,
        // writable for a read, readable for a write (NULL, and so no
        // bytes, for commands without data), until the command is retired.
        slot.buf = unsafe { CallerBuf::new(buf, count as usize, kind == proto::NBD_CMD_READ) };
        slot.error = 0;
        slot.data_seen = 0;
        slot.zero_unfilled = callbacks.zero_unfilled && kind == proto::NBD_CMD_READ;
        slot.unzeroed_from = 0;
        slot.chunk = callbacks.chunk;
        slot.extent = callbacks.extent;
        slot.completion = callbacks.completion;
        slot.payload.clear();
        slot.abandoned = false;
        slot.payload.extend_from_slice(&callbacks.payload);
        let wire_count = if slot.payload.is_empty() {
            count
        } else {
            slot.payload.len() as u64
        };
        let req = proto::Request {
            flags,
            kind,
            cookie: id.wire_cookie(),
            offset,
            count: wire_count,
        };
        if self.negotiated.extended_headers {
            proto::encode_extended_request(&req, &mut slot.header);
            slot.header_len = proto::EXTENDED_REQUEST_LEN as u8;
        } else {
            let compact = (&mut slot.header[..proto::REQUEST_LEN]).try_into().unwrap();
            proto::encode_request(&req, compact);
            slot.header_len = proto::REQUEST_LEN as u8;
        }
        self.to_issue.push_back(index);
        if kind == proto::NBD_CMD_DISC {
            self.disconnect_requested = true;
        }
        self.debug.log(|| {
            format!(
                "issuing command: {} flags=0x{flags:x} offset={offset} count={count} cookie={}",
                debug::command_name(kind),
                self.next_cookie - 1
            )
        });
        // Send now if the socket takes it; if it doesn't, the poll loop will.
        // If sending fails the handle dies and this command fails with
        // ENOTCONN, reported when it is retired, as in libnbd.
        if let Err(e) = self.write_commands() {
            self.die(e);
        }
        if !self.to_issue.is_empty() {
            // The unlocked poller must wait for POLLOUT too.
            self.wake_unlocked_poller();
        }
        Ok(id)
    }

    /// The result of a finished command: `None` while it is still running
    /// (or if `id` names no live command).
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

    /// Retires a finished command: frees its callbacks and its slot.
    /// Returns its kind and errno, or `None` if `id` is not a finished command.
    pub(crate) fn retire(&mut self, id: CommandId) -> Option<(u16, i32)> {
        let error = self.command_result(id)?;
        let kind = self.slots[id.index as usize].kind;
        if let Some(pos) = self.done.iter().position(|&i| i == id.index) {
            self.done.remove(pos);
        }
        self.free_slot(id.index);
        Some((kind, error))
    }

    /// Detaches a command from its caller, who stops waiting for it
    /// (timeout or cancellation) and takes its buffer back: from now on
    /// nothing reads or writes that buffer and no callback of the command
    /// runs (they are dropped, which calls their free functions). A
    /// command not yet on the wire is dropped; one in flight stays, and
    /// its reply is read and discarded when it comes, which frees the
    /// slot. Returns false if that is impossible (a write whose data is
    /// half sent from the caller's buffer): the caller must kill the
    /// connection. A finished command is left for the caller to retire.
    pub(crate) fn abandon(&mut self, id: CommandId) -> bool {
        let Some(slot) = self.slots.get(id.index as usize) else {
            return true;
        };
        if slot.generation != id.generation {
            return true;
        }
        match slot.state {
            SlotState::Free | SlotState::Done => return true,
            SlotState::Queued => {
                let pos = self.to_issue.iter().position(|&i| i == id.index);
                match pos {
                    // A write's data comes from the caller's buffer.
                    Some(0) if self.issue_pos > 0 && slot.kind == proto::NBD_CMD_WRITE => {
                        return false;
                    }
                    // The rest of the header comes from the slot itself;
                    // the reply is discarded as below.
                    Some(0) if self.issue_pos > 0 => {}
                    Some(pos) => {
                        self.to_issue.remove(pos);
                        self.slots[id.index as usize].zero_rest();
                        self.free_slot(id.index);
                        return true;
                    }
                    None => {}
                }
            }
            SlotState::Sent => {}
        }
        if let Reading::Data {
            id: reading,
            left,
            done,
            ..
        } = self.reading
        {
            if reading == id {
                // What has arrived of the chunk stays; the rest is skipped.
                self.keep_partial_data();
                self.reading = Reading::Discard {
                    id: Some(id),
                    left: left as u64,
                    done,
                };
            }
        }
        // The caller still owns the buffer: what the server did not fill
        // is zeroed as for any failed read, then the buffer is forgotten.
        let slot = &mut self.slots[id.index as usize];
        slot.zero_rest();
        slot.abandoned = true;
        slot.buf = CallerBuf::none();
        slot.free_callbacks();
        true
    }

    /// Whether a reply for command `id` is to be discarded.
    fn is_abandoned(&self, id: CommandId) -> bool {
        self.slots[id.index as usize].abandoned
    }

    /// Fails the queued commands no byte of which has been sent yet
    /// (`LIBNBD_SHUTDOWN_ABANDON_PENDING`).
    pub(crate) fn abandon_unsent(&mut self) {
        let keep = usize::from(self.issue_pos > 0);
        while self.to_issue.len() > keep {
            let index = self.to_issue.pop_back().expect("length checked");
            let slot = &mut self.slots[index as usize];
            if slot.error == 0 {
                slot.error = libc::ENOTCONN;
            }
            self.finish(index);
        }
    }

    fn free_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.state = SlotState::Free;
        slot.buf = CallerBuf::none();
        slot.free_callbacks();
        self.free_slots.push(index);
    }

    /// Commands issued and not yet finished (queued or in flight).
    pub(crate) fn pending(&self) -> usize {
        self.in_flight + self.to_issue.len()
    }

    /// The cookie callers know command `id` by: libnbd numbers each
    /// handle's commands 1, 2, 3, ...
    pub(crate) fn cookie(&self, id: CommandId) -> u64 {
        self.slots[id.index as usize].cookie
    }

    /// The live command a caller's cookie names.
    pub(crate) fn command_of_cookie(&self, cookie: u64) -> Option<CommandId> {
        self.slots
            .iter()
            .enumerate()
            .find(|(_, s)| s.cookie == cookie && s.state != SlotState::Free)
            .map(|(i, s)| CommandId {
                index: i as u32,
                generation: s.generation,
            })
    }

    /// The oldest finished command not yet retired.
    pub(crate) fn first_done(&self) -> Option<CommandId> {
        let &index = self.done.front()?;
        Some(CommandId {
            index,
            generation: self.slots[index as usize].generation,
        })
    }

    /// Looks up the command a reply's cookie names, if it awaits a reply.
    fn lookup(&self, cookie: u64) -> Option<CommandId> {
        let id = CommandId::from_wire_cookie(cookie);
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation && slot.state == SlotState::Sent).then_some(id)
    }

    /// The reply to a sent command is complete.
    fn complete(&mut self, id: CommandId) {
        self.in_flight -= 1;
        let slot = &mut self.slots[id.index as usize];
        if slot.kind == proto::NBD_CMD_READ && slot.error == 0 && slot.data_seen != slot.count {
            // The server's chunks did not cover the whole range.
            slot.error = libc::EPROTO;
        }
        self.finish(id.index);
    }

    /// Marks a command done: calls its completion callback, then either
    /// retires it (callback returned 1) or keeps it for the caller.
    fn finish(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.zero_rest();
        slot.state = SlotState::Done;
        let (kind, error, cookie) = (slot.kind, slot.error, slot.cookie);
        self.debug.log(|| {
            format!(
                "command completed: {} cookie={cookie} error={error}",
                debug::command_name(kind)
            )
        });
        let slot = &mut self.slots[index as usize];
        // Nobody waits for a disconnect or an abandoned command: they
        // retire themselves.
        let mut retire = slot.kind == proto::NBD_CMD_DISC || slot.abandoned;
        if let Some(cb) = slot.completion.as_mut().filter(|cb| cb.is_callable()) {
            let mut error = slot.error;
            match cb.call(&mut error) {
                -1 if error != 0 => slot.error = error,
                1 => retire = true,
                _ => {}
            }
        }
        if retire {
            self.free_slot(index);
        } else {
            self.done.push_back(index);
        }
    }

    fn set_command_error(&mut self, id: CommandId, errno: i32) {
        let slot = &mut self.slots[id.index as usize];
        if slot.error == 0 {
            slot.error = errno;
        }
    }

    /// Runs a read's chunk callback over `len` bytes at `at` in its buffer
    /// (export offset `offset`); a failure (-1) sets the command's error
    /// if it has none.
    fn call_chunk(&mut self, id: CommandId, at: usize, len: usize, offset: u64, status: u32) {
        let slot = &mut self.slots[id.index as usize];
        let Some(cb) = slot.chunk.as_mut().filter(|cb| cb.is_callable()) else {
            return;
        };
        let mut error = slot.error;
        if slot.buf.show_chunk(cb, at, len, offset, status, &mut error) == -1 && slot.error == 0 {
            slot.error = if error != 0 { error } else { libc::EPROTO };
        }
    }

    // ---- teardown -------------------------------------------------------------

    /// Closes the transport, or, while a thread polls its fd unlocked,
    /// shuts it down (which wakes that poll) and closes it once the thread
    /// is back.
    fn drop_transport(&mut self) {
        match self.transport.take() {
            Some(mut t) if self.unlocked_poller => {
                let _ = t.shutdown_both();
                self.parked_transport = Some(t);
                self.wake_unlocked_poller();
            }
            _ => {}
        }
    }

    /// A thread is about to poll the fd with the handle unlocked: returns
    /// the waker it must poll as well (made at the first call, kept for
    /// the connection's life; others may signal it too).
    pub(crate) fn start_unlocked_poll(
        &mut self,
    ) -> Result<&std::sync::Arc<crate::transport::Waker>> {
        self.unlocked_poller = true;
        let waker = match self.waker.take() {
            Some(w) => w,
            None => match crate::transport::Waker::new() {
                Ok(w) => std::sync::Arc::new(w),
                Err(e) => {
                    self.unlocked_poller = false;
                    return Err(e);
                }
            },
        };
        Ok(self.waker.insert(waker))
    }

    /// The unlocked poller is back: drains its waker if it was signalled
    /// (by this machine, or `waker_ready`: seen readable by the poller)
    /// and closes a transport dropped while it polled.
    pub(crate) fn end_unlocked_poll(&mut self, waker_ready: bool) {
        self.unlocked_poller = false;
        self.parked_transport = None;
        if let (true, Some(w)) = (self.waker_signalled || waker_ready, &self.waker) {
            w.drain();
            self.waker_signalled = false;
        }
    }

    /// Signals the unlocked poller, if there is one.
    pub(crate) fn wake_unlocked_poller(&mut self) {
        if let (true, false, Some(w)) = (self.unlocked_poller, self.waker_signalled, &self.waker) {
            w.wake();
            self.waker_signalled = true;
        }
    }

    /// Whether a thread is polling the fd with the handle unlocked.
    pub(crate) fn has_unlocked_poller(&self) -> bool {
        self.unlocked_poller
    }

    /// Marks the connection closed once the server has gone after a disconnect.
    fn note_closed(&mut self) {
        self.phase = Phase::Closed;
        // NBD_OPT_ABORT ends this way when the server just closes.
        self.finish_option(Ok(0));
        self.abort_commands(libc::ENOTCONN);
        self.drop_transport();
        self.trace_state();
    }

    /// At close: every command still waiting to be sent or for its reply
    /// fails as if the connection had died: its completion callback runs
    /// with its error (ENOTCONN if it had none), as libnbd 1.22 does.
    /// Commands already completed are not called again (completion
    /// callbacks run exactly once). Then every callback's free function
    /// runs, the transport is dropped and the subprocess reaped.
    pub(crate) fn close(&mut self) {
        self.keep_partial_data();
        self.to_issue.clear();
        self.issue_pos = 0;
        self.in_flight = 0;
        self.done.clear();
        for slot in &mut self.slots {
            if matches!(slot.state, SlotState::Queued | SlotState::Sent) {
                // The caller's buffer outlives the handle.
                slot.zero_rest();
                if slot.error == 0 {
                    slot.error = libc::ENOTCONN;
                }
                let mut error = slot.error;
                if let Some(cb) = slot.completion.as_mut().filter(|cb| cb.is_callable()) {
                    // Nothing can see the result any more.
                    let _ = cb.call(&mut error);
                }
            }
            slot.state = SlotState::Free;
            slot.free_callbacks();
        }
        self.parked_transport = None;
        self.transport = None;
        if let Some(mut child) = self.subprocess.take() {
            if self.net.detach_subprocess {
                child.reap_in_background();
            } else {
                child.reap();
            }
        }
    }
}
