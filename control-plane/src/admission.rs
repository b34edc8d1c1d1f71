//! Server-paced session starts. After a control-plane restart every agent dials back
//! within seconds; each session start costs store reads, a desired-state push and an
//! applied ack. Rather than let that pile-up fail sessions at random (and every failure
//! doubles that agent's backoff), session starts are admitted at a fixed rate:
//!
//! - a start that fits within [`Admission::max_wait`] of the schedule waits for its slot
//!   on its open connection;
//! - a later one is told `Goodbye{reason: "overloaded", retry_after}` with its own future
//!   slot, which is reserved for its compute plane: when it comes back at that time it is
//!   admitted at once, without queueing again.
//!
//! So N agents that arrive at once are all back after about N / rate seconds, each exactly
//! once more at most — server-paced, not left to luck.
//! This is the generic cell rate algorithm: `next` is the earliest time of the next slot.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A slot reserved for a compute plane may be used this late.
const RESERVATION_SLACK: Duration = Duration::from_secs(30);
/// An agent back this much before its reserved slot waits for it on its connection
/// rather than being sent away again (timer granularity, clocks read at different points).
const EARLY_GRACE: Duration = Duration::from_millis(250);

/// What to do with a session start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start now, after waiting this long (zero when below the rate).
    Wait(Duration),
    /// Refuse with `Goodbye{overloaded}`: come back after this long.
    RetryAfter(Duration),
}

#[derive(Debug)]
struct Schedule {
    next: Instant,
    reserved: HashMap<String, Instant>,
}

/// The pacer.
#[derive(Debug)]
pub struct Admission {
    interval: Duration,
    max_wait: Duration,
    schedule: Mutex<Schedule>,
}

impl Admission {
    /// Admits `per_second` session starts a second (0: no limit); a start waits at most
    /// `max_wait` on its connection for its slot.
    pub fn new(per_second: u32, max_wait: Duration) -> Self {
        let interval = if per_second == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / per_second
        };
        Self {
            interval,
            max_wait,
            schedule: Mutex::new(Schedule {
                next: Instant::now(),
                reserved: HashMap::new(),
            }),
        }
    }

    /// The longest a start waits on its connection.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Decides a session start of compute plane `cp` now.
    pub fn admit(&self, cp: &str) -> Decision {
        if self.interval.is_zero() {
            return Decision::Wait(Duration::ZERO);
        }
        let now = Instant::now();
        let mut s = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = s.reserved.remove(cp) {
            // Its slot was counted when it was handed out.
            let early = slot.saturating_duration_since(now);
            if early > self.max_wait.max(EARLY_GRACE) {
                s.reserved.insert(cp.to_owned(), slot);
                return Decision::RetryAfter(early);
            }
            if now <= slot + RESERVATION_SLACK {
                return Decision::Wait(early);
            }
        }
        let slot = s.next.max(now);
        s.next = slot + self.interval;
        let wait = slot - now;
        if wait <= self.max_wait {
            return Decision::Wait(wait);
        }
        if s.reserved.len() >= 4096 && s.reserved.len().is_power_of_two() {
            s.reserved.retain(|_, t| *t + RESERVATION_SLACK >= now);
        }
        s.reserved.insert(cp.to_owned(), slot);
        Decision::RetryAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn below_the_rate_starts_at_once_and_a_burst_is_spread_into_slots() {
        let a = Admission::new(10, Duration::from_millis(500));
        assert_eq!(a.admit("a"), Decision::Wait(Duration::ZERO));
        tokio::time::advance(Duration::from_secs(1)).await;
        let decisions: Vec<Decision> = (0..20).map(|i| a.admit(&format!("cp{i}"))).collect();
        // 100 ms apart: 0..=500 ms wait on the connection, the rest come back later.
        let (mut waits, mut later) = (Vec::new(), Vec::new());
        for d in &decisions {
            match d {
                Decision::Wait(w) => waits.push(w.as_millis()),
                Decision::RetryAfter(r) => later.push(r.as_millis()),
            }
        }
        assert_eq!(waits, vec![0, 100, 200, 300, 400, 500]);
        assert_eq!(later.first(), Some(&600));
        assert_eq!(later.last(), Some(&1900));
        assert!(later.windows(2).all(|w| w[1] - w[0] == 100), "{later:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserved_slot_is_honoured_when_its_agent_comes_back() {
        let a = Admission::new(10, Duration::ZERO);
        assert_eq!(a.admit("first"), Decision::Wait(Duration::ZERO));
        for i in 0..5 {
            assert!(matches!(a.admit(&format!("x{i}")), Decision::RetryAfter(_)));
        }
        let Decision::RetryAfter(after) = a.admit("late") else {
            panic!("over the rate");
        };
        assert_eq!(after, Duration::from_millis(600));
        // Others keep arriving meanwhile and take later slots.
        for i in 5..10 {
            assert!(matches!(a.admit(&format!("x{i}")), Decision::RetryAfter(_)));
        }
        // Far too early: sent away again, to the same slot.
        assert_eq!(a.admit("late"), Decision::RetryAfter(after));
        // A little early: it waits for its slot on the connection.
        tokio::time::advance(after - Duration::from_millis(100)).await;
        assert_eq!(
            a.admit("late"),
            Decision::Wait(Duration::from_millis(100)),
            "its own slot"
        );
        // Used once only.
        assert!(matches!(a.admit("late"), Decision::RetryAfter(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_no_limit() {
        let a = Admission::new(0, Duration::ZERO);
        for i in 0..1000 {
            assert_eq!(a.admit(&i.to_string()), Decision::Wait(Duration::ZERO));
        }
    }
}
