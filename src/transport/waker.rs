//! [`Waker`]: an eventfd that wakes a thread blocked in `poll` from
//! another thread (or from a callback run on another thread).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// A non-blocking, close-on-exec eventfd: [`Waker::wake`] makes it
/// readable until [`Waker::drain`] is called.
#[derive(Debug)]
pub(crate) struct Waker(EventFd);

impl Waker {
    /// A new waker, not signalled.
    pub(crate) fn new() -> crate::Result<Waker> {
        EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map(Waker)
            .map_err(|e| crate::Error::io("eventfd", &std::io::Error::from(e)))
    }

    /// Makes the waker readable. Cannot fail in a way that matters: a full
    /// counter (EAGAIN) is still readable.
    pub(crate) fn wake(&self) {
        let _ = self.0.write(1);
    }

    /// Makes the waker unreadable again (EAGAIN if it was not signalled,
    /// ignored).
    pub(crate) fn drain(&self) {
        let _ = self.0.read();
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    fn readable(w: &Waker) -> bool {
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn wake_then_drain() {
        let w = Waker::new().unwrap();
        assert!(!readable(&w));
        w.wake();
        w.wake();
        assert!(readable(&w));
        w.drain();
        assert!(!readable(&w));
        // Draining an unsignalled waker does not block.
        w.drain();
        assert!(!readable(&w));
    }
}
