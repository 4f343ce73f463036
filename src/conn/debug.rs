//! Debug messages and traffic statistics.
//!
//! Debug messages go to the handle's debug callback if one is set, else to
//! stderr as `libnbd: debug: NAME: CONTEXT: message`. NAME is the handle's
//! name; CONTEXT is the C call being run on this thread (see
//! [`ApiContext`]), or `unknown` outside one. Nothing is formatted while
//! debugging is off: [`Debug::log`] takes a closure and checks a bool first.
//!
//! The statistics are plain counters the I/O paths bump as they go.

use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Conn, Phase, Step};
use crate::proto;

/// A Rust debug callback: `(context, message)`.
type RustDebugFn = Box<dyn Fn(&str, &str) + Send>;

/// Receives a handle's debug messages: the context (the libnbd call that
/// emitted it) and the message. It is dropped when the callback is
/// replaced or cleared, or when the handle is closed.
pub struct DebugCallback(RustDebugFn);

impl DebugCallback {
    /// A debug callback from a Rust closure taking `(context, message)`.
    pub fn new(f: impl Fn(&str, &str) + Send + 'static) -> DebugCallback {
        DebugCallback(Box::new(f))
    }

    fn call(&self, context: &str, msg: &str) {
        let _ = catch_unwind(AssertUnwindSafe(|| (self.0)(context, msg)));
    }
}

/// A handle's debug settings, kept where the state machine can reach them.
pub(crate) struct Debug {
    /// Whether messages are emitted at all.
    pub(super) on: bool,
    /// The handle's name, shown in each message.
    pub(super) name: String,
    callback: Option<DebugCallback>,
    /// The state last reported by [`Conn::trace_state`], and its name.
    traced: Phase,
    traced_name: &'static str,
}

impl Default for Debug {
    fn default() -> Debug {
        Debug {
            on: false,
            name: String::new(),
            callback: None,
            traced: Phase::Created,
            traced_name: "START",
        }
    }
}

impl Debug {
    /// Emits the message `f` builds, if debugging is on.
    #[inline]
    pub(crate) fn log(&self, f: impl FnOnce() -> String) {
        if self.on {
            self.emit(&f());
        }
    }

    /// Emits `msg` whether or not debugging is on.
    #[cold]
    pub(crate) fn emit(&self, msg: &str) {
        // Like libnbd, leave errno as it was: callers may be about to
        // report it.
        let saved = nix::errno::Errno::last_raw();
        ApiContext::with(|context| match &self.callback {
            // A C callback with only a free function swallows messages.
            Some(cb) => cb.call(context.unwrap_or("unknown"), msg),
            None => {
                let line = format!(
                    "libnbd: debug: {}: {}: {}\n",
                    self.name,
                    context.unwrap_or("unknown"),
                    msg
                );
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        });
        nix::errno::Errno::set_raw(saved);
    }

    /// Installs (or, with `None`, removes) the debug callback. The old
    /// one, if any, is freed.
    pub(crate) fn set_callback(&mut self, callback: Option<DebugCallback>) {
        // Swap first so the old callback is freed after the new one is in.
        let old = std::mem::replace(&mut self.callback, callback);
        drop(old);
    }
}

/// Bytes and chunks sent and received (`nbd_stats_*`). A chunk is a unit
/// the protocol frames with a magic number: the greeting, each option and
/// request sent, each option reply and reply (or reply chunk) received.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    pub bytes_received: u64,
    pub chunks_received: u64,
}

impl Conn {
    /// Notices a change of state since the last call: counts an option
    /// sent and reports the transition. Cheap when nothing changed.
    #[inline]
    pub(super) fn trace_state(&mut self) {
        if self.phase != self.debug.traced {
            self.state_changed();
        }
    }

    #[cold]
    fn state_changed(&mut self) {
        if matches!(
            self.phase,
            Phase::Handshake(Step::OptionReply(_) | Step::ExportNameReply)
        ) {
            // Each option goes out on its own and moves the machine to
            // wait for its reply.
            self.stats.chunks_sent += 1;
        }
        let now = self.state_name();
        let before = self.debug.traced_name;
        self.debug.log(|| format!("transition: {before} -> {now}"));
        self.debug.traced = self.phase;
        self.debug.traced_name = now;
    }
}

thread_local! {
    /// The name of the C call being run on this thread.
    static CONTEXT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Marks the C call being run on this thread, for debug messages, until
/// dropped; then the previous one (if calls nest) is current again.
pub(crate) struct ApiContext {
    prev: Option<&'static str>,
}

impl ApiContext {
    /// Makes `name` the current context. Keep the guard in a local: guards
    /// must be dropped in the reverse order of creation.
    pub(crate) fn enter(name: &'static str) -> ApiContext {
        let prev = CONTEXT.try_with(|c| c.replace(Some(name))).unwrap_or(None);
        ApiContext { prev }
    }

    /// Runs `f` with the current context, if any.
    pub(crate) fn with<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
        f(CONTEXT.try_with(|c| c.get()).unwrap_or(None))
    }
}

impl Drop for ApiContext {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|c| c.set(self.prev));
    }
}

/// The protocol's name for a command, for debug messages.
pub(super) fn command_name(kind: u16) -> &'static str {
    match kind {
        proto::NBD_CMD_READ => "NBD_CMD_READ",
        proto::NBD_CMD_WRITE => "NBD_CMD_WRITE",
        proto::NBD_CMD_DISC => "NBD_CMD_DISC",
        proto::NBD_CMD_FLUSH => "NBD_CMD_FLUSH",
        proto::NBD_CMD_TRIM => "NBD_CMD_TRIM",
        proto::NBD_CMD_CACHE => "NBD_CMD_CACHE",
        proto::NBD_CMD_WRITE_ZEROES => "NBD_CMD_WRITE_ZEROES",
        proto::NBD_CMD_BLOCK_STATUS => "NBD_CMD_BLOCK_STATUS",
        _ => "NBD_CMD_UNKNOWN",
    }
}
