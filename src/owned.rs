//! Safe asynchronous reads and writes with owned buffers on [`Handle`]:
//! the command owns its `Vec<u8>` until it completes, then gives it back.
#![warn(missing_docs)]

use std::sync::{Arc, Mutex};

use crate::callback::Completion;
use crate::flags::CmdFlag;
use crate::{Error, Handle, Result};

type Outcome = Arc<Mutex<Option<(i32, Vec<u8>)>>>;

/// A read or write started by [`Handle::aio_pread_owned`] or
/// [`Handle::aio_pwrite_owned`]. It retires itself when it completes
/// (so [`Handle::aio_command_completed`] does not report it): run the
/// handle ([`Handle::poll`], [`Handle::aio_run`]...) until
/// [`OwnedCommand::is_done`], then [`OwnedCommand::take`] the buffer.
///
/// Dropping it early is safe: the command keeps the buffer until its
/// reply arrives (or the handle closes), then frees it.
#[derive(Debug)]
pub struct OwnedCommand {
    cookie: u64,
    outcome: Outcome,
}

impl OwnedCommand {
    /// The command's cookie.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// Whether the command has completed (successfully or not).
    pub fn is_done(&self) -> bool {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The buffer back (read data for a read), or the command's error;
    /// `None` while it is still in flight (then the command is kept).
    pub fn take(self) -> std::result::Result<Result<Vec<u8>>, OwnedCommand> {
        let done = self
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match done {
            Some((0, buf)) => Ok(Ok(buf)),
            Some((errno, _)) => Ok(Err(Error::new(errno, "command failed"))),
            None => Err(self),
        }
    }
}

/// An outcome and the `done` callback that fills it.
fn outcome() -> (Outcome, impl FnOnce(i32, Vec<u8>) + Send + 'static) {
    let outcome: Outcome = Arc::new(Mutex::new(None));
    let out = Arc::clone(&outcome);
    let done = move |errno, buf| {
        *out.lock().unwrap_or_else(|p| p.into_inner()) = Some((errno, buf));
    };
    (outcome, done)
}

/// A completion callback that owns `buf` until it runs, then gives it to
/// `done` with the command's errno, and retires the command.
fn owning(buf: Vec<u8>, done: impl FnOnce(i32, Vec<u8>) + Send + 'static) -> Completion {
    let mut state = Some((buf, done));
    Completion::new(move |errno| {
        if let Some((buf, done)) = state.take() {
            done(*errno, buf);
        }
        1
    })
}

impl Handle {
    /// Starts reading `buf.len()` bytes at `offset` into `buf`, which the
    /// command owns until it completes; then `done` gets the command's
    /// errno (0: success) and the buffer. Returns the cookie.
    pub(crate) fn aio_pread_vec(
        &self,
        mut buf: Vec<u8>,
        offset: u64,
        flags: CmdFlag,
        done: impl FnOnce(i32, Vec<u8>) + Send + 'static,
    ) -> Result<u64> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: the Vec's heap memory stays put while the completion
        // owns the Vec (moving a Vec does not move its buffer), and the
        // command keeps the completion until it has run (after the reply)
        // or the handle is closed; if issuing fails it is dropped unused.
        unsafe { self.aio_pread(ptr, len, offset, Some(owning(buf, done)), flags) }
    }

    /// As [`Handle::aio_pread_vec`], writing `buf` at `offset`.
    pub(crate) fn aio_pwrite_vec(
        &self,
        buf: Vec<u8>,
        offset: u64,
        flags: CmdFlag,
        done: impl FnOnce(i32, Vec<u8>) + Send + 'static,
    ) -> Result<u64> {
        let (ptr, len) = (buf.as_ptr(), buf.len());
        // SAFETY: as in aio_pread_vec, for reads of the buffer.
        unsafe { self.aio_pwrite(ptr, len, offset, Some(owning(buf, done)), flags) }
    }
}

impl Handle {
    /// Starts reading `buf.len()` bytes at `offset` into `buf`, which the
    /// command owns until it completes (`nbd_aio_pread`, safe form).
    ///
    /// ```no_run
    /// let h = nbd::Handle::new()?;
    /// h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])?;
    /// let mut cmd = h.aio_pread_owned(vec![0; 512], 0, nbd::CmdFlag::empty())?;
    /// let buf = loop {
    ///     match cmd.take() {
    ///         Ok(r) => break r?,
    ///         Err(pending) => cmd = pending,
    ///     }
    ///     h.poll(-1)?;
    /// };
    /// assert_eq!(buf.len(), 512);
    /// # Ok::<(), nbd::Error>(())
    /// ```
    pub fn aio_pread_owned(
        &self,
        buf: Vec<u8>,
        offset: u64,
        flags: CmdFlag,
    ) -> Result<OwnedCommand> {
        let (outcome, done) = outcome();
        let cookie = self.aio_pread_vec(buf, offset, flags, done)?;
        Ok(OwnedCommand { cookie, outcome })
    }

    /// Starts writing `buf` at `offset`; the command owns `buf` until it
    /// completes (`nbd_aio_pwrite`, safe form).
    pub fn aio_pwrite_owned(
        &self,
        buf: Vec<u8>,
        offset: u64,
        flags: CmdFlag,
    ) -> Result<OwnedCommand> {
        let (outcome, done) = outcome();
        let cookie = self.aio_pwrite_vec(buf, offset, flags, done)?;
        Ok(OwnedCommand { cookie, outcome })
    }
}
