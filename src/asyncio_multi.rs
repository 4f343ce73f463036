//! Multi-connection I/O on tokio: [`AsyncMultiConn`] (cargo feature
//! `tokio`), the asynchronous form of [`MultiConn`](crate::MultiConn).
#![warn(missing_docs)]

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::OnceLock;

use crate::flags::CmdFlag;
use crate::multiconn::{
    check_connections, check_ready, check_same_export, least_loaded, pool_failure, Load, Member,
};
use crate::{AsyncHandle, Error, Result};

/// Several asynchronous connections to one export, used as one handle.
///
/// It holds up to [`MAX_CONNECTIONS`](crate::multiconn::MAX_CONNECTIONS) [`AsyncHandle`]s to one export: as
/// many as asked for when the server advertises multi-conn, else one.
/// Each command goes, whole, to the least-loaded connection (searched from
/// a round-robin start), so the commands of concurrent tasks spread over
/// all connections. Requests are not split: issue several at once (from
/// several tasks, or joined futures) to keep the connections busy.
///
/// [`AsyncMultiConn::flush`] sends one flush, on one connection. With
/// multi-conn, the NBD spec makes it cover every write that had completed,
/// on any connection, before it was sent: as on a single connection,
/// await the writes a flush must cover before calling it.
///
/// As with [`MultiConn`](crate::MultiConn), nothing is retried, and once a
/// connection has died every call fails with its error.
///
/// ```no_run
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
/// # .block_on(async {
/// use nbd::{AsyncMultiConn, CmdFlag};
/// let pool = AsyncMultiConn::connect_uri(4, "nbd+unix:///?socket=/tmp/sock").await?;
/// let (a, b) = tokio::join!(
///     pool.pread(vec![0; 65536], 0, CmdFlag::empty()),
///     pool.pread(vec![0; 65536], 65536, CmdFlag::empty()),
/// );
/// let (a, b) = (a?, b?);
/// # Ok::<(), nbd::Error>(()) }).unwrap();
/// ```
///
/// Like [`AsyncHandle`], use it inside the tokio runtime that connected it;
/// share it between tasks with an `Arc`.
pub struct AsyncMultiConn {
    members: Box<[Member<AsyncHandle>]>,
    size: u64,
    /// Round-robin start for choosing among equally loaded connections.
    next: AtomicUsize,
    /// The error of the first connection that died.
    fatal: OnceLock<Error>,
}

impl std::fmt::Debug for AsyncMultiConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncMultiConn")
            .field("connections", &self.members.len())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AsyncMultiConn {
    /// Opens up to `connections` connections (1 to [`MAX_CONNECTIONS`](crate::multiconn::MAX_CONNECTIONS)):
    /// `connect(i)` must give an [`AsyncHandle`] connected to the export,
    /// for `i` = 0, 1, ... It is called once; then, if that connection's
    /// server advertises multi-conn, once for each further connection
    /// (one after the other). Every connection must reach the same export;
    /// `connect` chooses the transport, TLS and so on.
    ///
    /// Fails with the first error of `connect`, or EINVAL for a bad
    /// connection count or a connection that does not match the first.
    pub async fn connect<F, Fut>(connections: usize, mut connect: F) -> Result<AsyncMultiConn>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<AsyncHandle>>,
    {
        check_connections(connections)?;
        let first = connect(0).await?;
        check_ready(first.handle(), 0)?;
        let want = if first.can_multi_conn()? {
            connections
        } else {
            1
        };
        let size = first.size()?;
        let read_only = first.is_read_only()?;
        let mut members = Vec::with_capacity(want);
        members.push(first);
        for i in 1..want {
            let h = connect(i).await?;
            check_same_export(h.handle(), i, size, read_only)?;
            members.push(h);
        }
        Ok(AsyncMultiConn {
            members: members.into_iter().map(Member::new).collect(),
            size,
            next: AtomicUsize::new(0),
            fatal: OnceLock::new(),
        })
    }

    /// Opens up to `connections` connections to the NBD URI `uri`
    /// ([`AsyncHandle::connect_uri`]).
    pub async fn connect_uri(connections: usize, uri: &str) -> Result<AsyncMultiConn> {
        AsyncMultiConn::connect(connections, |_| async move {
            let h = AsyncHandle::new()?;
            h.connect_uri(uri).await?;
            Ok(h)
        })
        .await
    }

    /// How many connections are open: as many as asked for if the server
    /// advertises multi-conn, else 1.
    pub fn connections(&self) -> usize {
        self.members.len()
    }

    /// Connection `i` (0-based), for queries. Commands issued directly on
    /// it bypass the pool's load balancing.
    pub fn handle(&self, i: usize) -> Option<&AsyncHandle> {
        self.members.get(i).map(|m| &m.handle)
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

    /// The least-loaded connection, searched from a round-robin start,
    /// with the command counted against it.
    fn pick(&self) -> Result<(&AsyncHandle, Load<'_>)> {
        if let Some(e) = self.fatal.get() {
            return Err(e.clone());
        }
        let m = least_loaded(&self.members, &self.next);
        Ok((&m.handle, m.count()))
    }

    /// After a command on `h` failed with `e`: if `h` is dead, its error
    /// becomes the pool's and is returned; else `e` is.
    fn note_failure(&self, h: &AsyncHandle, e: Error) -> Error {
        pool_failure(&self.fatal, h.handle(), e)
    }

    /// Reads `buf.len()` bytes at `offset` into `buf` on one connection and
    /// gives it back ([`AsyncHandle::pread`]).
    pub async fn pread(&self, buf: Vec<u8>, offset: u64, flags: CmdFlag) -> Result<Vec<u8>> {
        let (h, _load) = self.pick()?;
        h.pread(buf, offset, flags)
            .await
            .map_err(|e| self.note_failure(h, e))
    }

    /// Writes `buf` at `offset` on one connection and gives it back
    /// ([`AsyncHandle::pwrite`]).
    pub async fn pwrite(&self, buf: Vec<u8>, offset: u64, flags: CmdFlag) -> Result<Vec<u8>> {
        let (h, _load) = self.pick()?;
        h.pwrite(buf, offset, flags)
            .await
            .map_err(|e| self.note_failure(h, e))
    }

    /// Sends one flush on one connection ([`AsyncHandle::flush`]): with
    /// multi-conn it makes durable every write completed, on any
    /// connection, before it was sent.
    pub async fn flush(&self, flags: CmdFlag) -> Result<()> {
        let (h, _load) = self.pick()?;
        h.flush(flags).await.map_err(|e| self.note_failure(h, e))
    }

    /// Discards `count` bytes at `offset` on one connection
    /// ([`AsyncHandle::trim`]).
    pub async fn trim(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        let (h, _load) = self.pick()?;
        h.trim(count, offset, flags)
            .await
            .map_err(|e| self.note_failure(h, e))
    }

    /// Writes `count` zero bytes at `offset` on one connection
    /// ([`AsyncHandle::zero`]).
    pub async fn zero(&self, count: u64, offset: u64, flags: CmdFlag) -> Result<()> {
        let (h, _load) = self.pick()?;
        h.zero(count, offset, flags)
            .await
            .map_err(|e| self.note_failure(h, e))
    }

    /// Disconnects every connection cleanly ([`AsyncHandle::shutdown`]),
    /// after the commands already issued; returns the first error.
    pub async fn shutdown(&self) -> Result<()> {
        let mut first = None;
        for m in self.members.iter() {
            if let Err(e) = m.handle.shutdown().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
