//! When a synchronous call waits for the server: spin briefly, then sleep.
//!
//! A reply from a server on the same machine often comes back in a few
//! tens of microseconds, less than it takes to put a thread to sleep in
//! `poll` and wake it again (on a virtual machine, waking an idle vCPU is
//! a trip through the hypervisor). So a wait first checks the socket
//! without blocking for up to a budget, and sleeps only if nothing came.
//!
//! The policy adapts, so slow servers cost no spinning: a spin that ends
//! empty-handed turns spinning off; while off, each wait is timed, and a
//! wait that turned out shorter than the budget turns it back on. Spinning
//! at most wastes one budget per slow reply. With one CPU online there is
//! nobody to spin for and the budget is 0.

use std::time::{Duration, Instant};

/// The budget unless `LIBNBD_SPIN_USEC` sets one: about twice the round
/// trip of a 4 KiB read to a local nbdkit.
pub(crate) const DEFAULT_SPIN_USEC: u32 = 50;

/// A handle's spin-then-sleep policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpinPolicy {
    budget: Duration,
    /// Whether the next wait starts with a spin.
    spin_next: bool,
}

impl SpinPolicy {
    /// The policy for a new handle: `LIBNBD_SPIN_USEC` microseconds if
    /// set (0 turns spinning off), else [`DEFAULT_SPIN_USEC`] on machines
    /// with more than one CPU online.
    pub(crate) fn from_env() -> SpinPolicy {
        let usec = match std::env::var("LIBNBD_SPIN_USEC") {
            Ok(v) => v.trim().parse().unwrap_or(0),
            Err(_) if cpus_online() > 1 => DEFAULT_SPIN_USEC,
            Err(_) => 0,
        };
        SpinPolicy::new(usec)
    }

    pub(crate) fn new(usec: u32) -> SpinPolicy {
        SpinPolicy {
            budget: Duration::from_micros(usec as u64),
            spin_next: usec > 0,
        }
    }

    /// The budget in microseconds (0: never spin).
    pub(crate) fn usec(&self) -> u32 {
        self.budget.as_micros() as u32
    }

    /// Waits for `ready` to return true: spins on it (it must not block)
    /// for up to the budget if the policy says so, then calls `sleep`,
    /// which blocks until the socket is ready.
    pub(crate) fn wait<E>(
        &mut self,
        mut ready: impl FnMut() -> Result<bool, E>,
        sleep: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        if self.budget.is_zero() {
            return sleep();
        }
        let start = Instant::now();
        if self.spin_next {
            loop {
                if ready()? {
                    return Ok(());
                }
                std::hint::spin_loop();
                if start.elapsed() >= self.budget {
                    break;
                }
            }
            self.spin_next = false;
            return sleep();
        }
        sleep()?;
        self.spin_next = start.elapsed() < self.budget;
        Ok(())
    }
}

/// CPUs online, read once per process (glibc reads a file each time).
fn cpus_online() -> i64 {
    static CPUS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *CPUS.get_or_init(|| unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_budget_only_sleeps() {
        let mut p = SpinPolicy::new(0);
        let mut checks = 0;
        let mut slept = false;
        p.wait::<()>(
            || {
                checks += 1;
                Ok(true)
            },
            || {
                slept = true;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((checks, slept), (0, true));
    }

    #[test]
    fn quick_reply_is_caught_spinning() {
        let mut p = SpinPolicy::new(10_000);
        let mut checks = 0;
        p.wait::<()>(
            || {
                checks += 1;
                Ok(checks == 3)
            },
            || panic!("slept although the reply came while spinning"),
        )
        .unwrap();
        assert_eq!(checks, 3);
        assert!(p.spin_next);
    }

    #[test]
    fn slow_reply_turns_spinning_off_and_a_quick_wait_back_on() {
        let mut p = SpinPolicy::new(200);
        let mut slept = 0;
        p.wait::<()>(
            || Ok(false),
            || {
                slept += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(slept, 1);
        assert!(!p.spin_next, "an empty spin must turn spinning off");
        // While off, nothing spins; a slow sleep keeps it off...
        p.wait::<()>(
            || panic!("spun while spinning is off"),
            || {
                std::thread::sleep(Duration::from_millis(2));
                Ok(())
            },
        )
        .unwrap();
        assert!(!p.spin_next);
        // ...and a quick one turns it back on.
        p.wait::<()>(|| panic!("spun while spinning is off"), || Ok(()))
            .unwrap();
        assert!(p.spin_next);
    }

    #[test]
    fn errors_pass_through() {
        let mut p = SpinPolicy::new(1000);
        assert_eq!(p.wait(|| Err(7), || Ok(())), Err(7));
        let mut p = SpinPolicy::new(0);
        assert_eq!(p.wait(|| Ok(true), || Err(8)), Err(8));
    }
}
