//! When a synchronous call waits for the server: spin briefly, then sleep.
//!
//! A reply from a server on the same machine often comes back in a few
//! tens of microseconds, less than it takes to put a thread to sleep in
//! `poll` and wake it again (on a virtual machine, waking an idle vCPU is
//! a trip through the hypervisor). So a wait first checks the socket
//! without blocking for up to a budget, and sleeps only if nothing came.
//!
//! Spinning buys latency with CPU (1.35-2.2x libnbd's client CPU per
//! 4 KiB operation for 1.22-1.36x its rate, BENCHMARKS.md), the wrong
//! default on a host running many handles or on a laptop, so it is
//! OPT-IN: the budget is 0 (always sleep, as libnbd does) unless
//! `LIBNBD_SPIN_USEC` in the environment or `Handle::set_spin_usec` sets
//! one (50 us, a little more than the round trip of a 4 KiB read to a
//! local nbdkit, suits a server on the same machine).
//!
//! The policy adapts, so slow servers cost little spinning: two spins in a
//! row that end empty-handed turn spinning off (one slow reply among quick
//! ones does not); while off, each wait is timed, and a wait that turned
//! out shorter than the budget turns it back on. A server that is always
//! slow costs two budgets, then one per reply that comes back quick. With
//! one CPU online there is nobody to spin for: the environment's budget is
//! ignored there.

use std::time::{Duration, Instant};

/// A handle's spin-then-sleep policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpinPolicy {
    budget: Duration,
    /// Whether the next wait starts with a spin.
    spin_next: bool,
    /// Spins in a row that ended empty-handed.
    misses: u8,
    /// When a thread last had to wait for another one polling the handle.
    contended_at: Option<Instant>,
}

/// Empty-handed spins in a row that turn spinning off: one reply slower
/// than the budget among quick ones (the server was descheduled, say) does
/// not cost the next, quick one its spin.
const MISSES_TO_STOP: u8 = 2;

/// How long after threads last contended for a handle it does not spin.
const CONTENTION_MEMORY: Duration = Duration::from_millis(100);

impl SpinPolicy {
    /// The policy for a new handle: `LIBNBD_SPIN_USEC` microseconds if
    /// set on a machine with more than one CPU online, else 0 (no
    /// spinning, the default).
    pub(crate) fn from_env() -> SpinPolicy {
        let usec = match std::env::var("LIBNBD_SPIN_USEC") {
            Ok(v) if cpus_online() > 1 => v.trim().parse().unwrap_or(0),
            _ => 0,
        };
        SpinPolicy::new(usec)
    }

    pub(crate) fn new(usec: u32) -> SpinPolicy {
        SpinPolicy {
            budget: Duration::from_micros(usec as u64),
            spin_next: usec > 0,
            misses: 0,
            contended_at: None,
        }
    }

    /// Several threads are using the handle: spinning would take CPU from
    /// them (and from the server) for a while.
    pub(crate) fn note_contention(&mut self) {
        self.contended_at = Some(Instant::now());
    }

    /// Whether threads contended for the handle recently.
    pub(crate) fn contended(&self) -> bool {
        self.contended_at
            .is_some_and(|t| t.elapsed() < CONTENTION_MEMORY)
    }

    /// Takes what a copy learned during a wait, unless the budget was
    /// changed meanwhile.
    pub(crate) fn learn(&mut self, copy: &SpinPolicy) {
        if copy.budget == self.budget {
            self.spin_next = copy.spin_next;
            self.misses = copy.misses;
        }
    }

    /// The budget in microseconds (0: never spin).
    pub(crate) fn usec(&self) -> u32 {
        self.budget.as_micros() as u32
    }

    /// Waits with `poll(timeout_ms)`, which returns whether the socket is
    /// ready: with timeout 0 over and over for up to the budget if the
    /// policy says so, then with -1 (until ready).
    pub(crate) fn wait<E>(
        &mut self,
        mut poll: impl FnMut(i32) -> Result<bool, E>,
    ) -> Result<(), E> {
        if self.budget.is_zero() {
            return poll(-1).map(drop);
        }
        let start = Instant::now();
        if self.spin_next {
            loop {
                if poll(0)? {
                    self.misses = 0;
                    return Ok(());
                }
                std::hint::spin_loop();
                if start.elapsed() >= self.budget {
                    break;
                }
            }
            self.misses += 1;
            self.spin_next = self.misses < MISSES_TO_STOP;
            return poll(-1).map(drop);
        }
        poll(-1)?;
        if start.elapsed() < self.budget {
            self.spin_next = true;
            self.misses = 0;
        }
        Ok(())
    }
}

/// CPUs online, read once per process (glibc reads a file each time).
fn cpus_online() -> i64 {
    use nix::unistd::{sysconf, SysconfVar};
    static CPUS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) => n,
        _ => -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the timeouts asked for; `answer` says what each poll returns.
    fn record(p: &mut SpinPolicy, mut answer: impl FnMut(i32, usize) -> bool) -> Vec<i32> {
        let mut calls = Vec::new();
        p.wait::<()>(|timeout| {
            calls.push(timeout);
            Ok(answer(timeout, calls.len()))
        })
        .unwrap();
        calls
    }

    #[test]
    fn zero_budget_only_sleeps() {
        let mut p = SpinPolicy::new(0);
        assert_eq!(record(&mut p, |_, _| true), [-1]);
    }

    #[test]
    fn quick_reply_is_caught_spinning() {
        let mut p = SpinPolicy::new(10_000);
        assert_eq!(record(&mut p, |_, n| n == 3), [0, 0, 0]);
        assert!(p.spin_next);
    }

    #[test]
    fn slow_replies_turn_spinning_off_and_a_quick_wait_back_on() {
        let mut p = SpinPolicy::new(200);
        let calls = record(&mut p, |timeout, _| timeout == -1);
        assert!(calls.len() > 1 && calls[..calls.len() - 1].iter().all(|&t| t == 0));
        assert_eq!(calls.last(), Some(&-1));
        assert!(p.spin_next, "one empty spin must not turn spinning off");
        // A quick reply after it clears the count of misses...
        assert_eq!(record(&mut p, |_, _| true), [0]);
        let calls = record(&mut p, |timeout, _| timeout == -1);
        assert_eq!(calls.first(), Some(&0));
        assert!(p.spin_next, "a miss after a hit is the first in a row");
        // ...and a second empty spin in a row turns it off.
        let calls = record(&mut p, |timeout, _| timeout == -1);
        assert_eq!(calls.first(), Some(&0));
        assert!(
            !p.spin_next,
            "two empty spins in a row must turn spinning off"
        );
        // While off, nothing spins; a slow sleep keeps it off...
        let calls = record(&mut p, |_, _| {
            std::thread::sleep(Duration::from_millis(2));
            true
        });
        assert_eq!(calls, [-1]);
        assert!(!p.spin_next);
        // ...and a quick one turns it back on.
        assert_eq!(record(&mut p, |_, _| true), [-1]);
        assert!(p.spin_next);
    }

    #[test]
    fn contention_is_remembered_for_a_while() {
        let mut p = SpinPolicy::new(50);
        assert!(!p.contended());
        p.note_contention();
        assert!(p.contended());
        p.contended_at = Some(Instant::now() - CONTENTION_MEMORY);
        assert!(!p.contended());
    }

    #[test]
    fn errors_pass_through() {
        let mut p = SpinPolicy::new(1000);
        assert_eq!(p.wait(|_| Err(7)), Err(7));
        let mut p = SpinPolicy::new(0);
        assert_eq!(p.wait(|_| Err::<bool, _>(8)), Err(8));
    }
}
