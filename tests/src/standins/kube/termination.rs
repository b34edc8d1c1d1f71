//! How a Pod ends when its controller removes it, and the Presto tasks running on it.
//!
//! Graceful termination as the Kubernetes documentation describes it ("Pod Lifecycle —
//! Termination of Pods", "Container hooks"): the Pod gets a `deletionTimestamp` and stops
//! being Ready (Services stop sending it traffic); the kubelet runs the container's
//! `preStop` hook, then sends SIGTERM; when `terminationGracePeriodSeconds` (default 30)
//! has passed it kills the container. The Pod object goes away when its container is gone.
//!
//! The container is a Presto server. A hook whose command says `SHUTTING_DOWN` reaches
//! Presto's `PUT /v1/info/state` (as the pod proxy in [`super::drain`] answers it), and
//! Presto then shuts itself down as `GracefulShutdownHandler` does
//! (presto-main-base/src/main/java/com/facebook/presto/server/GracefulShutdownHandler.java):
//! it waits `shutdown.grace-period`, waits until every active task has finished, waits the
//! grace period once more so the coordinator sees the final task states, stops its
//! services (quick here; up to 30 s in Presto) and exits. SIGTERM
//! before that ends the JVM at once and fails the tasks still running, and so does the kill.
//! A hook that ends in `sleep N` returns after N seconds (then SIGTERM); any other hook runs
//! until the container is gone (a wait for Presto's exit). A coordinator cannot be told
//! `SHUTTING_DOWN` (prestodb refuses it there), so its hook polls `/v1/query` until no query
//! is left unfinished: modelled as returning when the Pod's last task (query) ends, then
//! SIGTERM.
//!
//! Tasks are the tests' handle on "a query running on this worker": [`Tasks::start`] places
//! one on a Pod (refused on a Pod that is shutting down or terminating, as Presto's
//! scheduler gives no new splits to a node in `SHUTTING_DOWN`), and its outcome says whether
//! it finished or was killed with its Pod.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What became of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Still running.
    Running,
    /// Ran to its end.
    Finished,
    /// Its Pod's container ended first.
    Killed,
}

#[derive(Debug)]
struct TaskState {
    ends_at: Instant,
    outcome: AtomicU8,
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const KILLED: u8 = 2;

/// One task placed on a Pod.
#[derive(Debug, Clone)]
pub struct TaskHandle(Arc<TaskState>);

impl TaskHandle {
    /// Its outcome now.
    pub fn outcome(&self) -> TaskOutcome {
        match self.0.outcome.load(Ordering::SeqCst) {
            RUNNING if Instant::now() >= self.0.ends_at => TaskOutcome::Finished,
            RUNNING => TaskOutcome::Running,
            FINISHED => TaskOutcome::Finished,
            _ => TaskOutcome::Killed,
        }
    }
}

/// (namespace, pod).
type PodId = (String, String);
type ByPod = HashMap<PodId, Vec<Arc<TaskState>>>;

/// The tasks of every Pod, by (namespace, pod).
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    by_pod: Mutex<ByPod>,
}

impl Tasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByPod> {
        self.by_pod.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Places a task of `duration` on the Pod.
    pub fn start(&self, pod: (String, String), duration: Duration) -> TaskHandle {
        let t = Arc::new(TaskState {
            ends_at: Instant::now() + duration,
            outcome: AtomicU8::new(RUNNING),
        });
        self.lock().entry(pod).or_default().push(t.clone());
        TaskHandle(t)
    }

    /// When the Pod's last task ends (now, if it has none).
    pub fn last_end(&self, pod: &(String, String)) -> Instant {
        let now = Instant::now();
        self.lock()
            .get(pod)
            .into_iter()
            .flatten()
            .map(|t| t.ends_at)
            .fold(now, Instant::max)
    }

    /// The Pod's container is gone: tasks that had not ended are killed.
    pub fn container_gone(&self, pod: &(String, String)) {
        let now = Instant::now();
        for t in self.lock().remove(pod).into_iter().flatten() {
            let outcome = if t.ends_at <= now { FINISHED } else { KILLED };
            t.outcome.store(outcome, Ordering::SeqCst);
        }
    }
}

/// A Pod on its way out.
#[derive(Debug, Clone)]
pub(crate) struct Termination {
    /// When its container is gone and the Pod object is removed.
    pub gone_at: Instant,
}

/// What the hook of the Pod's first container does.
enum Hook {
    None,
    /// Tells Presto to shut down; returns after `Some(n)` seconds, or runs until the exit.
    Drain(Option<Duration>),
    /// Waits until the coordinator has no unfinished query (`/v1/query`), then returns.
    QueryDrain,
    /// Something else that returns after a while (or at once).
    Other(Option<Duration>),
}

fn hook(pod: &Value) -> Hook {
    let Some(cmd) = pod["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
    else {
        return Hook::None;
    };
    let returns_after = trailing_sleep(&cmd);
    if cmd.contains("SHUTTING_DOWN") {
        Hook::Drain(returns_after)
    } else if cmd.contains("/v1/query") && cmd.contains("RUNNING") {
        Hook::QueryDrain
    } else {
        Hook::Other(returns_after.or(Some(Duration::ZERO)))
    }
}

/// `Some(N s)` when the script's last command is `sleep N`.
fn trailing_sleep(script: &str) -> Option<Duration> {
    let last = script.rsplit([';', '\n', '&']).next()?.trim();
    let n = last.strip_prefix("sleep ")?.trim();
    n.parse::<f64>().ok().map(Duration::from_secs_f64)
}

/// `shutdown.grace-period` from the Pod's `config.properties` (its ConfigMap `data`), as
/// airlift parses a `Duration` (`^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$`); Presto's default
/// is 2 minutes (`ServerConfig`).
pub(crate) fn grace_period(config_properties: Option<&str>) -> Duration {
    let default = Duration::from_secs(120);
    let Some(text) = config_properties else {
        return default;
    };
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "shutdown.grace-period")
        .and_then(|(_, v)| parse_duration(v.trim()))
        .unwrap_or(default)
}

fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let secs = match unit.trim() {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Starts terminating `pod` now; `drain` is called when its hook reaches Presto. Returns
/// when the container will be gone.
pub(crate) fn begin(
    pod: &Value,
    id: &(String, String),
    tasks: &Tasks,
    config_properties: Option<&str>,
    drain: impl FnOnce(),
) -> Termination {
    let now = Instant::now();
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    // The kill, with the one-off 2 s extension for a hook still running at the deadline.
    let kill = now + Duration::from_secs(grace);
    let gone_at = match hook(pod) {
        Hook::None => now,
        Hook::Other(after) => (now + after.unwrap_or_default()).min(kill),
        Hook::QueryDrain => tasks.last_end(id).min(kill),
        Hook::Drain(after) => {
            drain();
            let period = grace_period(config_properties);
            let exits = (now + period).max(tasks.last_end(id)) + period;
            let sigterm = after.map_or(exits, |a| now + a);
            exits.min(sigterm).min(kill + Duration::from_secs(2))
        }
    };
    Termination { gone_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_hooks_read_as_presto_and_the_kubelet_would() {
        assert_eq!(
            grace_period(Some("a=b\nshutdown.grace-period=45s\n")),
            Duration::from_secs(45)
        );
        assert_eq!(
            grace_period(Some("shutdown.grace-period = 1.5m")),
            Duration::from_secs(90)
        );
        assert_eq!(grace_period(None), Duration::from_secs(120));
        assert_eq!(
            trailing_sleep("curl -X PUT x; sleep 30"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(trailing_sleep("curl x; while true; do sleep 1; done"), None);
    }
}
