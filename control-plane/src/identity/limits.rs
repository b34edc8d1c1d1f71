//! Bounds on password sign-ins (the LDAP form): a guesser gets a few tries per account,
//! then waits, and the directory is not asked while they wait.
//!
//! A keyed GCRA limiter from `governor`: per tenant and user name, a burst of
//! [`USER_BURST`] attempts, then one per [`USER_PERIOD`]. Every attempt counts, as a guesser
//! cannot be told apart before the directory answers. There is no per-address bound: behind
//! the TLS-terminating load balancer the documentation asks for, every person arrives from
//! its address, and one guesser would lock everyone out. The state is this replica's
//! memory: with N replicas a guesser gets at most N times the budget.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Attempts per tenant and user name before waiting.
pub const USER_BURST: u32 = 5;
/// Then one attempt per this long.
pub const USER_PERIOD: Duration = Duration::from_secs(60);
/// Keys kept before idle ones are dropped.
const MAX_KEYS: usize = 10_000;

/// The sign-in limiters of one replica.
pub struct SignInLimits {
    per_user: DefaultKeyedRateLimiter<(String, String)>,
    clock: DefaultClock,
}

impl std::fmt::Debug for SignInLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLimits").finish_non_exhaustive()
    }
}

fn quota(burst: u32, period: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            per_user: DefaultKeyedRateLimiter::keyed(quota(USER_BURST, USER_PERIOD)),
            clock: DefaultClock::default(),
        }
    }
}

impl SignInLimits {
    /// Takes one attempt for `user` of `tenant`; `Err(wait)` when over the limit.
    pub fn attempt(&self, tenant: &str, user: &str) -> Result<(), Duration> {
        if self.per_user.len() > MAX_KEYS {
            self.per_user.retain_recent();
        }
        let now = self.clock.now();
        self.per_user
            .check_key(&(tenant.to_owned(), user.to_lowercase()))
            .map_err(|n| n.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_account_then_waiting_other_accounts_unaffected() {
        let l = SignInLimits::default();
        for _ in 0..USER_BURST {
            assert!(l.attempt("t", "alice").is_ok());
        }
        let wait = l.attempt("t", "Alice").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= USER_PERIOD, "{wait:?}");
        assert!(l.attempt("t", "bob").is_ok(), "another account");
        assert!(l.attempt("other-tenant", "alice").is_ok());
    }
}
