//! An asynchronous API on tokio: [`AsyncHandle`] (cargo feature `tokio`,
//! on by default).
#![warn(missing_docs)]

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use tokio::io::unix::AsyncFd;

use crate::callback::{Completion, Context, Extent64Cb, List};
use crate::flags::CmdFlag;
use crate::handle::{ContextExtents, Export};
use crate::{Error, Handle, Result};

const DIRECTION_READ: u32 = 1;
const DIRECTION_WRITE: u32 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- per-command state ------------------------------------------------------

/// Where a command's completion callback leaves its result for the future.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    /// The command's errno (0: success) and what it gives back.
    done: Option<(i32, T)>,
    waker: Option<Waker>,
}

impl<T: Send + 'static> Slot<T> {
    fn new() -> Arc<Slot<T>> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                done: None,
                waker: None,
            }),
        })
    }

    /// A completion callback that hands `give_back()` to the future and
    /// wakes it. It runs inside the state machine with the handle locked:
    /// it touches only the slot. It returns 1, so the command is retired
    /// at once; the closure (and whatever it owns) is freed then.
    fn completion(
        self: &Arc<Self>,
        mut give_back: impl FnMut() -> T + Send + 'static,
    ) -> Completion {
        let slot = Arc::clone(self);
        Completion::new(move |errno| {
            slot.finish(*errno, give_back());
            1
        })
    }

    /// Hands the command's errno and `value` to the future, and wakes it.
    fn finish(&self, errno: i32, value: T) {
        let waker = {
            let mut st = lock(&self.state);
            st.done = Some((errno, value));
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

// ---- the handle -------------------------------------------------------------

/// Tasks waiting for their commands; readiness of the socket wakes one of
/// them to run the state machine.
struct Waiters {
    list: Mutex<Vec<(u64, Waker)>>,
}

impl Waiters {
    /// Wakes every waiting task (the connection has ended).
    fn wake_all(&self) {
        let all: Vec<Waker> = lock(&self.list).iter().map(|(_, w)| w.clone()).collect();
        all.into_iter().for_each(Waker::wake);
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let w = lock(&self.list).last().map(|(_, w)| w.clone());
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// An NBD handle whose commands are `async fn`s, driven by tokio's reactor
/// (the libnbd calls are named on each method).
///
/// Every command is an `async fn`. Any number of tasks may issue commands on
/// one `AsyncHandle` (share it with an [`Arc`](std::sync::Arc)): they are
/// pipelined on the one connection. The connection is driven by tokio's
/// reactor: there is no helper thread or task; whichever command future is
/// polled runs the connection's state machine when the socket is ready,
/// and each command's future is woken by the completion of its command.
///
/// Buffers are owned: [`AsyncHandle::pread`] and [`AsyncHandle::pwrite`]
/// take a `Vec<u8>` and give it back when the command has completed. If a
/// command's future is dropped before then (cancellation,
/// [`tokio::time::timeout`](https://docs.rs/tokio/latest/tokio/time/fn.timeout.html),
/// `select!`), the command stays in flight, owning its buffer, and its reply
/// is discarded when it arrives; the buffer is freed then (or when the
/// handle is closed). Nothing is ever written into memory the caller no
/// longer owns.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// use nbd::{AsyncHandle, CmdFlag};
/// let nbd = AsyncHandle::new()?;
/// nbd.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
///     .await?;
/// let buf = nbd.pwrite(vec![7; 512], 4096, CmdFlag::FUA).await?;
/// let buf = nbd.pread(buf, 4096, CmdFlag::empty()).await?;
/// assert_eq!(buf, vec![7; 512]);
/// nbd.shutdown().await?;
/// # Ok::<(), nbd::Error>(()) }).unwrap();
/// ```
///
/// Create it inside a tokio runtime with the I/O driver enabled
/// (`enable_io()`, or `#[tokio::main]`), and use it in that runtime only:
/// its socket is registered with the runtime that connected it. Share it between tasks with an
/// `Arc`; each method takes `&self`. Futures must be polled to make
/// progress (`.await` does that); a future polled once and then left
/// unpolled for long, while other commands wait, may delay them.
pub struct AsyncHandle {
    /// Our duplicate of the connection's socket, registered with the
    /// reactor (a duplicate, so the registration never outlives the open
    /// file it names). Declared before `handle`: dropped first, so that a
    /// subprocess server sees EOF when the handle closes.
    fd: OnceLock<AsyncFd<OwnedFd>>,
    handle: Handle,
    waiters: Arc<Waiters>,
    /// Wakes one waiting task: given to the reactor.
    fanout: Waker,
    next_id: AtomicU64,
    /// A task is running the state machine.
    driving: AtomicBool,
    /// Another task found it busy: the driver goes round once more.
    redrive: AtomicBool,
}

impl std::fmt::Debug for AsyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncHandle")
            .field("state", &self.handle.connection_state())
            .finish_non_exhaustive()
    }
}

impl AsyncHandle {
    /// Creates a handle (`nbd_create`). With the cargo feature `log`, its
    /// debug messages go to the `log` crate (see `log_to_log_crate`).
    pub fn new() -> Result<AsyncHandle> {
        let handle = Handle::new()?;
        #[cfg(feature = "log")]
        crate::logging::log_to_log_crate(&handle)?;
        Ok(AsyncHandle::from_handle(handle))
    }

    /// Wraps a handle configured beforehand (TLS, export name, meta
    /// contexts, option mode...) and not yet connected. A handle already
    /// connected by the synchronous calls can also be wrapped.
    pub fn from_handle(handle: Handle) -> AsyncHandle {
        let waiters = Arc::new(Waiters {
            list: Mutex::new(Vec::new()),
        });
        let fanout = Waker::from(Arc::clone(&waiters));
        AsyncHandle {
            fd: OnceLock::new(),
            handle,
            waiters,
            fanout,
            next_id: AtomicU64::new(1),
            driving: AtomicBool::new(false),
            redrive: AtomicBool::new(false),
        }
    }

    /// The synchronous handle underneath, for settings and getters (do not
    /// run its blocking commands while async commands are in flight).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    // ---- connecting -------------------------------------------------------

    /// Connects to an NBD URI (`nbd_aio_connect_uri`), including the
    /// handshake.
    pub async fn connect_uri(&self, uri: &str) -> Result<()> {
        self.handle.aio_connect_uri(uri)?;
        self.finish_connect().await
    }

    /// Connects to a Unix socket (`nbd_aio_connect_unix`).
    pub async fn connect_unix(&self, path: impl AsRef<Path>) -> Result<()> {
        self.handle.aio_connect_unix(path)?;
        self.finish_connect().await
    }

    /// Connects over TCP (`nbd_aio_connect_tcp`).
    pub async fn connect_tcp(&self, host: &str, port: &str) -> Result<()> {
        self.handle.aio_connect_tcp(host, port)?;
        self.finish_connect().await
    }

    /// Connects to a server's address (`nbd_aio_connect`): an IP address
    /// and port (a [`std::net::SocketAddr`] converts), a Unix domain
    /// socket or a vsock address ([`crate::ServerAddr`]).
    pub async fn connect(&self, addr: impl Into<crate::ServerAddr>) -> Result<()> {
        self.handle.aio_connect(addr)?;
        self.finish_connect().await
    }

    /// Runs a server as a subprocess talking NBD on its stdin/stdout
    /// (`nbd_aio_connect_command`).
    pub async fn connect_command<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        self.handle.aio_connect_command(argv)?;
        self.finish_connect().await
    }

    /// Runs a server with systemd socket activation
    /// (`nbd_aio_connect_systemd_socket_activation`).
    pub async fn connect_systemd_socket_activation<S: AsRef<[u8]>>(
        &self,
        argv: &[S],
    ) -> Result<()> {
        self.handle.aio_connect_systemd_socket_activation(argv)?;
        self.finish_connect().await
    }

    /// Connects over a socket already connected to a server
    /// (`nbd_aio_connect_socket`).
    pub async fn connect_socket(&self, sock: OwnedFd) -> Result<()> {
        self.handle.aio_connect_socket(sock)?;
        self.finish_connect().await
    }

    /// Drives the connection until it is no longer connecting, with a
    /// reactor registration of its own (the socket may change while
    /// several addresses are tried), kept once connected.
    async fn finish_connect(&self) -> Result<()> {
        let mut reg: Option<(RawFd, AsyncFd<OwnedFd>)> = None;
        std::future::poll_fn(|cx| -> Poll<Result<()>> {
            loop {
                if !self.handle.aio_is_connecting() {
                    return Poll::Ready(Ok(()));
                }
                let raw = self.handle.aio_get_fd()?;
                if reg.as_ref().map(|r| r.0) != Some(raw) {
                    reg = None;
                    reg = Some((raw, register(&self.handle)?));
                }
                let fd = &reg.as_ref().unwrap().1;
                let dir = self.handle.aio_get_direction().bits();
                let ready = if dir & DIRECTION_WRITE != 0 {
                    fd.poll_write_ready(cx)
                } else {
                    fd.poll_read_ready(cx)
                };
                match ready {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("poll", &e))),
                    Poll::Ready(Ok(mut guard)) => {
                        let r = self.handle.aio_run();
                        if r.is_ok() && self.handle.aio_get_direction().bits() & dir != 0 {
                            guard.clear_ready();
                        }
                        drop(guard);
                        r?;
                    }
                }
            }
        })
        .await?;
        if let Some(e) = self.handle.fatal_error() {
            return Err(e);
        }
        if !(self.handle.aio_is_ready() || self.handle.aio_is_negotiating()) {
            return Err(Error::new(
                libc::ENOTCONN,
                format!("connection failed ({})", self.handle.connection_state()),
            ));
        }
        let raw = self.handle.aio_get_fd()?;
        let fd = match reg {
            Some((r, fd)) if r == raw => fd,
            _ => register(&self.handle)?,
        };
        // A second connect on the same handle fails in the calls above.
        let _ = self.fd.set(fd);
        // The handshake may stop with bytes still unread: take them now,
        // as the reactor reports only new arrivals.
        self.handle.aio_run()
    }

    // ---- driving ------------------------------------------------------------

    /// Runs the state machine as far as the socket allows, unless another
    /// task is doing so (it then goes round once more for us).
    fn drive(&self) {
        let Some(fd) = self.registered_fd() else {
            return;
        };
        loop {
            if self.driving.swap(true, SeqCst) {
                self.redrive.store(true, SeqCst);
                if self.driving.load(SeqCst) {
                    return;
                }
                continue;
            }
            self.redrive.store(false, SeqCst);
            self.drive_exclusive(fd);
            self.driving.store(false, SeqCst);
            if !self.redrive.swap(false, SeqCst) {
                return;
            }
        }
    }

    /// The socket's registration; made on first use for a handle that was
    /// connected before it was wrapped ([`AsyncHandle::from_handle`]).
    fn registered_fd(&self) -> Option<&AsyncFd<OwnedFd>> {
        if let Some(fd) = self.fd.get() {
            return Some(fd);
        }
        if self.handle.aio_is_connecting() {
            // finish_connect registers it.
            return None;
        }
        let fd = register(&self.handle).ok()?;
        let _ = self.fd.set(fd);
        self.fd.get()
    }

    fn drive_exclusive(&self, fd: &AsyncFd<OwnedFd>) {
        let mut cx = TaskContext::from_waker(&self.fanout);
        // Bounded, so that a busy connection does not hold one task for
        // ever; the socket stays ready and a waiter is woken to go on.
        let mut i = 0;
        while i < 64 {
            i += 1;
            let mut ran = false;
            if self.handle.aio_get_direction().bits() & DIRECTION_READ != 0 {
                if let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready(&mut cx) {
                    ran = true;
                    // The machine reads until the socket is empty.
                    if self.handle.aio_run().is_err() {
                        return self.dead(fd);
                    }
                    guard.clear_ready();
                }
            }
            if self.handle.aio_get_direction().bits() & DIRECTION_WRITE != 0 {
                if let Poll::Ready(Ok(mut guard)) = fd.poll_write_ready(&mut cx) {
                    ran = true;
                    if self.handle.aio_run().is_err() {
                        return self.dead(fd);
                    }
                    // Still wanting to write: the socket is full.
                    if self.handle.aio_get_direction().bits() & DIRECTION_WRITE != 0 {
                        guard.clear_ready();
                    }
                }
            }
            if !ran {
                i = 0;
                break;
            }
        }
        if self.handle.aio_is_closed() || self.handle.aio_is_dead() {
            return self.dead(fd);
        }
        if i == 64 {
            self.fanout.wake_by_ref();
        }
    }

    /// The connection died (its commands have failed): let a server see
    /// EOF although our duplicate of the socket is still open.
    fn dead(&self, fd: &AsyncFd<OwnedFd>) {
        let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        self.waiters.wake_all();
    }

    /// Awaits a command started by `start`, which is given the completion
    /// callback to attach.
    fn command<T: Send + 'static>(
        &self,
        name: &'static str,
        give_back: impl FnMut() -> T + Send + 'static,
        start: impl FnOnce(&Handle, Completion) -> Result<()>,
    ) -> CommandFuture<'_, T> {
        let slot = Slot::new();
        let started = start(&self.handle, slot.completion(give_back));
        self.future(name, slot, started)
    }

    /// The future of a command started (or refused, `started`) with a
    /// completion that finishes `slot`.
    fn future<T: Send + 'static>(
        &self,
        name: &'static str,
        slot: Arc<Slot<T>>,
        started: Result<()>,
    ) -> CommandFuture<'_, T> {
        CommandFuture {
            ah: self,
            slot,
            id: self.next_id.fetch_add(1, SeqCst),
            name,
            started: Some(started),
            registered: false,
            finished: false,
        }
    }

    // ---- commands -----------------------------------------------------------

    /// Reads `buf.len()` bytes at `offset` into `buf` and gives it back
    /// (`nbd_aio_pread`). Flags: none defined (pass `CmdFlag::empty()`).
    ///
    /// If the future is dropped early, the buffer stays with the command
    /// until its reply arrives, and is then freed.
    pub async fn pread(&self, buf: Vec<u8>, offset: u64, flags: CmdFlag) -> Result<Vec<u8>> {
        let slot = Slot::new();
        let done = Arc::clone(&slot);
        let started = self
            .handle
            .aio_pread_vec(buf, offset, flags, move |errno, buf| {
                done.finish(errno, buf)
            })
            .map(drop);
        self.future("pread", slot, started).await
    }

    /// Writes `buf` at `offset` and gives it back (`nbd_aio_pwrite`).
    /// Flags: `FUA`, `PAYLOAD_LEN`.
    pub async fn pwrite(&self, buf: Vec<u8>, offset: u64, flags: CmdFlag) -> Result<Vec<u8>> {
        let slot = Slot::new();
        let done = Arc::clone(&slot);
        let started = self
            .handle
            .aio_pwrite_vec(buf, offset, flags, move |errno, buf| {
                done.finish(errno, buf)
            })
            .map(drop);
        self.future("pwrite", slot, started).await
    }

    /// Makes written data durable (`nbd_aio_flush`).
    pub async fn flush(&self, flags: CmdFlag) -> Result<()> {
        self.command("flush", || (), |h, c| h.aio_flush(Some(c), flags).map(drop))
            .await
    }

    /// Discards `count` bytes at `offset` (`nbd_aio_trim`). Flags: `FUA`.
    pub async fn trim(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        self.command(
            "trim",
            || (),
            |h, c| h.aio_trim(count, offset, Some(c), flags).map(drop),
        )
        .await
    }

    /// Writes `count` zero bytes at `offset` (`nbd_aio_zero`).
    /// Flags: `FUA`, `NO_HOLE`, `FAST_ZERO`.
    pub async fn zero(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        self.command(
            "zero",
            || (),
            |h, c| h.aio_zero(count, offset, Some(c), flags).map(drop),
        )
        .await
    }

    /// Asks the server to prefetch `count` bytes at `offset` (`nbd_aio_cache`).
    pub async fn cache(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        self.command(
            "cache",
            || (),
            |h, c| h.aio_cache(count, offset, Some(c), flags).map(drop),
        )
        .await
    }

    /// The status of `count` bytes at `offset` in each negotiated meta
    /// context (`nbd_aio_block_status_64`; request contexts such as
    /// `base:allocation` with `handle().add_meta_context()` before
    /// connecting). Flags: `REQ_ONE`.
    pub async fn block_status(
        &self,
        count: u64,
        offset: u64,
        flags: CmdFlag,
    ) -> Result<Vec<ContextExtents>> {
        let acc = Arc::new(Mutex::new(Vec::new()));
        let acc2 = Arc::clone(&acc);
        let extent = Extent64Cb::new(move |context, offset, entries, _err| {
            lock(&acc2).push(ContextExtents {
                context: context.to_string(),
                offset,
                extents: entries.to_vec(),
            });
            0
        });
        self.command(
            "block_status",
            move || std::mem::take(&mut *lock(&acc)),
            |h, c| {
                h.aio_block_status_64(count, offset, extent, Some(c), flags)
                    .map(drop)
            },
        )
        .await
    }

    /// Disconnects cleanly (`nbd_aio_disconnect`, then waits as
    /// `nbd_shutdown` does): commands already issued are still answered;
    /// then the server closes the connection. In option mode it ends
    /// negotiation with `NBD_OPT_ABORT` instead.
    pub async fn shutdown(&self) -> Result<()> {
        if self.handle.aio_is_negotiating() {
            return self.opt_abort().await;
        }
        self.handle.aio_disconnect(CmdFlag::empty())?;
        self.wait_closed().await;
        Ok(())
    }

    /// Waits until the connection is closed or dead, driving it.
    async fn wait_closed(&self) {
        let id = self.next_id.fetch_add(1, SeqCst);
        let over = || self.handle.aio_is_closed() || self.handle.aio_is_dead();
        std::future::poll_fn(|cx| {
            self.drive();
            if !over() {
                register_waiter(&self.waiters, id, cx.waker());
                // The driver wakes every waiter when the connection ends;
                // look again in case that happened just now.
                if !over() {
                    return Poll::Pending;
                }
            }
            lock(&self.waiters.list).retain(|(i, _)| *i != id);
            Poll::Ready(())
        })
        .await
    }

    // ---- option negotiation (option mode) -----------------------------------

    /// Ends negotiation and enters transmission with the export set by
    /// `handle().set_export_name()` (`nbd_aio_opt_go`).
    pub async fn opt_go(&self) -> Result<()> {
        self.command("opt_go", || (), |h, c| h.aio_opt_go(Some(c)))
            .await
    }

    /// Asks for the export's details without entering transmission
    /// (`nbd_aio_opt_info`); read them with the getters.
    pub async fn opt_info(&self) -> Result<()> {
        self.command("opt_info", || (), |h, c| h.aio_opt_info(Some(c)))
            .await
    }

    /// Lists the server's exports (`nbd_aio_opt_list`).
    pub async fn opt_list(&self) -> Result<Vec<Export>> {
        let acc = Arc::new(Mutex::new(Vec::new()));
        let acc2 = Arc::clone(&acc);
        let list = List::new(move |name, description| {
            lock(&acc2).push(Export {
                name: name.to_string(),
                description: description.to_string(),
            });
            0
        });
        self.command(
            "opt_list",
            move || std::mem::take(&mut *lock(&acc)),
            |h, c| h.aio_opt_list(list, Some(c)),
        )
        .await
    }

    /// Lists the meta contexts the server has matching the requested ones
    /// (`nbd_aio_opt_list_meta_context`).
    pub async fn opt_list_meta_context(&self) -> Result<Vec<String>> {
        let acc = Arc::new(Mutex::new(Vec::new()));
        let acc2 = Arc::clone(&acc);
        let context = Context::new(move |name| {
            lock(&acc2).push(name.to_string());
            0
        });
        self.command(
            "opt_list_meta_context",
            move || std::mem::take(&mut *lock(&acc)),
            |h, c| h.aio_opt_list_meta_context(None, context, Some(c)),
        )
        .await
    }

    /// Ends negotiation without entering transmission (`nbd_aio_opt_abort`)
    /// and waits for the connection to close.
    pub async fn opt_abort(&self) -> Result<()> {
        self.handle.aio_opt_abort()?;
        self.wait_closed().await;
        Ok(())
    }

    // ---- getters --------------------------------------------------------------

    /// The export's size in bytes (`nbd_get_size`).
    pub fn size(&self) -> Result<u64> {
        self.handle.size()
    }

    /// Whether the export is read-only (`nbd_is_read_only`).
    pub fn is_read_only(&self) -> Result<bool> {
        self.handle.is_read_only()
    }

    /// Whether the server supports flush (`nbd_can_flush`).
    pub fn can_flush(&self) -> Result<bool> {
        self.handle.can_flush()
    }

    /// Whether the server supports FUA (`nbd_can_fua`).
    pub fn can_fua(&self) -> Result<bool> {
        self.handle.can_fua()
    }

    /// Whether the server supports trim (`nbd_can_trim`).
    pub fn can_trim(&self) -> Result<bool> {
        self.handle.can_trim()
    }

    /// Whether the server supports writing zeroes (`nbd_can_zero`).
    pub fn can_zero(&self) -> Result<bool> {
        self.handle.can_zero()
    }

    /// Whether the server supports cache (`nbd_can_cache`).
    pub fn can_cache(&self) -> Result<bool> {
        self.handle.can_cache()
    }

    /// Whether the export may be used over several connections
    /// (`nbd_can_multi_conn`).
    pub fn can_multi_conn(&self) -> Result<bool> {
        self.handle.can_multi_conn()
    }

    /// Whether a meta context was negotiated (`nbd_can_meta_context`).
    pub fn can_meta_context(&self, name: &str) -> Result<bool> {
        self.handle.can_meta_context(name)
    }

    /// How many commands are in flight (`nbd_aio_in_flight`), including
    /// those whose futures were dropped.
    pub fn in_flight(&self) -> Result<i32> {
        self.handle.aio_in_flight()
    }
}

fn register_waiter(waiters: &Waiters, id: u64, waker: &Waker) {
    let mut list = lock(&waiters.list);
    match list.iter_mut().find(|(i, _)| *i == id) {
        Some((_, w)) => {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
        None => list.push((id, waker.clone())),
    }
}

/// Registers a duplicate of `handle`'s socket with the reactor.
fn register(handle: &Handle) -> Result<AsyncFd<OwnedFd>> {
    let owned = handle.dup_fd()?;
    // SAFETY: the OwnedFd stays open, naming the same file, for as long as
    // the AsyncFd holds it.
    unsafe { AsyncFd::register(owned) }.map_err(|e| Error::io("register", &e.into_parts().1))
}

/// The future of one command: polled, it runs the state machine, then
/// looks for its own completion.
struct CommandFuture<'a, T> {
    ah: &'a AsyncHandle,
    slot: Arc<Slot<T>>,
    id: u64,
    name: &'static str,
    started: Option<Result<()>>,
    registered: bool,
    finished: bool,
}

impl<T> Unpin for CommandFuture<'_, T> {}

impl<T> CommandFuture<'_, T> {
    fn unregister(&mut self) {
        if self.registered {
            self.registered = false;
            lock(&self.ah.waiters.list).retain(|(i, _)| *i != self.id);
        }
    }
}

impl<T> Future for CommandFuture<'_, T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<T>> {
        let this = &mut *self;
        if let Some(Err(e)) = this.started.take() {
            this.finished = true;
            return Poll::Ready(Err(e));
        }
        this.ah.drive();
        let done = {
            let mut st = lock(&this.slot.state);
            match st.done.take() {
                Some(d) => Some(d),
                None => {
                    match &st.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => st.waker = Some(cx.waker().clone()),
                    }
                    None
                }
            }
        };
        if let Some((errno, value)) = done {
            this.unregister();
            this.finished = true;
            return Poll::Ready(if errno == 0 {
                Ok(value)
            } else {
                Err(command_error(this.ah, this.name, errno))
            });
        }
        register_waiter(&this.ah.waiters, this.id, cx.waker());
        this.registered = true;
        Poll::Pending
    }
}

impl<T> Drop for CommandFuture<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            let was = self.registered;
            self.unregister();
            // This task may have been the one woken to drive: pass it on.
            if was {
                self.ah.fanout.wake_by_ref();
            }
        }
    }
}

fn command_error(ah: &AsyncHandle, name: &str, errno: i32) -> Error {
    if errno == libc::ENOTCONN {
        if let Some(e) = ah.handle.fatal_error() {
            return Error::new(e.errno(), format!("{name}: {}", e.message()));
        }
    }
    Error::new(errno, format!("{name}: command failed"))
}
