//! Fault injection: failed requests, conflicts on writes, and added latency.
//!
//! Faults apply to API requests (discovery included) and never to the service or pod proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[derive(Debug, Default)]
struct Plan {
    fail_remaining: u32,
    fail_status: u16,
    conflicts_remaining: u32,
    latency: Duration,
}

/// A handle on the stand-in's faults; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    plan: Arc<Mutex<Plan>>,
    injected: Arc<AtomicU64>,
}

impl Faults {
    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `n` API requests answer `status` (e.g. 503) with a `Status` body.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut p = self.plan();
        p.fail_remaining = n;
        p.fail_status = status;
    }

    /// The next `n` mutating requests (create, update, patch, delete) answer 409 Conflict.
    pub fn conflict_next_writes(&self, n: u32) {
        self.plan().conflicts_remaining = n;
    }

    /// Adds `d` to every API request.
    pub fn set_latency(&self, d: Duration) {
        self.plan().latency = d;
    }

    /// Removes every pending fault and the latency.
    pub fn clear(&self) {
        *self.plan() = Plan::default();
    }

    /// How many faulty answers were served.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The latency to add now.
    pub(crate) fn latency(&self) -> Duration {
        self.plan().latency
    }

    /// The status to fail this request with, if a failure is pending; counts it.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        let mut p = self.plan();
        if p.fail_remaining == 0 {
            return None;
        }
        p.fail_remaining -= 1;
        self.injected.fetch_add(1, Ordering::SeqCst);
        Some(p.fail_status)
    }

    /// Whether this write gets a conflict; counts it.
    pub(crate) fn take_conflict(&self) -> bool {
        let mut p = self.plan();
        if p.conflicts_remaining == 0 {
            return false;
        }
        p.conflicts_remaining -= 1;
        self.injected.fetch_add(1, Ordering::SeqCst);
        true
    }
}
