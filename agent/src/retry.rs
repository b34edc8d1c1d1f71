//! The one reconnect policy: capped exponential backoff (the `backoff` crate) with full
//! jitter — each wait is uniform in `[0, current interval]` — so that thousands of agents
//! cut off at once come back spread out rather than in waves. A `Goodbye.retry_after` from
//! the control plane overrides it.
//!
//! The `backoff` crate is unmaintained upstream (RUSTSEC-2025-0012); it is kept behind
//! this module only, so replacing it (e.g. with `backon`) touches nothing else.

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use rand::Rng;

/// Tunables of the reconnect policy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First interval.
    pub initial: Duration,
    /// Cap of the interval.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// The state of one reconnect sequence.
#[derive(Debug)]
pub struct Retry {
    inner: ExponentialBackoff,
}

impl Retry {
    /// A fresh sequence.
    pub fn new(policy: RetryPolicy) -> Self {
        let inner = ExponentialBackoff {
            current_interval: policy.initial,
            initial_interval: policy.initial,
            // The crate's jitter is symmetric around the interval; full jitter is applied
            // in `next_delay` instead.
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: policy.max,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        Self { inner }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.inner.next_backoff().unwrap_or(self.inner.max_interval);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// The wait after the control plane said Goodbye: its `retry_after` when it gave one
    /// (the control plane paces reconnects, so the backoff does not grow), else the next
    /// backoff.
    pub fn after_goodbye(&mut self, retry_after: Duration) -> Duration {
        if retry_after.is_zero() {
            self.next_delay()
        } else {
            retry_after
        }
    }

    /// Back to the initial interval (after a session that held).
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_jittered_and_capped() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut r = Retry::new(policy);
        let waits: Vec<Duration> = (0..20).map(|_| r.next_delay()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(2)));
        // Caps grow 0.1, 0.2, 0.4 … so the 10th wait may exceed the first cap.
        let total: Duration = waits.iter().sum();
        assert!(total > Duration::from_millis(500), "backing off: {total:?}");
        r.reset();
        assert!(r.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_given_retry_after_is_taken_as_is_and_does_not_grow_the_backoff() {
        let mut r = Retry::new(RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(60),
        });
        for _ in 0..10 {
            assert_eq!(
                r.after_goodbye(Duration::from_millis(4321)),
                Duration::from_millis(4321)
            );
        }
        assert!(
            r.next_delay() <= Duration::from_millis(100),
            "still the first interval"
        );
        assert!(r.after_goodbye(Duration::ZERO) <= Duration::from_millis(200));
    }
}
