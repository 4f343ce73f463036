//! Driving the state machine from the caller's own event loop, and
//! collecting finished asynchronous commands.

use std::os::fd::RawFd;

use super::commands::command_result;
use super::{poll_with, Handle};
use crate::conn::{Perm, DIRECTION_READ, DIRECTION_WRITE};
use crate::{Direction, Error, Result};

impl Handle {
    /// The socket to poll, for callers with their own event loop.
    ///
    /// libnbd: `nbd_aio_get_fd`.
    pub fn aio_get_fd(&self) -> Result<RawFd> {
        self.lock()
            .fd()
            .ok_or_else(|| Error::new(libc::EINVAL, "connection is not in a connected state"))
    }

    /// What the machine waits for: a mask of `LIBNBD_AIO_DIRECTION_READ`
    /// and `LIBNBD_AIO_DIRECTION_WRITE`.
    ///
    /// libnbd: `nbd_aio_get_direction`.
    pub fn aio_get_direction(&self) -> Direction {
        Direction::from_bits_retain(self.lock().direction())
    }

    /// Tells the machine the socket is readable; it handles at most one
    /// reply. Fails with EINVAL if the machine is not waiting to read.
    ///
    /// libnbd: `nbd_aio_notify_read`.
    pub fn aio_notify_read(&self) -> Result<()> {
        let mut c = self.lock();
        c.check_notify(DIRECTION_READ)?;
        c.progress_one()
    }

    /// Tells the machine the socket is writable; it does what it can.
    /// Fails with EINVAL if the machine has nothing to write.
    ///
    /// libnbd: `nbd_aio_notify_write`.
    pub fn aio_notify_write(&self) -> Result<()> {
        let mut c = self.lock();
        c.check_notify(DIRECTION_WRITE)?;
        c.progress_one()
    }

    /// Runs the machine as far as it goes without waiting, whichever way
    /// the socket is ready, handling every reply already there (beyond
    /// libnbd: for programs that drive several handles from one poll loop
    /// and threads, where another thread may have moved the machine on
    /// since the direction was read). Unlike the notify calls it never
    /// fails for being called at the wrong moment; it fails with the
    /// connection's error once the connection has died.
    ///
    /// Beyond libnbd; in C: `rnbd_aio_run`.
    pub fn aio_run(&self) -> Result<()> {
        self.lock().progress()
    }

    /// The error that killed the connection, once the handle is dead
    /// (beyond libnbd); `None` while it is alive.
    pub fn fatal_error(&self) -> Option<Error> {
        self.lock().fatal_error()
    }

    /// Waits up to `timeout_ms` (-1: forever) for the socket, then runs the
    /// machine, handling at most one reply. Returns 1 if it ran, 0 on
    /// timeout.
    ///
    /// libnbd: `nbd_poll`.
    pub fn poll(&self, timeout_ms: i32) -> Result<i32> {
        self.poll_inner(None, timeout_ms)
    }

    /// As [`Handle::poll`], also waking when `fd` becomes readable.
    ///
    /// libnbd: `nbd_poll2`.
    pub fn poll2(&self, fd: RawFd, timeout_ms: i32) -> Result<i32> {
        self.poll_inner(Some(fd), timeout_ms)
    }

    fn poll_inner(&self, extra: Option<RawFd>, timeout_ms: i32) -> Result<i32> {
        let mut c = self.lock();
        // Under load the next reply is usually there already: the socket
        // was not found empty last time. Then try it before polling; one
        // reply per call all the same.
        if c.reply_may_be_waiting() {
            c.progress_one()?;
            if c.handled_reply() {
                return Ok(1);
            }
        }
        if !poll_with(&c, extra, timeout_ms)? {
            return Ok(0);
        }
        c.progress_one()?;
        Ok(1)
    }

    /// Retires command `cookie` if it has finished: `Ok(true)` if it
    /// succeeded, its error if it failed, `Ok(false)` if it is still running.
    ///
    /// libnbd: `nbd_aio_command_completed`.
    pub fn aio_command_completed(&self, cookie: i64) -> Result<bool> {
        if cookie < 1 {
            return Err(Error::new(
                libc::EINVAL,
                format!("invalid aio cookie {cookie}"),
            ));
        }
        let mut c = self.lock();
        let Some(id) = c.command_of_cookie(cookie as u64) else {
            return Ok(false);
        };
        match c.retire(id) {
            None => Ok(false),
            Some((kind, errno)) => command_result(kind, errno).map(|()| true),
        }
    }

    /// The cookie of a finished command not yet retired; 0 if commands are
    /// still running but none has finished.
    ///
    /// libnbd: `nbd_aio_peek_command_completed`.
    pub fn aio_peek_command_completed(&self) -> Result<i64> {
        let c = self.lock();
        if let Some(id) = c.first_done() {
            return Ok(c.cookie(id) as i64);
        }
        if c.pending() > 0 {
            return Ok(0);
        }
        Err(Error::new(libc::EINVAL, "no commands are in flight"))
    }

    /// How many commands are queued or awaiting replies.
    ///
    /// libnbd: `nbd_aio_in_flight`.
    pub fn aio_in_flight(&self) -> Result<i32> {
        let c = self.lock();
        c.check_state(&[Perm::Connected, Perm::Closed, Perm::Dead])?;
        Ok(c.pending() as i32)
    }
}
