//! Bounds on password sign-ins (the LDAP form): a guesser gets a few tries per account and
//! per client address, then waits, and the directory is not asked while they wait.
//!
//! Keyed GCRA limiters from `governor`: per tenant and user name, a burst of
//! [`USER_BURST`] attempts, then one per [`USER_PERIOD`]; per client address, a burst of
//! [`ADDR_BURST`], then one per [`ADDR_PERIOD`]. Every attempt counts, as a guesser cannot
//! be told apart before the directory answers. The state is this replica's memory: with N
//! replicas behind a load balancer a guesser gets at most N times the budget.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Attempts per tenant and user name before waiting.
pub const USER_BURST: u32 = 5;
/// Then one attempt per this long.
pub const USER_PERIOD: Duration = Duration::from_secs(60);
/// Attempts per client address before waiting.
pub const ADDR_BURST: u32 = 20;
/// Then one attempt per this long.
pub const ADDR_PERIOD: Duration = Duration::from_secs(6);
/// Keys kept before idle ones are dropped.
const MAX_KEYS: usize = 10_000;

/// The sign-in limiters of one replica.
pub struct SignInLimits {
    per_user: DefaultKeyedRateLimiter<(String, String)>,
    per_addr: DefaultKeyedRateLimiter<String>,
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
            per_addr: DefaultKeyedRateLimiter::keyed(quota(ADDR_BURST, ADDR_PERIOD)),
            clock: DefaultClock::default(),
        }
    }
}

impl SignInLimits {
    /// Takes one attempt for `user` of `tenant` from `addr`; `Err(wait)` when over a limit.
    pub fn attempt(&self, tenant: &str, user: &str, addr: &str) -> Result<(), Duration> {
        for limiter_len in [self.per_user.len(), self.per_addr.len()] {
            if limiter_len > MAX_KEYS {
                self.per_user.retain_recent();
                self.per_addr.retain_recent();
                break;
            }
        }
        let now = self.clock.now();
        self.per_addr
            .check_key(&addr.to_owned())
            .map_err(|n| n.wait_time_from(now))?;
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
            assert!(l.attempt("t", "alice", "10.0.0.1").is_ok());
        }
        let wait = l
            .attempt("t", "Alice", "10.0.0.1")
            .expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= USER_PERIOD, "{wait:?}");
        assert!(l.attempt("t", "bob", "10.0.0.1").is_ok(), "another account");
        assert!(l.attempt("other-tenant", "alice", "10.0.0.1").is_ok());
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let l = SignInLimits::default();
        let mut refused = 0;
        for i in 0..(ADDR_BURST + 5) {
            if l.attempt("t", &format!("user{i}"), "10.0.0.9").is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 5);
        assert!(
            l.attempt("t", "user0", "10.0.0.10").is_ok(),
            "another address"
        );
    }
}
