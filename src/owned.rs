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

fn completion(buf: Vec<u8>) -> (Completion, Outcome) {
    let outcome: Outcome = Arc::new(Mutex::new(None));
    let out = Arc::clone(&outcome);
    let mut buf = Some(buf);
    let c = Completion::new(move |errno| {
        let b = buf.take().unwrap_or_default();
        *out.lock().unwrap_or_else(|p| p.into_inner()) = Some((*errno, b));
        1
    });
    (c, outcome)
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
        mut buf: Vec<u8>,
        offset: u64,
        flags: CmdFlag,
    ) -> Result<OwnedCommand> {
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        let (c, outcome) = completion(buf);
        // SAFETY: the Vec's heap memory stays put while the completion
        // callback owns the Vec, and the command keeps the callback until
        // it is retired (after the callback ran) or the handle is closed.
        let cookie = unsafe { self.aio_pread(ptr, len, offset, Some(c), flags) }?;
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
        let (ptr, len) = (buf.as_ptr(), buf.len());
        let (c, outcome) = completion(buf);
        // SAFETY: as in aio_pread_owned, for reads.
        let cookie = unsafe { self.aio_pwrite(ptr, len, offset, Some(c), flags) }?;
        Ok(OwnedCommand { cookie, outcome })
    }
}
