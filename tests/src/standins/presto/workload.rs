//! Workloads: queries submitted at a steady rate, each with a jittered run time, some failing.
//! The default texts carry the literals a real workload leaks (e-mail addresses, card and
//! social-security numbers, amounts, dates) so the agent's redactor has something to remove.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};

use super::query::{ClientSession, Timing};
use super::server::Shared;

/// A workload to run against the stand-in.
#[derive(Debug, Clone)]
pub struct Workload {
    /// How many queries to submit; `None` keeps submitting until stopped.
    pub count: Option<u64>,
    /// Submission rate.
    pub per_second: f64,
    /// Each query's time from creation to its end (±20 %); a fifth of it is spent queued.
    pub run_time: Duration,
    /// Probability that a query fails (a text containing `fail` always fails).
    pub fail_ratio: f64,
    /// Query texts, used round-robin; empty means [`default_texts`].
    pub texts: Vec<String>,
    /// `session.user` of every query.
    pub user: String,
    /// `session.source` of every query.
    pub source: Option<String>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            count: Some(100),
            per_second: 20.0,
            run_time: Duration::from_secs(2),
            fail_ratio: 0.1,
            texts: default_texts(),
            user: "analyst".to_owned(),
            source: Some("presto-cli".to_owned()),
        }
    }
}

/// Realistic SELECTs with string, number and DATE literals (none contains `fail`).
pub fn default_texts() -> Vec<String> {
    [
        "SELECT customer_id, email, sum(amount) AS total FROM hive.sales.orders WHERE email = 'alice@example.com' AND order_date >= DATE '2024-01-01' GROUP BY customer_id, email",
        "SELECT * FROM hive.payments.cards WHERE card_number = '4111111111111111' LIMIT 10",
        "SELECT count(*) FROM hive.web.events WHERE user_id = 918273645 AND event_date BETWEEN DATE '2024-03-01' AND DATE '2024-03-31'",
        "SELECT name, phone FROM postgresql.crm.contacts WHERE last_name = 'O''Brien' AND balance > 2500.75",
        "SELECT region, avg(salary) FROM mysql.hr.employees WHERE ssn = '078-05-1120' GROUP BY region",
        "WITH recent AS (SELECT * FROM hive.sales.orders WHERE order_date > DATE '2024-06-30') SELECT count(*) FROM recent WHERE amount > 1000",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Progress of one workload, shared between its task and its handle.
#[derive(Debug, Default)]
struct Progress {
    stop: AtomicBool,
    submitting_done: AtomicBool,
    ids: Mutex<Vec<String>>,
    wake: Notify,
}

/// A running workload. Dropping it does not stop it; the stand-in's shutdown does.
#[derive(Debug, Clone)]
pub struct WorkloadHandle {
    progress: Arc<Progress>,
    shared: Arc<Shared>,
}

impl WorkloadHandle {
    /// Stops submitting; queries already submitted run to their end.
    pub fn stop(&self) {
        self.progress.stop.store(true, Ordering::SeqCst);
        self.progress.wake.notify_one();
    }

    /// True once submitting has ended (count reached or stopped) and every submitted query
    /// is FINISHED or FAILED.
    pub fn is_done(&self) -> bool {
        if !self.progress.submitting_done.load(Ordering::SeqCst) {
            return false;
        }
        let ids = self
            .progress
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (c, _) = self.shared.coordinator();
        ids.iter().all(|id| c.is_done(id))
    }

    /// Ids of the queries submitted so far, in order.
    pub fn ids(&self) -> Vec<String> {
        self.progress
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Starts `w` on the current runtime; it ends early when `stopped` turns true.
pub(crate) fn start(
    shared: Arc<Shared>,
    w: Workload,
    stopped: watch::Receiver<bool>,
) -> WorkloadHandle {
    let progress = Arc::new(Progress::default());
    let handle = WorkloadHandle {
        progress: progress.clone(),
        shared: shared.clone(),
    };
    tokio::spawn(run(shared, w, progress, stopped));
    handle
}

async fn run(
    shared: Arc<Shared>,
    mut w: Workload,
    progress: Arc<Progress>,
    mut stopped: watch::Receiver<bool>,
) {
    if w.texts.is_empty() {
        w.texts = default_texts();
    }
    let rate = w.per_second.max(1e-3);
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    loop {
        let limit = w.count.unwrap_or(u64::MAX);
        if progress.stop.load(Ordering::SeqCst) || *stopped.borrow() || sent >= limit {
            break;
        }
        // Every query due by now (the first one at once), so high rates are not bounded by
        // timer resolution.
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(limit);
        while sent < due {
            let id = submit_one(&shared, &w, sent);
            progress
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(id);
            sent += 1;
        }
        if sent >= limit {
            break;
        }
        let next = start + Duration::from_secs_f64(sent as f64 / rate);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = stopped.changed() => {}
            () = progress.wake.notified() => {}
        }
    }
    progress.submitting_done.store(true, Ordering::SeqCst);
}

fn submit_one(shared: &Shared, w: &Workload, n: u64) -> String {
    let text = w.texts[(n % w.texts.len() as u64) as usize].clone();
    let mut rng = rand::thread_rng();
    let total = w.run_time.mul_f64(rng.gen_range(0.8..=1.2));
    let timing = Timing {
        queued_for: total.mul_f64(0.2),
        run_for: total.mul_f64(0.8),
        failure_pick: (rng.gen_bool(w.fail_ratio.clamp(0.0, 1.0))
            || text.to_ascii_lowercase().contains("fail"))
        // Round number, not `n`: texts rotate with `n`, so `n` would always pick the same
        // literal of a given text.
        .then_some(n / w.texts.len() as u64),
    };
    let session = ClientSession {
        user: w.user.clone(),
        source: w.source.clone(),
        catalog: Some("hive".to_owned()),
        schema: Some("default".to_owned()),
        remote_address: Some(format!("10.1.{}.{}", (n / 200) % 250, 10 + n % 200)),
        user_agent: Some(format!("StatementClientV1/{}", shared.opts.version)),
        client_info: None,
        client_tags: Vec::new(),
    };
    let (mut c, now) = shared.coordinator();
    c.create(text, session, timing, now)
}
