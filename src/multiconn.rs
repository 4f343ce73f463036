//! Multi-connection I/O: [`MultiConn`], one handle-like object over up to
//! [`MAX_CONNECTIONS`] connections to the same export.
//!
//! A server that sets `NBD_FLAG_CAN_MULTI_CONN` promises that every
//! connection to the export sees the same data, and that a flush on any
//! connection makes durable every write that had completed (on any
//! connection) before the flush was sent. With such a server a
//! [`MultiConn`] opens as many connections as asked for; without it, one.
//!
//! Small requests go, whole, to the least-loaded connection, through the
//! ordinary synchronous [`Handle`] calls. A read or write larger than the
//! split threshold (or than the largest chunk) is cut into chunks no larger
//! than the server's maximum payload; the chunks are issued at once with
//! the `aio_` calls, spread over all connections, and the calling thread
//! then waits for all of them, polling every connection's socket together
//! (and an eventfd, so that a chunk finished by another thread driving the
//! same connection wakes it).
//!
//! The `aio_` calls start one command on one connection (round-robin) and
//! return a [`MultiCookie`]; [`MultiConn::poll`] drives all connections
//! at once. They are not split and not tracked by [`MultiConn::flush`].
//!
//! # Errors
//!
//! There is no retry: a request that failed on one connection is never
//! sent again on another (that could reorder writes). A connection that
//! dies makes the call that used it fail with the connection's error, and
//! from then on every call on the [`MultiConn`] fails with that same error:
//! the writes still in flight on the dead connection are lost, and the
//! caller must assume anything written since the last successful
//! [`MultiConn::flush`] may be. Close it and open a new one.
//!
//! The pool fails closed as a [`Handle`] does: if a call panics while it
//! holds one of the pool's locks, the pool is dead and every later call
//! fails with EINVAL ("multi-conn pool is dead after an internal error",
//! also returned by [`MultiConn::fatal_error`]).

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;

use nix::errno::Errno;

use crate::flags::raw::{LIBNBD_AIO_DIRECTION_READ, LIBNBD_AIO_DIRECTION_WRITE};
use crate::transport::Waker;
use crate::{Completion, Error, Extent64Cb, Handle, Result};

/// The most connections a [`MultiConn`] opens.
pub const MAX_CONNECTIONS: usize = 16;

/// Default number of connections (when the server allows more than one).
pub const DEFAULT_CONNECTIONS: usize = 4;

/// Default largest chunk of a split read or write (also capped by the
/// server's maximum payload). Small enough that the buffers of the chunks
/// in flight stay in cache on both sides: reading nbdkit's pattern plugin
/// over 4 connections, 512 KiB chunks beat 2 MiB and 8 MiB ones by 20-50%.
pub const DEFAULT_MAX_CHUNK: u64 = 512 * 1024;

/// Default size from which a read or write is split over all connections.
pub const DEFAULT_SPLIT_THRESHOLD: u64 = 512 * 1024;

/// Chunk boundaries fall on multiples of this (or of the server's minimum
/// block size, if larger), relative to the request's offset.
const CHUNK_ALIGN: u64 = 4096;

/// How a [`MultiConn`] is opened: the number of connections and how large
/// requests are split. Made by [`MultiConn::builder`].
#[derive(Clone, Debug)]
pub struct MultiConnBuilder {
    connections: usize,
    max_chunk: u64,
    split_threshold: u64,
}

impl Default for MultiConnBuilder {
    fn default() -> Self {
        MultiConnBuilder {
            connections: DEFAULT_CONNECTIONS,
            max_chunk: DEFAULT_MAX_CHUNK,
            split_threshold: DEFAULT_SPLIT_THRESHOLD,
        }
    }
}

impl MultiConnBuilder {
    /// How many connections to open when the server advertises multi-conn
    /// (1 to [`MAX_CONNECTIONS`]; default [`DEFAULT_CONNECTIONS`]).
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// The largest chunk a split read or write is cut into (default
    /// [`DEFAULT_MAX_CHUNK`]); the server's maximum payload caps it.
    pub fn max_chunk(mut self, bytes: u64) -> Self {
        self.max_chunk = bytes;
        self
    }

    /// Reads and writes of at least this many bytes are split over all
    /// connections (default [`DEFAULT_SPLIT_THRESHOLD`]); smaller ones go
    /// whole to one connection. Requests larger than the maximum chunk are
    /// always split, even over a single connection.
    pub fn split_threshold(mut self, bytes: u64) -> Self {
        self.split_threshold = bytes;
        self
    }

    /// Opens the connections: `connect(i)` must return a [`Handle`]
    /// connected (ready for commands) to the export, for `i` = 0, 1, ...
    /// It is called once; then, if that connection's server advertises
    /// multi-conn, once for each further connection. Every connection must
    /// reach the same export of the same server (same size, same flags);
    /// `connect` chooses the transport, TLS, meta contexts and so on.
    ///
    /// Fails with the first error of `connect`, or EINVAL for a bad
    /// connection count or a connection that does not match the first.
    pub fn connect<F>(&self, mut connect: F) -> Result<MultiConn>
    where
        F: FnMut(usize) -> Result<Handle>,
    {
        check_connections(self.connections)?;
        let first = connect(0)?;
        check_ready(&first, 0)?;
        let want = if first.can_multi_conn()? {
            self.connections
        } else {
            1
        };
        let size = first.size()?;
        let read_only = first.is_read_only()?;
        let mut payload = largest_payload(&first)?;
        let mut minimum = first.block_size(crate::Size::Minimum)?.unwrap_or(0);
        let mut handles = Vec::with_capacity(want);
        handles.push(first);
        for i in 1..want {
            let h = connect(i)?;
            check_same_export(&h, i, size, read_only)?;
            payload = payload.min(largest_payload(&h)?);
            minimum = minimum.max(h.block_size(crate::Size::Minimum)?.unwrap_or(0));
            handles.push(h);
        }
        let align = minimum.max(CHUNK_ALIGN);
        // At least one aligned unit, at most the payload, else aligned down.
        let max_chunk = self.max_chunk.min(payload).max(align);
        let max_chunk = max_chunk / align * align;
        let members = handles.into_iter().map(Member::new).collect();
        Ok(MultiConn {
            members,
            size,
            max_chunk,
            align,
            split_threshold: self.split_threshold,
            next: AtomicUsize::new(0),
            fatal: OnceLock::new(),
            writes: Mutex::new(WriteEpochs::default()),
            writes_done: Condvar::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// Opens connections to the NBD URI `uri` ([`Handle::connect_uri`]).
    pub fn connect_uri(&self, uri: &str) -> Result<MultiConn> {
        self.connect(|_| {
            let h = Handle::new()?;
            h.connect_uri(uri)?;
            Ok(h)
        })
    }

    /// Opens connections to the Unix socket `path` ([`Handle::connect_unix`]).
    pub fn connect_unix<P: AsRef<std::path::Path>>(&self, path: P) -> Result<MultiConn> {
        self.connect(|_| {
            let h = Handle::new()?;
            h.connect_unix(path.as_ref())?;
            Ok(h)
        })
    }
}

/// The largest read or write `h` may send: the client's payload limit,
/// and the server's maximum block size if it gave one.
fn largest_payload(h: &Handle) -> Result<u64> {
    let payload = h.block_size(crate::Size::Payload)?.unwrap_or(u64::MAX);
    Ok(match h.block_size(crate::Size::Maximum)? {
        None => payload,
        Some(max) => payload.min(max),
    })
}

// ---- what MultiConn and AsyncMultiConn share ----------------------------------

/// EINVAL unless 1 to [`MAX_CONNECTIONS`] connections are asked for.
pub(crate) fn check_connections(connections: usize) -> Result<()> {
    if connections == 0 || connections > MAX_CONNECTIONS {
        return Err(Error::new(
            libc::EINVAL,
            format!(
                "connections: invalid value for parameter: {connections} (must be 1 to {MAX_CONNECTIONS})"
            ),
        ));
    }
    Ok(())
}

/// EINVAL unless connection `i` is ready for commands.
pub(crate) fn check_ready(h: &Handle, i: usize) -> Result<()> {
    if h.aio_is_ready() {
        Ok(())
    } else {
        Err(Error::new(
            libc::EINVAL,
            format!(
                "connection {i} is not ready for commands: {}",
                h.connection_state()
            ),
        ))
    }
}

/// EINVAL unless connection `i` (after the first) is ready and reaches the
/// export connection 0 reaches (`size`, `read_only`), with multi-conn.
pub(crate) fn check_same_export(h: &Handle, i: usize, size: u64, read_only: bool) -> Result<()> {
    check_ready(h, i)?;
    if h.size()? != size || h.is_read_only()? != read_only || !h.can_multi_conn()? {
        return Err(Error::new(
            libc::EINVAL,
            format!("connection {i} does not reach the same export as connection 0"),
        ));
    }
    Ok(())
}

/// One connection of a pool and how many of the pool's commands it has
/// in flight.
pub(crate) struct Member<H> {
    pub(crate) handle: H,
    load: AtomicUsize,
}

impl<H> Member<H> {
    pub(crate) fn new(handle: H) -> Member<H> {
        Member {
            handle,
            load: AtomicUsize::new(0),
        }
    }

    /// Counts a command against this connection until the guard is dropped.
    pub(crate) fn count(&self) -> Load<'_> {
        self.load.fetch_add(1, Ordering::Relaxed);
        Load(&self.load)
    }
}

/// A command counted against its connection (see [`Member::count`]).
pub(crate) struct Load<'a>(&'a AtomicUsize);

impl Drop for Load<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The least-loaded of `members`, searched from the round-robin start
/// `next` (which it advances), so equally loaded connections take turns.
pub(crate) fn least_loaded<'m, H>(members: &'m [Member<H>], next: &AtomicUsize) -> &'m Member<H> {
    let n = members.len();
    if n == 1 {
        return &members[0];
    }
    let start = next.fetch_add(1, Ordering::Relaxed) % n;
    let mut best = &members[start];
    let mut best_load = best.load.load(Ordering::Relaxed);
    for k in 1..n {
        if best_load == 0 {
            break;
        }
        let m = &members[(start + k) % n];
        let load = m.load.load(Ordering::Relaxed);
        if load < best_load {
            best = m;
            best_load = load;
        }
    }
    best
}

/// Whether a connection can serve no more commands: dead (a protocol or
/// I/O error), or closed (the server went away between replies).
pub(crate) fn gone(h: &Handle) -> bool {
    h.aio_is_dead() || h.aio_is_closed()
}

/// After a call on `h` failed with `e`: if `h` is gone, its error becomes
/// the pool's (`fatal`, kept from the first connection that died) and is
/// returned; else `e` is.
pub(crate) fn pool_failure(fatal: &OnceLock<Error>, h: &Handle, e: Error) -> Error {
    if !gone(h) {
        return e;
    }
    let why = h.fatal_error().unwrap_or(e);
    fatal.get_or_init(|| why).clone()
}

/// Writes (write, trim, zero) in flight, counted in two alternating epochs
/// so that a flush can wait for exactly those started before it.
#[derive(Default)]
struct WriteEpochs {
    current: u64,
    open: [usize; 2],
}

/// Several connections to one export, used as one handle. See the
/// [module documentation](self).
///
/// `MultiConn` is `Send` and `Sync`: any number of threads may call it at
/// once; each call is synchronous for its caller.
pub struct MultiConn {
    // First, so the handles close before the wakers their callbacks use.
    members: Box<[Member<Handle>]>,
    size: u64,
    max_chunk: u64,
    align: u64,
    split_threshold: u64,
    /// Round-robin start for choosing among equally loaded connections.
    next: AtomicUsize,
    /// The error of the first connection that died.
    fatal: OnceLock<Error>,
    writes: Mutex<WriteEpochs>,
    writes_done: Condvar,
    /// Eventfds for threads waiting for split requests, reused.
    wakers: Mutex<Vec<Arc<Waker>>>,
}

impl std::fmt::Debug for MultiConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiConn")
            .field("connections", &self.members.len())
            .field("size", &self.size)
            .field("max_chunk", &self.max_chunk)
            .field("split_threshold", &self.split_threshold)
            .finish_non_exhaustive()
    }
}

/// An asynchronous command of a [`MultiConn`]: the connection it went to
/// and its cookie there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MultiCookie {
    /// The connection's index, as for [`MultiConn::handle`].
    pub connection: usize,
    /// The command's cookie on that connection.
    pub cookie: u64,
}

/// Which way a split request moves data.
#[derive(Clone, Copy)]
enum Dir {
    Read(*mut u8),
    Write(*const u8),
}

impl MultiConn {
    /// A builder with the defaults: [`DEFAULT_CONNECTIONS`] connections,
    /// [`DEFAULT_MAX_CHUNK`], [`DEFAULT_SPLIT_THRESHOLD`].
    pub fn builder() -> MultiConnBuilder {
        MultiConnBuilder::default()
    }

    /// Opens up to `connections` connections made by `connect` (see
    /// [`MultiConnBuilder::connect`]) with the default splitting.
    pub fn connect<F>(connections: usize, connect: F) -> Result<MultiConn>
    where
        F: FnMut(usize) -> Result<Handle>,
    {
        MultiConn::builder()
            .connections(connections)
            .connect(connect)
    }

    /// Opens up to `connections` connections to the NBD URI `uri`.
    pub fn connect_uri(connections: usize, uri: &str) -> Result<MultiConn> {
        MultiConn::builder()
            .connections(connections)
            .connect_uri(uri)
    }

    /// How many connections are open: as many as asked for if the server
    /// advertises multi-conn, else 1.
    pub fn connections(&self) -> usize {
        self.members.len()
    }

    /// Connection `i` (0-based), for queries (meta contexts, statistics).
    /// Commands issued directly on it bypass the pool: [`MultiConn::flush`]
    /// does not wait for them.
    pub fn handle(&self, i: usize) -> Option<&Handle> {
        self.members.get(i).map(|m| &m.handle)
    }

    /// The largest chunk split reads and writes are cut into.
    pub fn max_chunk(&self) -> u64 {
        self.max_chunk
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The export is read-only.
    pub fn is_read_only(&self) -> Result<bool> {
        self.members[0].handle.is_read_only()
    }
    /// The server supports flush.
    pub fn can_flush(&self) -> Result<bool> {
        self.members[0].handle.can_flush()
    }
    /// The server supports the FUA flag.
    pub fn can_fua(&self) -> Result<bool> {
        self.members[0].handle.can_fua()
    }
    /// The server supports trim.
    pub fn can_trim(&self) -> Result<bool> {
        self.members[0].handle.can_trim()
    }
    /// The server supports write-zeroes.
    pub fn can_zero(&self) -> Result<bool> {
        self.members[0].handle.can_zero()
    }
    /// The server supports cache (prefetch).
    pub fn can_cache(&self) -> Result<bool> {
        self.members[0].handle.can_cache()
    }
    /// The server advertises multi-conn (so more than one connection may
    /// have been opened).
    pub fn can_multi_conn(&self) -> Result<bool> {
        self.members[0].handle.can_multi_conn()
    }

    /// The error of the connection that died, if one has: every call fails
    /// with it.
    pub fn fatal_error(&self) -> Option<&Error> {
        self.fatal.get()
    }

    /// Reads `buf.len()` bytes at `offset` (flags as [`Handle::pread`]).
    /// A large read is split over all connections.
    pub fn pread(&self, buf: &mut [u8], offset: u64, flags: crate::CmdFlag) -> Result<()> {
        if self.should_split(buf.len()) {
            self.check_fatal()?;
            check_bounds(offset, buf.len() as u64, self.size, libc::EINVAL)?;
            return self.split(Dir::Read(buf.as_mut_ptr()), buf.len(), offset, flags);
        }
        self.on_one(|h| h.pread(buf, offset, flags))
    }

    /// Writes `buf` at `offset` (flags as [`Handle::pwrite`]: FUA applies
    /// to each chunk). A large write is split over all connections; the
    /// call returns once every chunk is written.
    pub fn pwrite(&self, buf: &[u8], offset: u64, flags: crate::CmdFlag) -> Result<()> {
        let epoch = self.write_begin()?;
        let r = if self.should_split(buf.len()) {
            self.check_fatal()
                .and_then(|()| check_bounds(offset, buf.len() as u64, self.size, libc::ENOSPC))
                .and_then(|()| self.split(Dir::Write(buf.as_ptr()), buf.len(), offset, flags))
        } else {
            self.on_one(|h| h.pwrite(buf, offset, flags))
        };
        self.write_end(epoch);
        r
    }

    /// Makes durable every write that had finished before this call, and
    /// every write of the pool still in flight when it was made: waits for
    /// those, then sends one `NBD_CMD_FLUSH` on one connection, which with
    /// multi-conn covers writes completed on all connections.
    pub fn flush(&self, flags: crate::CmdFlag) -> Result<()> {
        self.check_fatal()?;
        self.wait_for_earlier_writes()?;
        self.on_one(|h| h.flush(flags))
    }

    /// Trims `count` bytes at `offset`, on one connection ([`Handle::trim`]).
    pub fn trim(&self, count: u64, offset: u64, flags: crate::CmdFlag) -> Result<()> {
        let epoch = self.write_begin()?;
        let r = self.on_one(|h| h.trim(count, offset, flags));
        self.write_end(epoch);
        r
    }

    /// Writes `count` zero bytes at `offset`, on one connection
    /// ([`Handle::zero`]).
    pub fn zero(&self, count: u64, offset: u64, flags: crate::CmdFlag) -> Result<()> {
        let epoch = self.write_begin()?;
        let r = self.on_one(|h| h.zero(count, offset, flags));
        self.write_end(epoch);
        r
    }

    /// Asks the server to prefetch `count` bytes at `offset`, on one
    /// connection ([`Handle::cache`]).
    pub fn cache(&self, count: u64, offset: u64, flags: crate::CmdFlag) -> Result<()> {
        self.on_one(|h| h.cache(count, offset, flags))
    }

    /// Block status of `count` bytes at `offset`, asked on one connection
    /// ([`Handle::block_status_64`]); the meta contexts are those the
    /// connect function asked for.
    pub fn block_status_64(
        &self,
        count: u64,
        offset: u64,
        extent: Extent64Cb,
        flags: crate::CmdFlag,
    ) -> Result<()> {
        self.on_one(|h| h.block_status_64(count, offset, extent, flags))
    }

    /// Shuts every connection down cleanly ([`Handle::shutdown`]), after
    /// the commands already issued; returns the first error. Calls made
    /// afterwards fail as on a closed handle.
    pub fn shutdown(&self, flags: crate::Shutdown) -> Result<()> {
        let mut first = None;
        for m in self.members.iter() {
            if let Err(e) = m.handle.shutdown(flags) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Closes every connection. Dropping does the same.
    pub fn close(self) {}

    // ---- asynchronous commands ------------------------------------------

    /// Starts reading `count` bytes at `offset` into `buf` on one
    /// connection (round-robin); returns which connection and the cookie.
    /// Not split: `count` must fit one command. Completion and retirement
    /// work as on a [`Handle`]; drive the connections with
    /// [`MultiConn::poll`] (or each [`Handle`] from [`MultiConn::handle`]).
    ///
    /// # Safety
    /// As for [`Handle::aio_pread`]: `buf` must stay valid for writes of
    /// `count` bytes until the command is retired or the pool is closed.
    pub unsafe fn aio_pread(
        &self,
        buf: *mut u8,
        count: usize,
        offset: u64,
        completion: Option<Completion>,
        flags: crate::CmdFlag,
    ) -> Result<MultiCookie> {
        // SAFETY: our caller promises what Handle::aio_pread asks: buf is
        // valid for writes of count bytes until the command is retired or
        // the handle (owned by the pool) is closed.
        self.aio_on_one(|h| unsafe { h.aio_pread(buf, count, offset, completion, flags) })
    }

    /// Starts writing `count` bytes from `buf` at `offset` on one
    /// connection (round-robin). [`MultiConn::flush`] does not wait for
    /// asynchronous writes: issue a flush once the writes it must cover
    /// have completed, as the NBD spec asks.
    ///
    /// # Safety
    /// As for [`Handle::aio_pwrite`]: `buf` must stay valid for reads of
    /// `count` bytes until the command is retired or the pool is closed.
    pub unsafe fn aio_pwrite(
        &self,
        buf: *const u8,
        count: usize,
        offset: u64,
        completion: Option<Completion>,
        flags: crate::CmdFlag,
    ) -> Result<MultiCookie> {
        // SAFETY: our caller promises what Handle::aio_pwrite asks: buf is
        // valid for reads of count bytes until the command is retired or
        // the handle (owned by the pool) is closed.
        self.aio_on_one(|h| unsafe { h.aio_pwrite(buf, count, offset, completion, flags) })
    }

    /// Starts a flush on one connection: with multi-conn it covers every
    /// write completed, on any connection, before it was issued.
    pub fn aio_flush(
        &self,
        completion: Option<Completion>,
        flags: crate::CmdFlag,
    ) -> Result<MultiCookie> {
        self.aio_on_one(|h| h.aio_flush(completion, flags))
    }

    /// Starts a trim on one connection.
    pub fn aio_trim(
        &self,
        count: u64,
        offset: u64,
        completion: Option<Completion>,
        flags: crate::CmdFlag,
    ) -> Result<MultiCookie> {
        self.aio_on_one(|h| h.aio_trim(count, offset, completion, flags))
    }

    /// Starts a write-zeroes request on one connection.
    pub fn aio_zero(
        &self,
        count: u64,
        offset: u64,
        completion: Option<Completion>,
        flags: crate::CmdFlag,
    ) -> Result<MultiCookie> {
        self.aio_on_one(|h| h.aio_zero(count, offset, completion, flags))
    }

    /// Retires `cookie`'s command if it has finished ([`Handle::aio_command_completed`]).
    pub fn aio_command_completed(&self, cookie: MultiCookie) -> Result<bool> {
        let m = self.members.get(cookie.connection).ok_or_else(|| {
            Error::new(
                libc::EINVAL,
                format!("invalid connection {}", cookie.connection),
            )
        })?;
        m.handle
            .aio_command_completed(cookie.cookie as i64)
            .map_err(|e| self.note_failure(&m.handle, e))
    }

    /// Commands queued or awaiting replies, on all connections together.
    pub fn aio_in_flight(&self) -> Result<usize> {
        let mut n = 0;
        for m in self.members.iter() {
            n += m.handle.aio_in_flight()? as usize;
        }
        Ok(n)
    }

    /// Waits up to `timeout_ms` (-1: forever) for any connection's socket,
    /// then runs the machines of those that are ready. Returns 1 if any
    /// ran, 0 on timeout; a connection's error (it is then dead, and the
    /// pool fails from now on).
    pub fn poll(&self, timeout_ms: i32) -> Result<i32> {
        loop {
            return match self.poll_and_run(None, timeout_ms) {
                Ok((0, _)) => Ok(0),
                Ok((_, None)) => Ok(1),
                Ok((_, Some(e))) => Err(self.dead_error(e)),
                Err(Errno::EINTR) => continue,
                Err(Errno::EINVAL) => Err(Error::new(
                    libc::EINVAL,
                    "no connection has anything to poll for",
                )),
                Err(e) => Err(Error::new(e as i32, "poll")),
            };
        }
    }

    // ---- internals -------------------------------------------------------

    fn should_split(&self, len: usize) -> bool {
        let len = len as u64;
        len > self.max_chunk || (self.members.len() > 1 && len >= self.split_threshold)
    }

    fn check_fatal(&self) -> Result<()> {
        match self.fatal.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Runs one synchronous call on one connection.
    fn on_one<T>(&self, f: impl FnOnce(&Handle) -> Result<T>) -> Result<T> {
        self.check_fatal()?;
        let m = least_loaded(&self.members, &self.next);
        let load = m.count();
        let r = f(&m.handle);
        drop(load);
        r.map_err(|e| self.note_failure(&m.handle, e))
    }

    /// Starts one asynchronous command on the next connection, round-robin.
    fn aio_on_one(&self, f: impl FnOnce(&Handle) -> Result<u64>) -> Result<MultiCookie> {
        self.check_fatal()?;
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        let h = &self.members[k].handle;
        match f(h) {
            Ok(cookie) => Ok(MultiCookie {
                connection: k,
                cookie,
            }),
            Err(e) => Err(self.note_failure(h, e)),
        }
    }

    /// `e` came from driving the connections: the error of a connection
    /// that died, recorded as the pool's, or `e` itself.
    fn dead_error(&self, e: Error) -> Error {
        for m in self.members.iter() {
            if gone(&m.handle) {
                return self.note_failure(&m.handle, e);
            }
        }
        e
    }

    /// After a call on `h` failed with `e`: if `h` is dead, its error
    /// becomes the pool's and is returned; else `e` is.
    fn note_failure(&self, h: &Handle, e: Error) -> Error {
        pool_failure(&self.fatal, h, e)
    }

    /// If a connection died, that error; else the first command error.
    fn batch_error(&self, errno: i32, what: &str, conn_err: Option<Error>) -> Result<()> {
        for m in self.members.iter() {
            if gone(&m.handle) {
                let e = conn_err.unwrap_or_else(|| Error::new(errno, "connection is dead"));
                return Err(self.note_failure(&m.handle, e));
            }
        }
        match (errno, conn_err) {
            (0, None) => Ok(()),
            (0, Some(e)) => Err(e),
            (errno, _) => Err(Error::new(errno, format!("{what}: command failed"))),
        }
    }

    fn write_begin(&self) -> Result<usize> {
        let mut w = self.lock_writes()?;
        let slot = (w.current & 1) as usize;
        w.open[slot] += 1;
        Ok(slot)
    }

    fn write_end(&self, slot: usize) {
        let Ok(mut w) = self.lock_writes() else {
            // The pool is dead: wake a flush waiting for this write, so
            // that it sees that too.
            self.writes_done.notify_all();
            return;
        };
        w.open[slot] -= 1;
        if w.open[slot] == 0 {
            self.writes_done.notify_all();
        }
    }

    /// Waits until every write started before now has finished.
    fn wait_for_earlier_writes(&self) -> Result<()> {
        let mut w = self.lock_writes()?;
        // Writes of older epochs (in the other slot) first: once they are
        // gone that slot can take the writes that start from now on.
        let older = ((w.current + 1) & 1) as usize;
        while w.open[older] != 0 {
            w = self.wait_writes(w)?;
        }
        let slot = (w.current & 1) as usize;
        w.current += 1;
        while w.open[slot] != 0 {
            w = self.wait_writes(w)?;
        }
        Ok(())
    }

    fn lock_writes(&self) -> Result<MutexGuard<'_, WriteEpochs>> {
        self.writes.lock().map_err(|p| self.poisoned(p))
    }

    fn wait_writes<'a>(
        &self,
        w: MutexGuard<'a, WriteEpochs>,
    ) -> Result<MutexGuard<'a, WriteEpochs>> {
        self.writes_done.wait(w).map_err(|p| self.poisoned(p))
    }

    /// Fail closed: a lock poisoned by a panic (in another thread's call)
    /// kills the pool, as it kills a [`Handle`]: this call and every later
    /// one fail with [`MultiConn::fatal_error`].
    fn poisoned<T>(&self, _: PoisonError<T>) -> Error {
        self.fatal.get_or_init(dead_after_panic).clone()
    }

    fn take_waker(&self) -> Result<Arc<Waker>> {
        if let Some(w) = self.wakers.lock().map_err(|p| self.poisoned(p))?.pop() {
            return Ok(w);
        }
        Waker::new().map(Arc::new)
    }

    fn put_waker(&self, w: Arc<Waker>) {
        if let Ok(mut wakers) = self.wakers.lock() {
            wakers.push(w);
        }
    }

    /// Reads or writes `len` bytes at `ptr` in chunks spread over every
    /// connection, then waits for all of them.
    fn split(&self, dir: Dir, len: usize, offset: u64, flags: crate::CmdFlag) -> Result<()> {
        let n = self.members.len();
        // Chunks as even as the alignment allows, at most max_chunk.
        let per = (len as u64).div_ceil(n as u64).div_ceil(self.align) * self.align;
        let chunk = per.clamp(self.align, self.max_chunk) as usize;
        let waker = self.take_waker()?;
        let batch = Arc::new(Batch {
            remaining: AtomicUsize::new(1),
            errno: AtomicI32::new(0),
            owner: std::thread::current().id(),
            waker: Arc::clone(&waker),
        });
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Commands issued below point into the caller's buffer until they
        // complete: unwinding past them would leave them dangling, so a
        // panic before the wait is over aborts.
        let guard = AbortOnUnwind;
        let mut issued = [0usize; MAX_CONNECTIONS];
        let mut issue_err = None;
        let mut pos = 0;
        let mut i = 0;
        while pos < len {
            let this = chunk.min(len - pos);
            let k = (start + i) % n;
            let h = &self.members[k].handle;
            batch.remaining.fetch_add(1, Ordering::Relaxed);
            let done = batch_done(Arc::clone(&batch));
            let at = offset + pos as u64;
            // SAFETY: the chunk lies inside the caller's buffer, which is
            // borrowed until we return, after every command has completed.
            let r = unsafe {
                match dir {
                    Dir::Read(p) => h.aio_pread(p.add(pos), this, at, Some(done), flags),
                    Dir::Write(p) => h.aio_pwrite(p.add(pos), this, at, Some(done), flags),
                }
            };
            match r {
                Ok(_) => issued[k] += 1,
                Err(e) => {
                    // Never issued: the callback will not run.
                    batch.remaining.fetch_sub(1, Ordering::Relaxed);
                    issue_err = Some(self.note_failure(h, e));
                    break;
                }
            }
            pos += this;
            i += 1;
        }
        for (m, &c) in self.members.iter().zip(issued.iter()) {
            m.load.fetch_add(c, Ordering::Relaxed);
        }
        // Issuing is over.
        batch.remaining.fetch_sub(1, Ordering::AcqRel);
        let conn_err = self.wait_batch(&batch, &waker);
        std::mem::forget(guard);
        for (m, &c) in self.members.iter().zip(issued.iter()) {
            m.load.fetch_sub(c, Ordering::Relaxed);
        }
        self.put_waker(waker);
        if let Some(e) = issue_err {
            return Err(e);
        }
        let what = match dir {
            Dir::Read(_) => "read",
            Dir::Write(_) => "write",
        };
        self.batch_error(batch.errno.load(Ordering::Acquire), what, conn_err)
    }

    /// Drives every connection until all of `batch`'s commands are done.
    /// Never returns earlier: the commands point into the caller's buffer.
    /// Returns the first error a connection reported while being driven.
    fn wait_batch(&self, batch: &Batch, waker: &Waker) -> Option<Error> {
        let mut conn_err = None;
        loop {
            if batch.remaining.load(Ordering::Acquire) == 0 {
                return conn_err;
            }
            match self.poll_and_run(Some(waker), -1) {
                Ok((_, Some(e))) => {
                    conn_err.get_or_insert(e);
                }
                Ok((_, None)) | Err(Errno::EINTR) => {}
                Err(_) => {
                    // Cannot wait (ENOMEM...): the commands still point
                    // into the caller's buffer, so keep trying, gently.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    for m in self.members.iter() {
                        let _ = m.handle.aio_run();
                    }
                }
            }
        }
    }

    /// Polls every connection's socket in the direction its machine waits
    /// for, and `waker` (an eventfd, drained when readable) for reading,
    /// up to `timeout`; then runs the machine of each ready connection.
    /// Returns how many fds were ready and the first error a machine
    /// reported; EINVAL if there was nothing at all to poll.
    fn poll_and_run(
        &self,
        waker: Option<&Waker>,
        timeout_ms: i32,
    ) -> std::result::Result<(usize, Option<Error>), Errno> {
        let mut which = [0usize; MAX_CONNECTIONS];
        let mut pollfds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_CONNECTIONS + 1];
        let mut nfds = 0;
        for (k, m) in self.members.iter().enumerate() {
            let Ok(fd) = m.handle.aio_get_fd() else {
                continue;
            };
            let dir = m.handle.aio_get_direction().bits();
            let mut events = 0;
            if dir & LIBNBD_AIO_DIRECTION_READ != 0 {
                events |= libc::POLLIN;
            }
            if dir & LIBNBD_AIO_DIRECTION_WRITE != 0 {
                events |= libc::POLLOUT;
            }
            if events == 0 {
                continue;
            }
            pollfds[nfds].fd = fd;
            pollfds[nfds].events = events;
            which[nfds] = k;
            nfds += 1;
        }
        let conns = nfds;
        if let Some(w) = waker {
            pollfds[nfds].fd = w.as_fd().as_raw_fd();
            pollfds[nfds].events = libc::POLLIN;
            nfds += 1;
        }
        if nfds == 0 {
            return Err(Errno::EINVAL);
        }
        // The connections' fds are raw numbers, not borrowed: another
        // thread may close one meanwhile (its connection dies). poll then
        // reports POLLNVAL or a spurious event, and running the dead
        // handle returns its error; nothing else is done with the fd.
        // SAFETY: pollfds holds at least nfds initialized pollfds; poll
        // reads their fds and events and writes their revents, nothing else.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), nfds as libc::nfds_t, timeout_ms) };
        let ready = Errno::result(rc)?;
        if ready == 0 {
            return Ok((0, None));
        }
        if let Some(w) = waker.filter(|_| pollfds[conns].revents != 0) {
            w.drain();
        }
        let mut first_err = None;
        for (pfd, &k) in pollfds[..conns].iter().zip(which.iter()) {
            if pfd.revents == 0 {
                continue;
            }
            // Another thread may have moved this machine on since its
            // direction was read: run it whichever way it now waits.
            if let Err(e) = self.members[k].handle.aio_run() {
                first_err.get_or_insert(e);
            }
        }
        Ok((ready as usize, first_err))
    }
}

/// Aborts the process if dropped while unwinding (see [`MultiConn::split`]).
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::process::abort();
        }
    }
}

/// The chunks of one split request, shared with their completion callbacks.
struct Batch {
    /// Commands not yet completed, plus one while they are being issued.
    remaining: AtomicUsize,
    /// The first command error (errno), 0 if none.
    errno: AtomicI32,
    /// The waiting thread.
    owner: ThreadId,
    /// Its waker. Once the batch is over the waker goes back to the pool,
    /// so a late wake may reach another waiter, which then wakes once for
    /// nothing.
    waker: Arc<Waker>,
}

/// The completion callback of one chunk of `batch`: records its error,
/// wakes the waiter if another thread completed it, and retires the
/// command (returns 1).
fn batch_done(batch: Arc<Batch>) -> Completion {
    Completion::new(move |error| {
        if *error != 0 {
            let _ = batch
                .errno
                .compare_exchange(0, *error, Ordering::AcqRel, Ordering::Relaxed);
        }
        let other_thread = batch.owner != std::thread::current().id();
        // The waiter may return once it sees 0 (the callback keeps the
        // batch, and so the waker, alive).
        batch.remaining.fetch_sub(1, Ordering::AcqRel);
        if other_thread {
            batch.waker.wake();
        }
        1
    })
}

/// The error of a pool killed after a panic (see [`MultiConn::poisoned`]).
fn dead_after_panic() -> Error {
    Error::new(
        libc::EINVAL,
        "multi-conn pool is dead after an internal error",
    )
}

/// libnbd's bounds check for a request, done up front so that a split
/// request is refused whole rather than after some chunks went out.
fn check_bounds(offset: u64, count: u64, size: u64, errno: i32) -> Result<()> {
    if offset > size || count > size - offset {
        return Err(Error::new(errno, "request out of bounds"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn multiconn_is_send_and_sync() {
        assert_send_sync::<MultiConn>();
    }

    /// A pool over one handle that is not connected.
    fn unconnected_pool() -> MultiConn {
        MultiConn {
            members: Box::new([Member::new(Handle::new().unwrap())]),
            size: 1 << 20,
            max_chunk: DEFAULT_MAX_CHUNK,
            align: CHUNK_ALIGN,
            split_threshold: DEFAULT_SPLIT_THRESHOLD,
            next: AtomicUsize::new(0),
            fatal: OnceLock::new(),
            writes: Mutex::new(WriteEpochs::default()),
            writes_done: Condvar::new(),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Fail closed: a panic while the pool's lock was held kills the pool;
    /// the next calls fail with a clear error instead of going on with
    /// counts that may be wrong.
    #[test]
    fn poisoned_lock_kills_the_pool() {
        let pool = unconnected_pool();
        assert!(pool.fatal_error().is_none());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _w = pool.writes.lock().unwrap();
            panic!("bug while locked");
        }));
        assert!(r.is_err());
        let err = pool.flush(crate::CmdFlag::empty()).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert!(err.to_string().contains("dead after an internal error"));
        let err = pool
            .pwrite(&[0; 512], 0, crate::CmdFlag::empty())
            .unwrap_err();
        assert!(err.to_string().contains("dead after an internal error"));
        let err = pool
            .pread(&mut [0; 512], 0, crate::CmdFlag::empty())
            .unwrap_err();
        assert!(err.to_string().contains("dead after an internal error"));
        assert!(pool.fatal_error().is_some());
    }
}
