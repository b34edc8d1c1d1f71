//! Time, injected so tests can move it.

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, Unix seconds.
    fn now(&self) -> i64;

    /// Now, Unix milliseconds.
    fn now_ms(&self) -> i64 {
        self.now() * 1000
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn now_ms(&self) -> i64 {
        tether_shared::timestamps::now_unix_ms()
    }
}
