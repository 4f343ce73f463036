//! The safe Rust API: [`Handle`].
//!
//! Every call locks the handle, checks the handle's state as libnbd
//! documents it, and for commands issues the request and drives the state
//! machine until it completes (unlocking the handle while it waits for the
//! socket). Errors carry libnbd's errno and message.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::conn::{Conn, Perm, DIRECTION_READ, DIRECTION_WRITE};
use crate::proto;
use crate::transport::Waker;
use crate::{Error, Result};

mod aio;
mod commands;
mod connect;
mod lists;
mod opt;
mod settings;
mod tls;

/// The C call being run, named in debug messages (for the C layer).
pub(crate) use crate::conn::ApiContext;
pub use crate::conn::ServerAddr;
pub use lists::{ContextExtents, Export};

/// The libnbd release whose behaviour this library matches and is tested
/// against (the oracle); `nbd_get_version` and `libnbd.pc` report it.
pub const VERSION: &str = "1.22.2";
/// The name `nbd_get_package_name` reports: libnbd's, since programs
/// print or compare it and this library stands in for libnbd.
pub const PACKAGE_NAME: &str = "libnbd";

const CONNECTED: &[Perm] = &[Perm::Connected];
const INFO_STATES: &[Perm] = &[Perm::Negotiating, Perm::Connected, Perm::Closed];

/// An NBD client handle: one connection to one export.
///
/// A handle may be shared between threads. Calls on it are serialized,
/// except that a synchronous command leaves the handle unlocked while it
/// waits for the server, so other threads' commands go out meanwhile.
pub struct Handle {
    conn: Mutex<Conn>,
    /// Wakes threads waiting for the one that polls with the handle unlocked.
    turn: Condvar,
    /// How many threads wait on `turn`; changed and read only with `conn`
    /// locked. std's `Condvar::notify_all` makes a futex call even when
    /// nobody waits, one system call per operation that this spares.
    turn_waiters: AtomicUsize,
    /// A copy of the connection's debug switch, readable without the lock.
    debug: AtomicBool,
    private_data: AtomicUsize,
    /// The default timeout of synchronous calls in nanoseconds, 0 for none.
    timeout_ns: AtomicU64,
    /// What [`Handle::cancel_waits`] signals, outside the lock.
    cancel: Cancel,
}

/// The cancellation of waiting calls, reachable without the handle's lock
/// (a handshake, option call or shutdown keeps it while it waits). It
/// makes no file descriptor of its own: a cancellation wakes the waiting
/// thread through what that thread polls anyway.
struct Cancel {
    /// Bumped by [`Handle::cancel_waits`]; a waiting call fails once it
    /// differs from the value it started with.
    generation: AtomicU64,
    /// The connection's eventfd that wakes the thread polling with the
    /// handle unlocked (see [`Conn::start_unlocked_poll`]), once a command
    /// has waited; it lives as long as the handle.
    unlocked_waker: OnceLock<Arc<Waker>>,
    /// The socket a wait with the handle locked polls, for that poll's
    /// duration. Such a wait kills the connection when cancelled, so the
    /// cancellation shuts the socket down, which wakes the poll. The fd
    /// cannot be closed while it is here: closing it needs the handle's
    /// lock, which the registered wait holds.
    locked_socket: Mutex<Option<RawFd>>,
}

impl Cancel {
    fn new() -> Cancel {
        Cancel {
            generation: AtomicU64::new(0),
            unlocked_waker: OnceLock::new(),
            locked_socket: Mutex::new(None),
        }
    }

    /// Cancels the waits in progress: a new generation, then a wake-up for
    /// the thread polling, whichever way it polls.
    fn cancel(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence after a waiter registers the waker: either
        // the waiter sees the new generation or this sees the waker.
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(w) = self.unlocked_waker.get() {
            w.wake();
        }
        let socket = self.locked_socket.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = *socket {
            // Failure (not a socket, already shut) leaves the wait to its
            // timeout, as before it registered.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
    }

    /// Registers `fd` as the socket a locked wait polls, until the guard
    /// is dropped.
    fn register_locked_socket(&self, fd: RawFd) -> LockedSocket<'_> {
        *self.locked_socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(fd);
        LockedSocket(self)
    }
}

/// A registration made by [`Cancel::register_locked_socket`].
struct LockedSocket<'c>(&'c Cancel);

impl Drop for LockedSocket<'_> {
    fn drop(&mut self) {
        *self
            .0
            .locked_socket
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

thread_local! {
    /// The deadline [`Handle::with_timeout`] set for this thread's calls.
    static CALL_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// When a synchronous call must give up: its deadline, and the cancel
/// generation it started in.
#[derive(Clone, Copy)]
struct Limits<'h> {
    deadline: Option<Instant>,
    cancel_gen: u64,
    cancel: &'h Cancel,
}

impl Limits<'_> {
    /// The error to give up with, if the call must give up now.
    fn check(&self) -> Result<()> {
        self.check_cancel()?;
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::new(libc::ETIMEDOUT, "operation timed out"));
        }
        Ok(())
    }

    /// `ECANCELED` if the call has been cancelled since it started.
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.generation.load(Ordering::SeqCst) != self.cancel_gen {
            return Err(Error::new(libc::ECANCELED, "operation cancelled"));
        }
        Ok(())
    }

    /// Milliseconds a poll may wait (-1: no limit), rounded up.
    fn poll_ms(&self) -> i32 {
        match self.deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        }
    }
}

/// Whether an error means the caller gave up waiting (see [`Limits`]).
fn gave_up(e: &Error) -> bool {
    matches!(e.errno(), libc::ETIMEDOUT | libc::ECANCELED)
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state without waiting for a thread that holds the lock.
        let state = match self.conn.try_lock() {
            Ok(c) => c.state_name().to_string(),
            Err(std::sync::TryLockError::WouldBlock) => "(in use)".to_string(),
            Err(std::sync::TryLockError::Poisoned(_)) => "(poisoned)".to_string(),
        };
        f.debug_struct("Handle").field("state", &state).finish()
    }
}

/// The error of a handle killed after a panic (see [`Handle::kill_after_panic`]).
fn dead_after_panic() -> Error {
    Error::new(libc::EINVAL, "handle is dead after an internal error")
}

static HANDLE_NUMBER: AtomicU64 = AtomicU64::new(1);

impl Handle {
    /// Creates a handle, not yet connected. `LIBNBD_DEBUG=1` in the
    /// environment turns debugging on.
    ///
    /// libnbd: `nbd_create`.
    pub fn new() -> Result<Handle> {
        let n = HANDLE_NUMBER.fetch_add(1, Ordering::Relaxed);
        let debug = std::env::var_os("LIBNBD_DEBUG").is_some_and(|v| v == "1");
        let mut conn = Conn::new();
        conn.set_debug(debug);
        conn.set_handle_name(&format!("nbd{n}"));
        conn.log(|| "opening handle".into());
        Ok(Handle {
            conn: Mutex::new(conn),
            turn: Condvar::new(),
            turn_waiters: AtomicUsize::new(0),
            debug: AtomicBool::new(debug),
            private_data: AtomicUsize::new(0),
            timeout_ns: AtomicU64::new(0),
            cancel: Cancel::new(),
        })
    }

    /// Locks the connection. Fail closed: if a thread panicked while
    /// holding the lock, the connection may be half-updated (a command
    /// half-sent, a reply half-read into a buffer whose caller unwound),
    /// so the handle is killed before anyone uses it again.
    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| self.recover(p))
    }

    /// A close-on-exec duplicate of the socket the machine polls (for
    /// registering it with a reactor); EINVAL if there is none.
    #[cfg(feature = "tokio")]
    pub(crate) fn dup_fd(&self) -> Result<std::os::fd::OwnedFd> {
        let c = self.lock();
        let fd = c
            .borrow_fd()
            .ok_or_else(|| Error::new(libc::EINVAL, "connection is not in a connected state"))?;
        fd.try_clone_to_owned().map_err(|e| Error::io("dup", &e))
    }

    /// The guard of a poisoned lock, after killing the connection (see
    /// [`Handle::lock`]); also for a condition variable's wait.
    fn recover<'h>(&'h self, poisoned: PoisonError<MutexGuard<'h, Conn>>) -> MutexGuard<'h, Conn> {
        let mut c = poisoned.into_inner();
        c.kill_after_panic(dead_after_panic());
        self.conn.clear_poison();
        c
    }

    /// Kills the handle after a panic unwound out of one of its calls (for
    /// a binding that catches panics at its boundary, such as the C ABI):
    /// later calls fail, and no command keeps a pointer into memory the
    /// unwound call owned.
    ///
    /// Rust only, beyond libnbd.
    pub fn kill_after_panic(&self) {
        self.lock().kill_after_panic(dead_after_panic());
    }

    // ---- timeouts and cancellation (beyond libnbd) ------------------------------

    /// Sets the default timeout of this handle's synchronous calls
    /// (commands, connecting, option calls); `None` (the default) waits
    /// forever, as libnbd does. A command that runs out fails with
    /// `ETIMEDOUT` and is abandoned: the caller's buffer is never touched
    /// again, its completion callback never runs (it is only freed), its
    /// late reply is read and discarded, and the handle stays usable. A
    /// handshake (connect, option calls) that runs out leaves the handle
    /// dead. A zero duration counts as `None`.
    ///
    /// Rust only, beyond libnbd.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        let ns = timeout.map_or(0, |t| t.as_nanos().min(u64::MAX as u128) as u64);
        self.timeout_ns.store(ns, Ordering::Relaxed);
    }

    /// The default timeout of synchronous calls (see [`Handle::set_timeout`]).
    ///
    /// Rust only, beyond libnbd.
    pub fn timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Runs `f` with a deadline `timeout` from now for the synchronous
    /// calls it makes on this thread (on any handle), instead of their
    /// handles' default timeouts; they fail with `ETIMEDOUT` past it, as
    /// with [`Handle::set_timeout`]. Nested calls keep the earlier deadline.
    ///
    /// Rust only, beyond libnbd.
    pub fn with_timeout<R>(&self, timeout: Duration, f: impl FnOnce(&Handle) -> R) -> R {
        let deadline = Instant::now().checked_add(timeout);
        let outer = CALL_DEADLINE.with(|d| d.get());
        let deadline = match (outer, deadline) {
            (Some(o), Some(n)) => Some(o.min(n)),
            (o, n) => o.or(n),
        };
        struct Restore(Option<Instant>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CALL_DEADLINE.with(|d| d.set(self.0));
            }
        }
        let _restore = Restore(outer);
        CALL_DEADLINE.with(|d| d.set(deadline));
        f(self)
    }

    /// Sets (or with `None` removes) the deadline of the synchronous calls
    /// this thread makes from now on, on any handle, as [`Handle::with_timeout`]
    /// does for the calls of its closure; for the C API, whose callers
    /// cannot pass a closure.
    pub(crate) fn set_thread_deadline(deadline: Option<Instant>) {
        CALL_DEADLINE.with(|d| d.set(deadline));
    }

    /// Makes every synchronous call now waiting on this handle fail with
    /// `ECANCELED` (calls that start later are not affected). A cancelled
    /// command is abandoned as one that timed out (see
    /// [`Handle::set_timeout`]). A cancelled connect, option call or
    /// `shutdown` leaves the handle dead, as a timed-out one does: a
    /// handshake cut short cannot be resumed. This never waits for the
    /// handle's lock, so a watchdog thread can always call it.
    ///
    /// Rust only, beyond libnbd.
    pub fn cancel_waits(&self) {
        // The eventfd wakes the thread polling the socket (with the handle
        // locked or not); it wakes the threads waiting for their turn.
        self.cancel.cancel();
        self.turn.notify_all();
    }

    /// The limits of a synchronous call starting now; call with `conn`
    /// locked. Without timeouts, costs two loads and no clock read.
    fn limits(&self) -> Limits<'_> {
        let deadline = CALL_DEADLINE.with(|d| d.get()).or_else(|| {
            match self.timeout_ns.load(Ordering::Relaxed) {
                0 => None,
                ns => Instant::now().checked_add(Duration::from_nanos(ns)),
            }
        });
        Limits {
            deadline,
            cancel_gen: self.cancel.generation.load(Ordering::SeqCst),
            cancel: &self.cancel,
        }
    }

    // ---- settings -----------------------------------------------------------

    /// Sets the handle's name, used in debug messages.
    ///
    /// libnbd: `nbd_set_handle_name`.
    pub fn set_handle_name(&self, name: &str) -> Result<()> {
        self.lock().set_handle_name(name);
        Ok(())
    }

    /// The handle's name (`nbd1`, `nbd2`, ... unless set).
    ///
    /// libnbd: `nbd_get_handle_name`.
    pub fn handle_name(&self) -> String {
        self.lock().handle_name().to_string()
    }

    /// Turns debug messages on or off.
    ///
    /// libnbd: `nbd_set_debug`.
    pub fn set_debug(&self, debug: bool) -> Result<()> {
        let mut c = self.lock();
        c.set_debug(debug);
        self.debug.store(debug, Ordering::Relaxed);
        Ok(())
    }

    /// Whether debug messages are on.
    ///
    /// libnbd: `nbd_get_debug`.
    pub fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// Stores a value for the caller; returns the previous one.
    ///
    /// libnbd: `nbd_set_private_data`.
    pub fn set_private_data(&self, data: usize) -> usize {
        self.private_data.swap(data, Ordering::Relaxed)
    }

    /// The value stored with [`Handle::set_private_data`] (0 by default).
    ///
    /// libnbd: `nbd_get_private_data`.
    pub fn private_data(&self) -> usize {
        self.private_data.load(Ordering::Relaxed)
    }

    /// Sets the export name to ask the server for (default `""`).
    ///
    /// libnbd: `nbd_set_export_name`.
    pub fn set_export_name(&self, name: &[u8]) -> Result<()> {
        self.lock().set_export_name(name)
    }

    /// The export name that will be (or was) asked for.
    ///
    /// libnbd: `nbd_get_export_name`.
    pub fn export_name(&self) -> Vec<u8> {
        self.lock().export_name().to_vec()
    }

    /// Whether to ask the server for structured replies (default true).
    ///
    /// libnbd: `nbd_set_request_structured_replies`.
    pub fn set_request_structured_replies(&self, request: bool) -> Result<()> {
        self.lock().set_request_structured_replies(request)
    }

    /// Whether structured replies will be asked for.
    ///
    /// libnbd: `nbd_get_request_structured_replies`.
    pub fn request_structured_replies(&self) -> bool {
        self.lock().request_structured_replies()
    }

    /// Whether the server agreed to structured replies.
    ///
    /// libnbd: `nbd_get_structured_replies_negotiated`.
    pub fn structured_replies_negotiated(&self) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.structured_replies())
    }

    /// The handshake style used: `"newstyle-fixed"`, `"newstyle"` or `"oldstyle"`.
    ///
    /// libnbd: `nbd_get_protocol`.
    pub fn protocol(&self) -> Result<&'static str> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.negotiated_protocol())
    }

    // ---- state ----------------------------------------------------------------

    /// The handle is newly created, not yet connecting.
    ///
    /// libnbd: `nbd_aio_is_created`.
    pub fn aio_is_created(&self) -> bool {
        self.lock().is_created()
    }
    /// Fails with libnbd's state error unless the handle is newly created:
    /// the check a connect makes first, for a caller (the C layer's
    /// `nbd_connect_socket`) that must make it before giving up something
    /// it owns.
    pub(crate) fn check_created(&self) -> Result<()> {
        self.lock().check_state(&[Perm::Created])
    }
    /// Fails with libnbd's state error unless the handle can tell what the
    /// server said (negotiating, connected or shut down): the check the
    /// export information calls make first.
    pub(crate) fn check_info_state(&self) -> Result<()> {
        self.lock().check_state(INFO_STATES)
    }
    /// The handle is connecting or doing the handshake.
    ///
    /// libnbd: `nbd_aio_is_connecting`.
    pub fn aio_is_connecting(&self) -> bool {
        self.lock().is_connecting()
    }
    /// The handle is waiting for the caller to negotiate options.
    ///
    /// libnbd: `nbd_aio_is_negotiating`.
    pub fn aio_is_negotiating(&self) -> bool {
        self.lock().is_negotiating()
    }
    /// The handle is connected and idle, ready for commands.
    ///
    /// libnbd: `nbd_aio_is_ready`.
    pub fn aio_is_ready(&self) -> bool {
        self.lock().is_ready()
    }
    /// The handle is in the middle of sending a request or receiving a reply.
    ///
    /// libnbd: `nbd_aio_is_processing`.
    pub fn aio_is_processing(&self) -> bool {
        self.lock().is_processing()
    }
    /// The connection failed; the handle can only be closed.
    ///
    /// libnbd: `nbd_aio_is_dead`.
    pub fn aio_is_dead(&self) -> bool {
        self.lock().is_dead()
    }
    /// The connection was shut down.
    ///
    /// libnbd: `nbd_aio_is_closed`.
    pub fn aio_is_closed(&self) -> bool {
        self.lock().is_closed()
    }

    /// The state's name and description, e.g. `"READY: Connection is ready ..."`.
    ///
    /// libnbd: `nbd_connection_state`.
    pub fn connection_state(&self) -> &'static str {
        self.lock().state_description()
    }

    // ---- export information -------------------------------------------------------

    /// The export's size in bytes: EINVAL until the server has sent it,
    /// EOVERFLOW if it claimed more than `i64::MAX`.
    ///
    /// libnbd: `nbd_get_size`.
    pub fn size(&self) -> Result<u64> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        if !c.export_known() {
            return Err(Error::new(
                libc::EINVAL,
                "server has not returned export size, you need to connect to the server first",
            ));
        }
        let size = c.export_size();
        if size > i64::MAX as u64 {
            return Err(Error::new(
                libc::EOVERFLOW,
                format!("server claims size {size} which does not fit in signed result"),
            ));
        }
        Ok(size)
    }

    fn export_flag(&self, flag: u16) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        c.check_export_known()?;
        Ok(c.can(flag))
    }

    /// The export is read-only.
    ///
    /// libnbd: `nbd_is_read_only`.
    pub fn is_read_only(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_READ_ONLY)
    }
    /// The server supports flush.
    ///
    /// libnbd: `nbd_can_flush`.
    pub fn can_flush(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_FLUSH)
    }
    /// The server supports the FUA flag.
    ///
    /// libnbd: `nbd_can_fua`.
    pub fn can_fua(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_FUA)
    }
    /// The server supports trim.
    ///
    /// libnbd: `nbd_can_trim`.
    pub fn can_trim(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_TRIM)
    }
    /// The server supports write-zeroes.
    ///
    /// libnbd: `nbd_can_zero`.
    pub fn can_zero(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_WRITE_ZEROES)
    }
    /// The server supports cache (prefetch).
    ///
    /// libnbd: `nbd_can_cache`.
    pub fn can_cache(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_SEND_CACHE)
    }
    /// Several connections to this export see consistent data.
    ///
    /// libnbd: `nbd_can_multi_conn`.
    pub fn can_multi_conn(&self) -> Result<bool> {
        self.export_flag(proto::NBD_FLAG_CAN_MULTI_CONN)
    }

    /// Closes the connection and reaps the subprocess, if any. Dropping the
    /// handle does the same. Commands still waiting to be sent or for a
    /// reply fail: their completion callbacks run with `ENOTCONN` (as if
    /// the connection had died), then every callback is dropped.
    ///
    /// libnbd: `nbd_close`.
    pub fn close(self) {}
}
impl Drop for Handle {
    fn drop(&mut self) {
        let mut c = self.lock();
        c.log(|| "closing handle".into());
        c.close();
    }
}
/// Alternates `progress` and `poll` until `done` holds, with the handle
/// locked throughout (the handshake, options, shutdown).
/// Past the deadline, or once cancelled ([`Handle::cancel_waits`], which
/// reaches the poll by shutting the socket down), the connection is
/// killed: a handshake cut short cannot be resumed.
fn run_until(c: &mut Conn, limits: Limits<'_>, done: impl Fn(&Conn) -> bool) -> Result<()> {
    // Whatever could be done without waiting has been done (a request is
    // written as it is issued), so wait for the socket first, unless input
    // is already buffered or the machine has an error to report.
    let mut wait = !c.input_buffered() && !c.is_dead();
    loop {
        if done(c) {
            return Ok(());
        }
        if wait {
            let Some(mut fds) = PollFds::for_conn(c, None)? else {
                // TLS holds data: no wait needed.
                c.progress()?;
                continue;
            };
            let registered = limits.cancel.register_locked_socket(fds.fds[0].fd);
            // Checked once registered: a cancellation from now on shuts
            // the socket down and so ends the poll.
            if let Err(err) = limits.check() {
                c.kill(err.clone());
                return Err(err);
            }
            fds.log_start(c);
            let ready = fds.poll(limits.poll_ms())?;
            drop(registered);
            fds.log_end(c);
            if let Err(err) = limits.check() {
                c.kill(err.clone());
                return Err(err);
            }
            if !ready {
                continue;
            }
        }
        c.progress()?;
        wait = true;
    }
}

impl Handle {
    /// Runs the machine until `done` holds, unlocking the handle while it
    /// waits for the socket, so other threads can issue commands meanwhile
    /// and their requests share the wire with this one. One waiting thread
    /// at a time polls and runs the machine for all; the others sleep on
    /// `turn` until it has made progress. The first poll for a lone
    /// command follows the spin policy. Returns the guard with the result.
    fn drive_until<'h>(
        &'h self,
        mut c: MutexGuard<'h, Conn>,
        done: impl Fn(&Conn) -> bool,
    ) -> (MutexGuard<'h, Conn>, Result<()>) {
        let mut wait = !c.input_buffered() && !c.is_dead();
        let mut first = true;
        let limits = self.limits();
        loop {
            if done(&c) {
                return (c, Ok(()));
            }
            if let Err(e) = limits.check() {
                return (c, Err(e));
            }
            if c.has_unlocked_poller() {
                c.note_contention();
                self.turn_waiters.fetch_add(1, Ordering::Relaxed);
                c = match limits.deadline {
                    None => self.turn.wait(c).unwrap_or_else(|p| self.recover(p)),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        match self.turn.wait_timeout(c, left) {
                            Ok((g, _)) => g,
                            Err(p) => self.recover(PoisonError::new(p.into_inner().0)),
                        }
                    }
                };
                self.turn_waiters.fetch_sub(1, Ordering::Relaxed);
                // That thread ran the machine as far as it could.
                wait = !c.input_buffered() && !c.is_dead();
                continue;
            }
            if wait {
                let waited = match c.start_unlocked_poll() {
                    Ok(waker) => {
                        let waker_fd = waker.as_raw_fd();
                        if self.cancel.unlocked_waker.get().is_none() {
                            let _ = self.cancel.unlocked_waker.set(Arc::clone(waker));
                            // Ordered before the check of the generation
                            // in wait_unlocked (see Cancel::cancel).
                            std::sync::atomic::fence(Ordering::SeqCst);
                        }
                        let (guard, waited) = self.wait_unlocked(c, waker_fd, first, &limits);
                        c = guard;
                        waited
                    }
                    // No eventfd (out of fds): wait locked, as libnbd does.
                    Err(_) => poll_once(&c, limits.poll_ms()).map(drop),
                };
                if let Err(e) = waited {
                    self.wake_waiters(&c);
                    return (c, Err(e));
                }
            }
            let progressed = c.progress();
            self.wake_waiters(&c);
            if let Err(e) = progressed {
                return (c, Err(e));
            }
            wait = true;
            first = false;
        }
    }

    /// Wakes the threads waiting on `turn`, if any. Takes the guard to
    /// show the lock is held, which makes `turn_waiters` exact.
    fn wake_waiters(&self, _locked: &MutexGuard<'_, Conn>) {
        if self.turn_waiters.load(Ordering::Relaxed) > 0 {
            self.turn.notify_all();
        }
    }

    /// Polls the socket and `waker` with the handle unlocked (spinning
    /// first for a lone command of a lone thread on its first wait), and
    /// locks it again.
    fn wait_unlocked<'h>(
        &'h self,
        mut c: MutexGuard<'h, Conn>,
        waker: i32,
        first: bool,
        limits: &Limits<'_>,
    ) -> (MutexGuard<'h, Conn>, Result<()>) {
        let mut fds = match PollFds::for_conn(&c, Some(waker)) {
            Ok(Some(fds)) => fds,
            other => {
                // TLS holds data (no wait needed), or nothing to poll for.
                c.end_unlocked_poll(false);
                return (c, other.map(drop));
            }
        };
        // A cancellation from now on signals the waker; one before, this
        // sees (the waker may have been registered just now).
        if let Err(e) = limits.check_cancel() {
            c.end_unlocked_poll(false);
            return (c, Err(e));
        }
        fds.log_start(&c);
        let mut spin = c.spin();
        // With others in flight, or other threads using the handle, the
        // CPU is better left to them and to the server.
        // A call with a deadline does not spin: its poll is bounded.
        let spinning =
            first && c.pending() <= 1 && !c.spin().contended() && limits.deadline.is_none();
        drop(c);
        let polled = if spinning {
            spin.wait(|timeout| fds.poll(timeout))
        } else {
            fds.poll(limits.poll_ms()).map(drop)
        };
        let mut c = self.lock();
        // Woken by another thread's request, by a cancellation (the caller
        // checks its limits next), or by the server.
        c.end_unlocked_poll(fds.extra_ready());
        if spinning {
            c.learn_spin(&spin);
        }
        if polled.is_ok() {
            fds.log_end(&c);
        }
        (c, polled)
    }
}

/// Waits until the connection's fd is ready in the direction the machine
/// wants (or `extra` is readable), or `timeout_ms` passes (-1: no limit).
/// Returns false on timeout.
fn poll_once(c: &Conn, timeout_ms: i32) -> Result<bool> {
    poll_with(c, None, timeout_ms)
}

fn poll_with(c: &Conn, extra: Option<i32>, timeout_ms: i32) -> Result<bool> {
    let Some(mut fds) = PollFds::for_conn(c, extra)? else {
        return Ok(true);
    };
    fds.log_start(c);
    let ready = fds.poll(timeout_ms)?;
    fds.log_end(c);
    Ok(ready)
}

/// What one wait polls: the connection's fd in the direction the machine
/// wants, and optionally another fd (a caller's, or the unlocked poller's
/// waker). Worked out with the handle locked; the poll itself needs no
/// lock.
struct PollFds {
    /// The connection's fd and the extra fd.
    fds: [libc::pollfd; 2],
    nfds: libc::nfds_t,
    rc: i32,
}

impl PollFds {
    /// `None` if the machine can go on without waiting (TLS holds data).
    fn for_conn(c: &Conn, extra: Option<RawFd>) -> Result<Option<PollFds>> {
        let dir = c.direction();
        let mut events = 0;
        if dir & DIRECTION_READ != 0 {
            events |= libc::POLLIN;
        }
        if dir & DIRECTION_WRITE != 0 {
            events |= libc::POLLOUT;
        }
        let (Some(fd), true) = (c.fd(), events != 0) else {
            return Err(Error::new(
                libc::EINVAL,
                format!("nothing to poll for in state {}", c.state_name()),
            ));
        };
        // Data already decrypted inside TLS will not make the fd readable.
        if dir & DIRECTION_READ != 0 && c.transport_pending() {
            return Ok(None);
        }
        let pollfd = |fd, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        Ok(Some(PollFds {
            fds: [
                pollfd(fd, events),
                pollfd(extra.unwrap_or(-1), libc::POLLIN),
            ],
            nfds: if extra.is_some() { 2 } else { 1 },
            rc: 0,
        }))
    }

    fn log_start(&self, c: &Conn) {
        let events = self.fds[0].events;
        c.log(|| format!("poll start: events={events}"));
    }

    fn log_end(&self, c: &Conn) {
        let (rc, revents) = (self.rc, self.fds[0].revents);
        c.log(|| format!("poll end: r={rc} revents={revents}"));
    }

    /// Whether the extra fd is readable (after [`PollFds::poll`]).
    fn extra_ready(&self) -> bool {
        self.nfds > 1 && self.fds[1].revents != 0
    }

    /// Polls; false on timeout.
    fn poll(&mut self, timeout_ms: i32) -> Result<bool> {
        loop {
            // SAFETY: fds holds nfds valid pollfds.
            let rc = unsafe { libc::poll(self.fds.as_mut_ptr(), self.nfds, timeout_ms) };
            if rc >= 0 {
                self.rc = rc;
                return Ok(rc > 0);
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("poll", &err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fail closed: a panic while the handle was locked kills it, and
    /// later calls fail with a clear error instead of using a
    /// half-updated connection.
    #[test]
    fn poisoned_lock_kills_the_handle() {
        let h = Handle::new().unwrap();
        h.set_export_name(b"before").unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _c = h.lock();
            panic!("bug while locked");
        }));
        assert!(r.is_err());
        assert!(h.aio_is_dead());
        let err = h.set_export_name(b"after").unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert!(h.connect_uri("nbd://localhost").is_err());
    }

    #[test]
    fn kill_after_panic_kills_the_handle() {
        let h = Handle::new().unwrap();
        h.kill_after_panic();
        assert!(h.aio_is_dead());
        assert!(h.connection_state().starts_with("DEAD"));
    }
}
