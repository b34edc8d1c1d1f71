//! One simulated query: who sent it, its planned timeline and size, its state, and the
//! statistics it shows at any instant. Statistics are a pure function of the plan and the
//! time, so every endpoint (query list, cluster totals, client protocol) agrees.

use std::time::{Duration, Instant, SystemTime};

use super::failure::Failure;
use super::hash::xxhash64;

/// `QueryState`, the subset the stand-in moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryState {
    Queued,
    Running,
    Finished,
    Failed,
}

impl QueryState {
    /// The enum name Jackson prints.
    pub fn name(self) -> &'static str {
        match self {
            QueryState::Queued => "QUEUED",
            QueryState::Running => "RUNNING",
            QueryState::Finished => "FINISHED",
            QueryState::Failed => "FAILED",
        }
    }

    /// Parses an enum name, case-insensitively as `QueryResource` does. Known states that
    /// the stand-in never uses parse too (they simply match nothing).
    pub fn parse(s: &str) -> Result<Option<QueryState>, ()> {
        match s.to_ascii_uppercase().as_str() {
            "QUEUED" => Ok(Some(QueryState::Queued)),
            "RUNNING" => Ok(Some(QueryState::Running)),
            "FINISHED" => Ok(Some(QueryState::Finished)),
            "FAILED" => Ok(Some(QueryState::Failed)),
            "WAITING_FOR_PREREQUISITES"
            | "WAITING_FOR_RESOURCES"
            | "DISPATCHING"
            | "PLANNING"
            | "STARTING"
            | "FINISHING" => Ok(None),
            _ => Err(()),
        }
    }

    /// FINISHED and FAILED are done.
    pub fn is_done(self) -> bool {
        matches!(self, QueryState::Finished | QueryState::Failed)
    }
}

/// What the client told the coordinator about itself (headers and connection).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSession {
    pub user: String,
    pub source: Option<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub remote_address: Option<String>,
    pub user_agent: Option<String>,
    pub client_info: Option<String>,
    pub client_tags: Vec<String>,
}

/// How long a query waits in the queue and runs, and whether it fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub queued_for: Duration,
    pub run_for: Duration,
    /// `Some(n)`: the query fails part-way, quoting its literal number `n` (modulo their
    /// count, string literals first).
    pub failure_pick: Option<u64>,
}

/// The size of a query, fixed at creation from its sequence number.
#[derive(Debug, Clone, Copy)]
struct Size {
    rows: u64,
    bytes: u64,
    cpu: Duration,
    drivers: u32,
    tasks: u32,
    peak_memory: u64,
    /// Spends part of its run fully blocked (waiting for memory).
    blocks: bool,
}

impl Size {
    fn new(seq: u64, run_for: Duration, workers: u32) -> Self {
        let h = xxhash64(&seq.to_le_bytes(), 0x7e7e);
        let pick = |shift: u32, n: u64| (h >> shift) % n;
        let rows = 1_000 + pick(0, 50_000_000);
        Size {
            rows,
            bytes: rows * (16 + pick(8, 240)),
            cpu: run_for.mul_f64(1.0 + pick(16, 12) as f64),
            drivers: 4 + pick(24, 125) as u32,
            tasks: 1 + 2 * workers.max(1),
            peak_memory: (4 << 20) + pick(32, 4 << 30),
            blocks: pick(48, 5) == 0,
        }
    }
}

/// Statistics of a query at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub scheduled: bool,
    pub queued_time: Duration,
    pub elapsed_time: Duration,
    pub execution_time: Duration,
    pub cpu_time: Duration,
    pub input_rows: u64,
    pub input_bytes: u64,
    pub total_drivers: u32,
    pub queued_drivers: u32,
    pub running_drivers: u32,
    pub completed_drivers: u32,
    pub total_tasks: u32,
    pub running_tasks: u32,
    pub completed_tasks: u32,
    pub user_memory: u64,
    pub total_memory: u64,
    pub peak_user_memory: u64,
    pub peak_total_memory: u64,
    pub cumulative_user_memory: f64,
    pub fully_blocked: bool,
    pub progress_percentage: Option<f64>,
}

/// A query the coordinator knows about.
#[derive(Debug)]
pub(crate) struct Query {
    pub id: String,
    pub seq: u64,
    pub text: String,
    pub hash: String,
    pub session: ClientSession,
    /// The client protocol's per-query secret.
    pub slug: String,
    pub created: SystemTime,
    pub state: QueryState,
    /// Set once the query is FAILED.
    pub failure: Option<Failure>,
    created_at: Instant,
    queue_until: Instant,
    started_at: Option<Instant>,
    run_until: Option<Instant>,
    ended_at: Option<Instant>,
    /// Planned running time; a failing query stops part-way through.
    run_for: Duration,
    fail_after: Option<Duration>,
    failure_pick: u64,
    size: Size,
}

impl Query {
    /// A new QUEUED query.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        seq: u64,
        text: String,
        session: ClientSession,
        timing: Timing,
        workers: u32,
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let size = Size::new(seq, timing.run_for, workers);
        let fail_after = timing
            .failure_pick
            .map(|_| timing.run_for.mul_f64(0.3 + (seq % 7) as f64 / 10.0));
        Query {
            hash: super::hash::query_hash(&text),
            id,
            seq,
            text,
            session,
            slug: format!("x{}", uuid::Uuid::new_v4().simple()),
            created: wall,
            state: QueryState::Queued,
            failure: None,
            created_at: now,
            queue_until: now + timing.queued_for,
            started_at: None,
            run_until: None,
            ended_at: None,
            run_for: timing.run_for,
            fail_after,
            failure_pick: timing.failure_pick.unwrap_or(0),
            size,
        }
    }

    /// Moves along the planned timeline up to `now`; true if the query became done.
    pub fn advance(&mut self, now: Instant) -> bool {
        if self.state == QueryState::Queued && now >= self.queue_until {
            let at = self.queue_until;
            self.state = QueryState::Running;
            self.started_at = Some(at);
            self.run_until = Some(at + self.fail_after.unwrap_or(self.run_for));
        }
        if self.state == QueryState::Running
            && let Some(end) = self.run_until
            && now >= end
        {
            self.ended_at = Some(end);
            if self.fail_after.is_some() {
                self.state = QueryState::Failed;
                self.failure = Some(Failure::for_query(&self.text, self.failure_pick));
            } else {
                self.state = QueryState::Finished;
            }
            return true;
        }
        false
    }

    /// Brings the next transition forward to `now` (a client polling `nextUri` moves its
    /// query on); true if the query became done.
    pub fn step(&mut self, now: Instant) -> bool {
        match self.state {
            QueryState::Queued => self.queue_until = self.queue_until.min(now),
            QueryState::Running => self.run_until = self.run_until.map(|t| t.min(now)),
            QueryState::Finished | QueryState::Failed => {}
        }
        self.advance(now)
    }

    /// Fails a query that is not done; false if it already was.
    pub fn abort(&mut self, now: Instant, failure: Failure) -> bool {
        if self.state.is_done() {
            return false;
        }
        self.ended_at = Some(now);
        self.state = QueryState::Failed;
        self.failure = Some(failure);
        true
    }

    /// When the query ended, as a wall-clock time.
    pub fn end_time(&self) -> Option<SystemTime> {
        self.ended_at
            .map(|e| self.created + e.saturating_duration_since(self.created_at))
    }

    /// When the query ended.
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at
    }

    /// How long ago the query ended.
    pub fn ended_ago(&self, now: Instant) -> Option<Duration> {
        self.ended_at.map(|e| now.saturating_duration_since(e))
    }

    /// The statistics at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let until = self.ended_at.unwrap_or(now);
        let elapsed = until.saturating_duration_since(self.created_at);
        let Some(started) = self.started_at else {
            return Snapshot {
                queued_time: elapsed,
                elapsed_time: elapsed,
                ..Snapshot::default()
            };
        };
        let execution = until.saturating_duration_since(started);
        let p = match self.state {
            QueryState::Finished => 1.0,
            _ if self.run_for.is_zero() => 1.0,
            _ => (execution.as_secs_f64() / self.run_for.as_secs_f64()).min(1.0),
        };
        let s = self.size;
        let running = self.state == QueryState::Running;
        let completed_drivers = (f64::from(s.drivers) * p).round() as u32;
        let ramp = (2.0 * p).min(1.0);
        let peak_user = (s.peak_memory as f64 * ramp) as u64;
        let user_memory = if running { peak_user } else { 0 };
        let run_ms = self.run_for.as_secs_f64() * 1e3;
        // The integral of the memory ramp over the run so far, in byte-milliseconds.
        let area = if p <= 0.5 { p * p } else { 0.25 + (p - 0.5) };
        Snapshot {
            scheduled: true,
            queued_time: started.saturating_duration_since(self.created_at),
            elapsed_time: elapsed,
            execution_time: execution,
            cpu_time: s.cpu.mul_f64(p),
            input_rows: (s.rows as f64 * p) as u64,
            input_bytes: (s.bytes as f64 * p) as u64,
            total_drivers: s.drivers,
            queued_drivers: 0,
            running_drivers: if running {
                s.drivers - completed_drivers
            } else {
                0
            },
            completed_drivers,
            total_tasks: s.tasks,
            running_tasks: if running { s.tasks } else { 0 },
            completed_tasks: if self.state == QueryState::Finished {
                s.tasks
            } else {
                0
            },
            user_memory,
            total_memory: user_memory + user_memory / 8,
            peak_user_memory: peak_user,
            peak_total_memory: peak_user + peak_user / 8,
            cumulative_user_memory: s.peak_memory as f64 * run_ms * area,
            fully_blocked: running && s.blocks && (0.3..0.6).contains(&p),
            progress_percentage: (s.drivers > 0)
                .then(|| f64::from(completed_drivers) * 100.0 / f64::from(s.drivers)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(fails: bool, now: Instant) -> Query {
        let timing = Timing {
            queued_for: Duration::from_millis(100),
            run_for: Duration::from_millis(1000),
            failure_pick: fails.then_some(0),
        };
        let session = ClientSession {
            user: "alice".into(),
            ..ClientSession::default()
        };
        let text = "SELECT * FROM t WHERE email = 'alice@example.com'".to_owned();
        Query::new(
            "q".into(),
            5,
            text,
            session,
            timing,
            2,
            now,
            SystemTime::now(),
        )
    }

    #[test]
    fn follows_its_timeline() {
        let t0 = Instant::now();
        let mut q = query(false, t0);
        assert!(!q.advance(t0 + Duration::from_millis(50)));
        assert_eq!(q.state, QueryState::Queued);
        let s = q.snapshot(t0 + Duration::from_millis(50));
        assert!(!s.scheduled && s.progress_percentage.is_none());

        assert!(!q.advance(t0 + Duration::from_millis(600)));
        assert_eq!(q.state, QueryState::Running);
        let s = q.snapshot(t0 + Duration::from_millis(600));
        assert_eq!(s.queued_time, Duration::from_millis(100));
        assert_eq!(s.execution_time, Duration::from_millis(500));
        assert!(s.running_drivers > 0 && s.user_memory > 0);

        assert!(q.advance(t0 + Duration::from_secs(5)));
        assert_eq!(q.state, QueryState::Finished);
        let s = q.snapshot(t0 + Duration::from_secs(9));
        assert_eq!(s.elapsed_time, Duration::from_millis(1100), "ends on plan");
        assert_eq!(s.progress_percentage, Some(100.0));
        assert_eq!((s.running_drivers, s.user_memory), (0, 0));
    }

    #[test]
    fn failing_queries_stop_part_way_with_a_failure() {
        let t0 = Instant::now();
        let mut q = query(true, t0);
        assert!(q.advance(t0 + Duration::from_secs(5)));
        assert_eq!(q.state, QueryState::Failed);
        assert!(
            q.failure
                .as_ref()
                .is_some_and(|f| f.info.message.contains("alice@example.com"))
        );
        assert!(q.snapshot(t0 + Duration::from_secs(5)).progress_percentage < Some(100.0));
    }

    #[test]
    fn stepping_moves_one_transition() {
        let t0 = Instant::now();
        let mut q = query(false, t0);
        assert!(!q.step(t0));
        assert_eq!(q.state, QueryState::Running);
        assert!(q.step(t0 + Duration::from_millis(1)));
        assert_eq!(q.state, QueryState::Finished);
    }
}
