//! The coordinator's query tracker: creates queries, moves them along, keeps finished ones
//! per Presto's retention rule (`query.max-history`, `query.min-expire-age`), and keeps the
//! counters behind `/v1/cluster`. Everything takes `now` so that it is exact and testable.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::durations::query_id;
use super::failure::Failure;
use super::model::ClusterStats;
use super::query::{ClientSession, Query, QueryState, Snapshot, Timing};

/// `NodeState`, as `/v1/info/state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeState {
    Active,
    Inactive,
    ShuttingDown,
}

impl NodeState {
    /// The enum name.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Active => "ACTIVE",
            NodeState::Inactive => "INACTIVE",
            NodeState::ShuttingDown => "SHUTTING_DOWN",
        }
    }
}

/// Input counters of queries that are done (expired ones included).
#[derive(Debug, Default)]
struct Totals {
    rows: u64,
    bytes: u64,
    cpu: Duration,
}

/// All queries and node state, behind one lock.
#[derive(Debug)]
pub(crate) struct Coordinator {
    queries: HashMap<String, Query>,
    /// Done queries in the order they ended: the expiration queue.
    expiry: VecDeque<String>,
    finished_ids: Vec<String>,
    done: Totals,
    submitted: u64,
    coordinator_id: String,
    workers: u32,
    max_history: usize,
    min_expire_age: Duration,
    pub node_state: NodeState,
}

impl Coordinator {
    /// An empty tracker.
    pub fn new(workers: u32, max_history: usize, min_expire_age: Duration) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut rng = rand::thread_rng();
        let coordinator_id = (0..5)
            .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
            .collect();
        Coordinator {
            queries: HashMap::new(),
            expiry: VecDeque::new(),
            finished_ids: Vec::new(),
            done: Totals::default(),
            submitted: 0,
            coordinator_id,
            workers,
            max_history,
            min_expire_age,
            node_state: NodeState::Active,
        }
    }

    /// Registers a new QUEUED query; returns its id.
    pub fn create(
        &mut self,
        text: String,
        session: ClientSession,
        timing: Timing,
        now: Instant,
    ) -> String {
        self.submitted += 1;
        let seq = self.submitted;
        let wall = SystemTime::now();
        let id = query_id(wall, seq, &self.coordinator_id);
        let q = Query::new(
            id.clone(),
            seq,
            text,
            session,
            timing,
            self.workers,
            now,
            wall,
        );
        self.queries.insert(id.clone(), q);
        id
    }

    /// Queries created so far.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Every query that became done, in order, expired or not.
    pub fn finished_ids(&self) -> &[String] {
        &self.finished_ids
    }

    fn record_done(&mut self, id: &str, now: Instant) {
        if let Some(q) = self.queries.get(id) {
            let s = q.snapshot(now);
            self.done.rows += s.input_rows;
            self.done.bytes += s.input_bytes;
            self.done.cpu += s.cpu_time;
        }
        self.expiry.push_back(id.to_owned());
        self.finished_ids.push(id.to_owned());
    }

    /// Moves every query along its timeline up to `now`.
    pub fn advance(&mut self, now: Instant) {
        let mut ended: Vec<(Instant, String)> = Vec::new();
        for q in self.queries.values_mut() {
            if !q.state.is_done() && q.advance(now) {
                ended.push((q.ended_at().unwrap_or(now), q.id.clone()));
            }
        }
        // The expiration queue is in end order, so expiry removes the oldest first.
        ended.sort();
        for (_, id) in ended {
            self.record_done(&id, now);
        }
    }

    /// Presto's expiry job: while more than `max_history` done queries are queued for
    /// expiry, drop the oldest if it ended more than `min_expire_age` ago.
    pub fn expire(&mut self, now: Instant) {
        while self.expiry.len() > self.max_history {
            let Some(id) = self.expiry.front() else {
                break;
            };
            let ago = self.queries.get(id).and_then(|q| q.ended_ago(now));
            if ago.is_some_and(|a| a <= self.min_expire_age) {
                break;
            }
            if let Some(id) = self.expiry.pop_front() {
                self.queries.remove(&id);
            }
        }
    }

    /// The query `id`, if it has not expired.
    pub fn get(&self, id: &str) -> Option<&Query> {
        self.queries.get(id)
    }

    /// Every query that has not expired, in no particular order.
    pub fn queries(&self) -> impl Iterator<Item = &Query> {
        self.queries.values()
    }

    /// True if `id` is done or has expired (unknown ids count as done).
    pub fn is_done(&self, id: &str) -> bool {
        self.queries.get(id).is_none_or(|q| q.state.is_done())
    }

    /// Brings the next transition of `id` forward to `now`; its state after, if it exists.
    pub fn step(&mut self, id: &str, now: Instant) -> Option<QueryState> {
        let q = self.queries.get_mut(id)?;
        if q.step(now) {
            self.record_done(id, now);
        }
        self.queries.get(id).map(|q| q.state)
    }

    /// Fails `id` with `failure` if it is not done. `None` if unknown, else whether it was
    /// aborted now.
    pub fn abort(&mut self, id: &str, failure: Failure, now: Instant) -> Option<bool> {
        let q = self.queries.get_mut(id)?;
        let aborted = q.abort(now, failure);
        if aborted {
            self.record_done(id, now);
        }
        Some(aborted)
    }

    /// `ClusterStats` at `now`: live gauges over queries that are not done, and counters
    /// since start over all queries.
    pub fn cluster_stats(&self, now: Instant) -> ClusterStats {
        let mut c = ClusterStats {
            active_workers: u64::from(self.workers),
            total_input_rows: self.done.rows,
            total_input_bytes: self.done.bytes,
            ..ClusterStats::default()
        };
        let mut cpu = self.done.cpu;
        for q in self.queries.values().filter(|q| !q.state.is_done()) {
            let s: Snapshot = q.snapshot(now);
            match q.state {
                QueryState::Queued => c.queued_queries += 1,
                QueryState::Running if s.fully_blocked => c.blocked_queries += 1,
                QueryState::Running => c.running_queries += 1,
                QueryState::Finished | QueryState::Failed => {}
            }
            c.running_drivers += u64::from(s.running_drivers);
            c.running_tasks += u64::from(s.running_tasks);
            c.reserved_memory += s.total_memory as f64;
            c.total_input_rows += s.input_rows;
            c.total_input_bytes += s.input_bytes;
            cpu += s.cpu_time;
        }
        c.total_cpu_time_secs = cpu.as_secs();
        c.adjusted_queue_size = c.queued_queries;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(ms: u64) -> Timing {
        Timing {
            queued_for: Duration::ZERO,
            run_for: Duration::from_millis(ms),
            failure_pick: None,
        }
    }

    fn session() -> ClientSession {
        ClientSession {
            user: "alice".into(),
            ..ClientSession::default()
        }
    }

    #[test]
    fn keeps_max_history_plus_the_recently_ended() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(2, 3, Duration::from_secs(10));
        for i in 0..8 {
            c.create(format!("SELECT {i}"), session(), timing(10 * (i + 1)), t0);
        }
        c.advance(t0 + Duration::from_secs(1));
        assert_eq!(c.finished_ids().len(), 8);
        c.expire(t0 + Duration::from_secs(5));
        assert_eq!(c.queries().count(), 8, "all ended less than 10 s ago");
        c.expire(t0 + Duration::from_secs(20));
        assert_eq!(c.queries().count(), 3);
        let left: Vec<&str> = c.queries().map(|q| q.text.as_str()).collect();
        for kept in ["SELECT 5", "SELECT 6", "SELECT 7"] {
            assert!(left.contains(&kept), "{left:?} keeps the last to end");
        }
        assert_eq!(c.finished_ids().len(), 8, "finished ids outlive retention");
    }

    #[test]
    fn counters_include_done_and_live_queries() {
        let t0 = Instant::now();
        let mut c = Coordinator::new(2, 100, Duration::from_secs(10));
        c.create("SELECT 1".into(), session(), timing(100), t0);
        c.create("SELECT 2".into(), session(), timing(1000), t0);
        c.advance(t0 + Duration::from_millis(500));
        let s = c.cluster_stats(t0 + Duration::from_millis(500));
        assert_eq!(s.running_queries + s.blocked_queries, 1);
        assert!(s.running_drivers > 0 && s.reserved_memory > 0.0);
        c.advance(t0 + Duration::from_secs(2));
        let end = c.cluster_stats(t0 + Duration::from_secs(2));
        assert_eq!((end.running_queries, end.running_drivers), (0, 0));
        assert!(end.total_input_rows > s.total_input_rows);
    }
}
